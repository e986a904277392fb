"""Drivers for instruments on a byte link (serial port, pty, TCP): the framed and the ASCII protocol.

Both share the robustness rules: every read is bounded (monotonic clock), a device that sends no spectrum
within ``timeout_s`` is poked again and, after ``retries`` such stalls in a row, reported with
:class:`~spectral_core.errors.DeviceTimeoutError`; a link that drops is reopened with exponential backoff and
the gap reported (``stats["last_gap_s"]``, ``metadata["gap_s"]`` on the next spectrum).

Nothing the device sends disappears without a trace: :meth:`~_LinkDriver.events` yields a
:class:`~device_drivers._base.RejectedFrame` for every bad frame or line, in stream order with the good spectra
(a frame with a valid CRC but a wrong pixel count or NaN samples; an ASCII line with the wrong count, NaN or
text, numbered or not), and one per sequence number missing from a gap (named "garbled on the link" when the
parser saw that frame fail its CRC, "never arrived" otherwise). :meth:`~_LinkDriver.stream` skips them (they are
counted in ``stats``: ``rejected``, ``lost``, ``bad_payload``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from device_drivers._base import BaseSpectrometer, DeviceInfo, RejectedFrame
from device_drivers._transport import Transport, TransportFactory
from device_drivers.ascii_protocol import AsciiLineParser, Line
from device_drivers.errors import (
    DeviceDisconnectedError,
    DeviceTimeoutError,
    DriverError,
    ProtocolError,
)
from device_drivers.framing import (
    MAX_GARBLED_NOTES,
    AxisUnit,
    Frame,
    FrameParser,
    MsgType,
    SpectrumPayload,
    decode_ack,
    decode_axis,
    decode_error,
    decode_info,
    decode_spectrum,
    device_text,
    encode_frame,
    encode_u32,
)
from spectral_core.errors import DataError
from spectral_core.spectrum import Spectrum

__all__ = ["AsciiSpectrometer", "FramedSpectrometer", "LinkOptions"]

logger = logging.getLogger(__name__)

#: missing sequence numbers recorded one by one per gap; a larger jump (a device whose counter leapt) gets one
#: more record for the rest, with the count
MAX_GAP_RECORDS = 4096
_SEQ_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class LinkOptions:
    """Timeouts and retry budget of a link driver (all times in seconds, monotonic clock).

    Attributes:
        timeout_s: a spectrum is due within this (plus the integration time) or the device has stalled.
        retries: stalls in a row tolerated (each one re-sends the start command) before DeviceTimeoutError.
        reconnects: reopen attempts per outage before DeviceDisconnectedError.
        backoff_s: first wait before a reopen; doubles up to ``backoff_max_s``.
        poll_s: bound of one read call.
        quiet_s: a partial frame or line with no new byte for this long is dropped as truncated.
        write_timeout_s: bound of one write.
        handshake_timeout_s: a reply to a command is due within this.
    """

    timeout_s: float = 2.0
    retries: int = 2
    reconnects: int = 8
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0
    poll_s: float = 0.05
    quiet_s: float = 0.25
    write_timeout_s: float = 1.0
    handshake_timeout_s: float = 2.0


@dataclass
class _Pending:
    """A spectrum received but not yet handed out (built lazily: the axis may arrive after it)."""

    seq: int
    counts: np.ndarray
    integration_us: int | None
    saturated: bool
    t_mono: float
    t_wall: float
    extra: dict[str, Any]


class _LinkDriver(BaseSpectrometer):
    """Shared reconnect / stall / queue logic. Subclasses speak a protocol."""

    def __init__(self, url: str, factory: TransportFactory, options: LinkOptions | None = None) -> None:
        super().__init__()
        self.url = url
        self._factory = factory
        self.opts = options or LinkOptions()
        self._t: Transport | None = None
        self._queue: deque[_Pending | RejectedFrame] = deque()
        self._notes: deque[tuple[int, str]] = deque(maxlen=MAX_GARBLED_NOTES)  # damaged frames (header seq, why)
        self._streaming = False
        self._info: DeviceInfo | None = None
        self._last_seq: int | None = None
        self._gap_s: float | None = None
        self._last_byte = time.monotonic()
        self._counters.update({"bad_payload": 0, "device_errors": 0, "bytes_in": 0, "rejected": 0})
        self._t = self._factory()
        try:
            self._handshake()
        except BaseException:
            self._close_transport()
            raise

    # ------------------------------------------------------------------ protocol hooks (subclasses)
    def _handshake(self) -> None:
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def _drop_partial(self) -> None:
        raise NotImplementedError

    def _parser_pending(self) -> int:
        raise NotImplementedError

    def _kick(self) -> None:
        """Ask the device again for what we are waiting for (after a stall or a reconnect)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            raise DriverError(f"{self.url}: device info not known yet")
        return self._info

    def acquire(self) -> Spectrum:
        """The next spectrum (the next one streamed, or one acquired on request when not streaming)."""
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        if not self._queue and not self._streaming:
            self._guard(self._request_one)
        return cast(Spectrum, self._next_item(rejected=False))

    def stream(self) -> Generator[Spectrum, None, None]:
        """Spectra as the device streams them, until :meth:`close` (or the generator is closed)."""
        for item in self._iterate(rejected=False):
            yield cast(Spectrum, item)

    def events(self) -> Generator[Spectrum | RejectedFrame, None, None]:
        """Spectra and a :class:`RejectedFrame` for every bad or missing one, in stream order, until close."""
        yield from self._iterate(rejected=True)

    def _iterate(self, *, rejected: bool) -> Generator[Spectrum | RejectedFrame, None, None]:
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        self._streaming = True
        self._guard(self._start)
        try:
            while not self._closed:
                yield self._next_item(rejected=rejected)
        finally:
            self._streaming = False
            if not self._closed:
                try:
                    self._stop()
                except DriverError as exc:
                    logger.debug("%s: stop failed: %s", self.url, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._t is not None:
            try:
                self._stop()
            except DriverError as exc:
                logger.debug("%s: stop on close failed: %s", self.url, exc)
        self._close_transport()

    # ------------------------------------------------------------------ shared machinery
    def _start(self) -> None:
        self._kick()

    def _stop(self) -> None:
        pass

    def _request_one(self) -> None:
        self._kick()

    def _close_transport(self) -> None:
        if self._t is not None:
            self._t.close()
            self._t = None

    def _write(self, data: bytes) -> None:
        if self._t is None:
            raise DeviceDisconnectedError(f"{self.url}: not connected")
        self._t.write(data, self.opts.write_timeout_s)

    def _guard(self, fn: Any) -> None:
        """Run a command; a dropped link is reopened (the reopen re-sends what streaming needs)."""
        try:
            fn()
        except DeviceDisconnectedError as exc:
            self._reconnect(str(exc))
            if not self._streaming:
                fn()

    def _pump(self, timeout_s: float) -> None:
        """One bounded read, fed to the protocol parser. Raises DeviceDisconnectedError when the link drops."""
        if self._t is None:
            raise DeviceDisconnectedError(f"{self.url}: not connected")
        data = self._t.read(65536, max(0.0, timeout_s))
        now = time.monotonic()
        if data:
            self._last_byte = now
            self._count("bytes_in", len(data))
            self._feed(data)
        elif self._parser_pending() and now - self._last_byte > self.opts.quiet_s:
            # The line went quiet in the middle of a frame: it will never complete.
            self._drop_partial()

    def _due_s(self) -> float:
        return self.opts.timeout_s + self._integration_us * 1e-6

    def _next_item(self, *, rejected: bool) -> Spectrum | RejectedFrame:
        """The next spectrum, or (``rejected``) the next bad frame if one comes first."""
        strikes = 0
        deadline = time.monotonic() + self._due_s()
        while True:
            while self._queue:
                item = self._queue.popleft()
                out = self._build(item) if isinstance(item, _Pending) else item
                if isinstance(out, Spectrum):
                    return out
                if rejected:
                    return out
            if self._closed:
                raise DriverError(f"{self.url}: closed")
            now = time.monotonic()
            if now >= deadline:
                strikes += 1
                self._count("timeouts")
                self._flush_notes()  # damaged frames no good frame followed: recorded now, not at the next one
                if rejected and self._queue:
                    continue
                if strikes > self.opts.retries:
                    raise DeviceTimeoutError(
                        f"{self.url}: no spectrum for {strikes * self._due_s():.1f} s "
                        f"({strikes} timeouts of {self._due_s():.2f} s)"
                    )
                logger.warning("%s: no spectrum within %.2f s (stall %d of %d), asking again",
                               self.url, self._due_s(), strikes, self.opts.retries)
                try:
                    self._kick()
                except DeviceDisconnectedError as exc:
                    self._reconnect(str(exc))
                except DeviceTimeoutError as exc:
                    logger.warning("%s: %s", self.url, exc)
                deadline = time.monotonic() + self._due_s()
                continue
            try:
                self._pump(min(self.opts.poll_s, deadline - now))
            except DeviceDisconnectedError as exc:
                self._reconnect(str(exc))
                deadline = time.monotonic() + self._due_s()

    def _reconnect(self, reason: str) -> None:
        """Reopen the link with exponential backoff; raise DeviceDisconnectedError when the budget is spent."""
        if self._closed:
            # close() from another thread ends a blocked read that way: a stop, not a lost link.
            raise DriverError(f"{self.url}: closed")
        t_lost = time.monotonic()
        logger.warning("%s: link lost (%s); reconnecting", self.url, reason)
        self._drop_partial()
        self._close_transport()
        delay = self.opts.backoff_s
        last: Exception | None = None
        n_before = len(self._queue)  # spectra queued by the handshake come after these
        for attempt in range(1, self.opts.reconnects + 1):
            if self._closed:
                raise DriverError(f"{self.url}: closed while reconnecting")
            time.sleep(delay)
            delay = min(delay * 2, self.opts.backoff_max_s)
            try:
                self._t = self._factory()
                self._handshake()
                if self._streaming:
                    self._start()
            except (DeviceDisconnectedError, DeviceTimeoutError, ProtocolError) as exc:
                last = exc
                logger.info("%s: reconnect attempt %d failed: %s", self.url, attempt, exc)
                self._close_transport()
                continue
            gap = time.monotonic() - t_lost
            self._count("reconnects")
            self._counters["last_gap_s"] = gap
            first = next((q for i, q in enumerate(self._queue) if i >= n_before and isinstance(q, _Pending)), None)
            if first is not None:
                first.extra["gap_s"] = gap
            else:
                self._gap_s = gap
            logger.warning("%s: reconnected after %.3f s (attempt %d)", self.url, gap, attempt)
            return
        raise DeviceDisconnectedError(
            f"{self.url}: could not reconnect in {self.opts.reconnects} attempts "
            f"({time.monotonic() - t_lost:.1f} s): {last}"
        )

    def _account(self, seq: int | None) -> tuple[int, int]:
        """Account a received frame's sequence number; queue a RejectedFrame for each number missing before it.

        Args:
            seq: the sender's number, or None for an unnumbered line (the host numbers it: previous + 1).

        Returns:
            (the frame's sequence number, how many were missing before it).
        """
        last = self._last_seq
        if seq is None:
            seq = 0 if last is None else (last + 1) & _SEQ_MASK
            gap = 0
        elif last is None:
            gap = 0
            # damaged frames before the first good one: their header numbers are all there is
            for s, why in list(self._notes):
                if 0 < (seq - s) & _SEQ_MASK < 1 << 31:
                    self._count("lost")
                    self._queue_rejected(f"spectrum seq {s} damaged on the link ({why}; seq from its header)",
                                         s, "garbled")
        else:
            gap = (seq - last - 1) & _SEQ_MASK
            if gap >= 1 << 31:
                gap = 0  # the device went back (restarted its counter): nothing is known to be missing
        if gap:
            self._count("lost", gap)
            notes = dict(self._notes)
            first = (last if last is not None else 0) + 1
            for k in range(min(gap, MAX_GAP_RECORDS)):
                s = (first + k) & _SEQ_MASK
                note = notes.get(s)
                if note is not None:
                    self._queue_rejected(f"spectrum seq {s} damaged on the link ({note})", s, "garbled")
                else:
                    self._queue_rejected(f"spectrum seq {s} never arrived (sequence gap: seq {seq} came after "
                                         f"seq {last})", s, "lost")
            if gap > MAX_GAP_RECORDS:
                rest = gap - MAX_GAP_RECORDS
                self._queue_rejected(f"{rest} more spectra never arrived (seq {(first + MAX_GAP_RECORDS) & _SEQ_MASK}"
                                     f" to {(seq - 1) & _SEQ_MASK}; recorded as one)", None, "lost")
            logger.warning("%s: %d spectrum(s) lost before seq %d", self.url, gap, seq)
        # notes of frames at or before this one are settled; a later one (out of order) stays a hint
        kept = [(s, why) for s, why in self._notes if 0 < (s - seq) & _SEQ_MASK < 1 << 31]
        self._notes.clear()
        self._notes.extend(kept)
        self._last_seq = seq
        return seq, gap

    def _flush_notes(self) -> None:
        """Record damaged frames that no good frame followed (the device went quiet after them)."""
        while self._notes:
            s, why = self._notes.popleft()
            last = self._last_seq
            if last is None or 0 < (s - last) & _SEQ_MASK < 1 << 31:
                if last is not None and (s - last - 1) & _SEQ_MASK:
                    self._account(s)  # numbers between the last good frame and this one are missing too
                    self._counters["lost"] = int(self._counters["lost"]) + 1
                else:
                    self._count("lost")
                    self._last_seq = s
                self._queue_rejected(f"spectrum seq {s} damaged on the link ({why}; seq from its header, no "
                                     "later frame arrived)", s, "garbled")

    def _queue_rejected(self, reason: str, seq: int | None, kind: str) -> None:
        self._count("rejected")
        self._queue.append(RejectedFrame(reason=reason, seq=seq, kind=kind))

    def _reject(self, seq: int | None, reason: str, *, numbered: bool = True) -> None:
        """A frame or line that arrived but is not a valid spectrum: accounted by its number and queued.

        ``numbered=False``: its number is unknown (an unreadable line in a numbered stream); it neither takes
        nor fills a number.
        """
        self._count("bad_payload")
        if not numbered:
            self._queue_rejected(reason, None, "malformed")
            return
        seq, _ = self._account(seq)
        self._queue_rejected(reason, seq, "malformed")

    def _enqueue(self, seq: int | None, counts: np.ndarray, integration_us: int | None, saturated: bool,
                 extra: dict[str, Any] | None = None) -> None:
        """Queue a received spectrum; a jump in the sequence numbers is queued as one RejectedFrame per gap."""
        ex = dict(extra or {})
        seq, gap = self._account(seq)
        if gap:
            ex["lost_before"] = gap
        if self._gap_s is not None:
            ex["gap_s"] = self._gap_s
            self._gap_s = None
        self._queue.append(_Pending(seq, counts, integration_us, saturated, time.monotonic(), time.time(), ex))

    def _build(self, p: _Pending) -> Spectrum | RejectedFrame:
        info = self.info
        if p.counts.size != info.pixels:
            self._count("bad_payload")
            self._count("rejected")
            logger.warning("%s: spectrum seq %d has %d pixels, the device has %d: rejected",
                           self.url, p.seq, p.counts.size, info.pixels)
            return RejectedFrame(f"spectrum seq {p.seq} has {p.counts.size} pixels, the device has {info.pixels}",
                                 p.seq, "malformed", p.t_mono, p.t_wall)
        try:
            sp = self._make_spectrum(p.counts, seq=p.seq, integration_time_us=p.integration_us,
                                     device_saturated=p.saturated, extra=p.extra)
        except DataError as exc:
            self._count("bad_payload")
            self._count("rejected")
            logger.warning("%s: spectrum seq %d rejected: %s", self.url, p.seq, exc)
            return RejectedFrame(f"spectrum seq {p.seq} rejected: {exc}", p.seq, "malformed", p.t_mono, p.t_wall)
        sp.metadata["t_monotonic"] = p.t_mono
        sp.metadata["t_wall"] = p.t_wall
        return sp


class FramedSpectrometer(_LinkDriver):
    """An instrument speaking the framed binary protocol (``docs/serial-protocol.md``).

    Args:
        url: the URL it was opened with (for messages and metadata).
        factory: opens the transport (first time and on reconnect).
        integration_time_us: set at open (and after each reconnect) when given, microseconds.
        excitation_nm: laser wavelength when the device does not report one, nm.
    """

    def __init__(self, url: str, factory: TransportFactory, options: LinkOptions | None = None, *,
                 integration_time_us: int | None = None, excitation_nm: float | None = None) -> None:
        self._parser = FrameParser()
        self._host_seq = 0
        self._replies: deque[Frame] = deque()
        self._want_integration = integration_time_us
        self._excitation = excitation_nm
        super().__init__(url, factory, options)

    @property
    def stats(self) -> dict[str, int | float]:
        out = super().stats
        out.update(self._parser.counters.as_dict())
        out["bytes_in"] = self._parser.counters.bytes_in
        return out

    def set_integration_time_us(self, us: int) -> None:
        """Set the integration time on the device, microseconds (the device may round it)."""
        super().set_integration_time_us(us)
        self._want_integration = int(us)
        self._guard(self._apply_integration)  # a dropped link is reopened; the handshake applies it too

    def _apply_integration(self) -> None:
        if self._want_integration is None:
            return
        ack = self._request(MsgType.SET_INTEGRATION, encode_u32(self._want_integration), MsgType.ACK)
        self._integration_us = decode_ack(ack.payload)[1]

    # protocol hooks
    def _send(self, msg: MsgType, payload: bytes = b"") -> None:
        self._host_seq = (self._host_seq + 1) & 0xFFFFFFFF
        self._write(encode_frame(msg, self._host_seq, payload))

    def _kick(self) -> None:
        self._send(MsgType.START_STREAM if self._streaming else MsgType.ACQUIRE)

    def _stop(self) -> None:
        self._send(MsgType.STOP_STREAM)

    def _feed(self, data: bytes) -> None:
        frames = self._parser.feed(data)
        self._notes.extend(self._parser.take_garbled())
        for f in frames:
            self._on_frame(f)

    def _drop_partial(self) -> None:
        frames = self._parser.drop_partial()
        self._notes.extend(self._parser.take_garbled())
        for f in frames:
            self._on_frame(f)
        self._parser.reset()

    def _parser_pending(self) -> int:
        return self._parser.pending

    def _on_frame(self, f: Frame) -> None:
        if f.type == MsgType.SPECTRUM:
            try:
                sp: SpectrumPayload = decode_spectrum(f.payload)
            except ProtocolError as exc:
                logger.warning("%s: SPECTRUM seq %d: %s", self.url, f.seq, exc)
                self._reject(f.seq, f"spectrum seq {f.seq}: {exc}")
                return
            self._enqueue(f.seq, sp.counts, sp.integration_time_us, sp.saturated,
                          {"device_time_us": sp.device_time_us})
        elif f.type == MsgType.ERROR:
            code, msg = decode_error(f.payload)
            self._count("device_errors")
            logger.warning("%s: device error %d: %s", self.url, code, msg)
            self._replies.append(f)
        elif f.type in (MsgType.INFO, MsgType.AXIS, MsgType.ACK):
            self._replies.append(f)
        else:
            self._count("device_errors")
            logger.warning("%s: unexpected host-side message 0x%02x from the device", self.url, f.type)

    def _request(self, msg: MsgType, payload: bytes, expect: MsgType) -> Frame:
        """Send a command and wait for its reply (spectra arriving meanwhile are queued, not lost)."""
        self._replies.clear()
        self._send(msg, payload)
        deadline = time.monotonic() + self.opts.handshake_timeout_s
        while True:
            while self._replies:
                r = self._replies.popleft()
                if r.type == expect:
                    return r
                if r.type == MsgType.ERROR:
                    code, text = decode_error(r.payload)
                    raise ProtocolError(f"{self.url}: device refused {msg.name}: error {code}: {text}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeoutError(f"{self.url}: no {expect.name} reply to {msg.name} within "
                                         f"{self.opts.handshake_timeout_s:.1f} s")
            self._pump(min(self.opts.poll_s, left))

    def _handshake(self) -> None:
        if self._t is None:
            raise DeviceDisconnectedError(f"{self.url}: not connected")
        self._parser.reset()
        self._t.reset_input()
        self._send(MsgType.STOP_STREAM)
        info = decode_info(self._request(MsgType.HELLO, b"", MsgType.INFO).payload)
        axis, unit = decode_axis(self._request(MsgType.GET_AXIS, b"", MsgType.AXIS).payload)
        try:
            pixels = int(info.get("pixels", axis.size))
            max_counts = float(info.get("max_counts", 65535))
            exc_nm = info.get("excitation_nm", self._excitation)
            new = DeviceInfo(
                model=device_text(str(info.get("model", "unknown"))),
                serial=device_text(str(info.get("serial", "unknown"))),
                pixels=pixels,
                axis=axis,
                axis_unit="cm-1" if unit == AxisUnit.RAMAN_SHIFT_CM else "nm",
                excitation_nm=None if exc_nm is None else float(exc_nm),
                min_counts=float(info.get("min_counts", 0)),
                max_counts=max_counts,
                saturation_level=float(info.get("saturation_level", max_counts)),
                extra={k: v for k, v in info.items() if k in ("firmware", "protocol")},
            )
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{self.url}: INFO not understood ({exc})") from None
        if axis.size != pixels:
            raise ProtocolError(f"{self.url}: AXIS has {axis.size} values but INFO says {pixels} pixels")
        new.raman_shift()  # fail now, not on the first spectrum, when nm cannot be converted
        if self._info is not None and (self._info.serial, self._info.pixels) != (new.serial, new.pixels):
            logger.warning("%s: a different device answered after reconnect (%s -> %s)",
                           self.url, self._info.serial, new.serial)
        self._info = new
        self._integration_us = int(info.get("integration_us", self._integration_us))
        self._apply_integration()


class AsciiSpectrometer(_LinkDriver):
    """An instrument printing one spectrum per line (``docs/serial-protocol.md``, ASCII protocol).

    The driver sends ``START\\n`` at open and after a stall or reconnect (instruments that stream on their own
    ignore it), and ``INT <us>\\n`` to set the integration time. The axis comes from an ``# axis_cm-1:`` /
    ``# axis_nm:`` header line or from ``axis=(start, stop)`` (cm^-1, linear over the pixels).
    """

    def __init__(self, url: str, factory: TransportFactory, options: LinkOptions | None = None, *,
                 axis_range: tuple[float, float] | None = None, excitation_nm: float | None = None,
                 integration_time_us: int | None = None, model: str = "ascii", serial: str = "") -> None:
        self._parser = AsciiLineParser()
        self._numbered = False  # whether the last data line carried a SEQ: prefix
        self._axis_range = axis_range
        self._excitation = excitation_nm
        self._headers: dict[str, Any] = {}
        self._want_integration = integration_time_us
        self._model, self._serial = model, serial
        super().__init__(url, factory, options)

    @property
    def stats(self) -> dict[str, int | float]:
        out = super().stats
        out.update(self._parser.counters.as_dict())
        return out

    def set_integration_time_us(self, us: int) -> None:
        """Send ``INT <us>`` (no acknowledgement in this protocol), microseconds."""
        super().set_integration_time_us(us)
        self._want_integration = int(us)
        self._guard(lambda: self._write(f"INT {int(us)}\n".encode("ascii")))  # a dropped link is reopened

    def _kick(self) -> None:
        self._write(b"START\n")

    def _stop(self) -> None:
        self._write(b"STOP\n")

    def _feed(self, data: bytes) -> None:
        for line in self._parser.feed(data):
            if line.key is not None:
                self._headers[line.key] = line.value
            elif line.error is not None:
                self._reject_line(line)
            elif line.counts is not None:
                self._numbered = line.seq is not None
                self._enqueue(line.seq, line.counts, None, False)

    def _reject_line(self, line: Line) -> None:
        """A bad data line: numbered by its ``SEQ:`` prefix, else by the host's count like a good line.

        In a stream whose lines carry ``SEQ:``, a bad line whose prefix is unreadable is recorded without a
        number (it is line noise or a damaged prefix; the next good line's number tells what is missing).
        """
        why = line.error or "bad line"
        if line.seq is not None:
            self._numbered = True
            self._reject(line.seq, f"data line seq {line.seq}: {why}")
        elif self._numbered:
            self._reject(None, f"data line without a readable SEQ: prefix: {why}", numbered=False)
        else:
            n = 0 if self._last_seq is None else (self._last_seq + 1) & 0xFFFFFFFF
            self._reject(None, f"data line {n} (host count, no SEQ: prefix): {why}")

    def _drop_partial(self) -> None:
        line = self._parser.take_partial()
        if line is not None:
            self._reject_line(line)

    def _parser_pending(self) -> int:
        return self._parser.pending

    def _handshake(self) -> None:
        if self._t is None:
            raise DeviceDisconnectedError(f"{self.url}: not connected")
        self._t.reset_input()
        self._drop_partial()
        if self._want_integration is not None:
            self._write(f"INT {self._want_integration}\n".encode("ascii"))
            self._integration_us = self._want_integration
        self._kick()
        deadline = time.monotonic() + self.opts.handshake_timeout_s + self._integration_us * 1e-6
        first: _Pending | None = None
        while first is None:
            first = next((q for q in self._queue if isinstance(q, _Pending)), None)
            if first is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeoutError(f"{self.url}: no spectrum line within {self.opts.handshake_timeout_s:.1f} s")
            self._pump(min(self.opts.poll_s, left))
        pixels = int(first.counts.size)
        h = self._headers
        if "axis_cm-1" in h or "axis_nm" in h:
            unit = "cm-1" if "axis_cm-1" in h else "nm"
            axis = np.asarray(h["axis_cm-1" if unit == "cm-1" else "axis_nm"], dtype=np.float64)
        elif self._axis_range is not None:
            unit, axis = "cm-1", np.linspace(self._axis_range[0], self._axis_range[1], pixels)
        else:
            raise ProtocolError(f"{self.url}: the device sends no axis header; give axis=START:STOP (cm^-1)")
        if axis.size != pixels:
            raise ProtocolError(f"{self.url}: axis header has {axis.size} values, spectra have {pixels}")
        max_counts = float(h.get("max_counts", 65535.0))
        exc_nm = h.get("excitation_nm", self._excitation)
        self._info = DeviceInfo(
            model=device_text(str(h.get("model", self._model))),
            serial=device_text(str(h.get("serial", self._serial or (self._t.description if self._t else "")))),
            pixels=pixels, axis=axis, axis_unit=unit,
            excitation_nm=None if exc_nm is None else float(exc_nm),
            min_counts=float(h.get("min_counts", 0.0)), max_counts=max_counts,
            saturation_level=float(h.get("saturation_level", max_counts)),
        )
        self._info.raman_shift()
        if "integration_us" in h:
            self._integration_us = int(h["integration_us"])
