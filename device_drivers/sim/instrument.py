"""The simulated instrument: the device side of the real protocols over a real pty or TCP socket.

:class:`SimulatedInstrument` runs in a thread: it owns the master side of a pseudo-terminal (its slave path is
opened by the driver with real pyserial; a stable symlink survives simulated unplugging) or a listening TCP
socket, answers the framed protocol's commands (or prints ASCII lines), emits spectra of the synthetic classes
of :mod:`spectral_core.synth` (or the spectra of a real data set, :class:`DatasetSpectra`, on its own axis) at
a rate, injects faults on request (:mod:`device_drivers.sim.faults`), and records the ground truth of every
spectrum it emitted (:class:`TruthRecord`: the latest ``SimConfig.truth_keep`` in memory, all of them
optionally as JSON lines).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from device_drivers.ascii_protocol import encode_header
from device_drivers.errors import DeviceSettingError, DriverError
from device_drivers.framing import (
    VERSION,
    AxisUnit,
    FrameParser,
    MsgType,
    decode_u32,
    encode_ack,
    encode_axis,
    encode_error,
    encode_frame,
    encode_info,
)
from device_drivers.sim._endpoints import Endpoint, Gone, PtyEndpoint, TcpEndpoint, wait_until_read
from device_drivers.sim.config import SimConfig, TruthRecord
from device_drivers.sim.faults import encode_emission, link_status
from device_drivers.sim.spectra import SpectraSource, SpectrumGenerator

__all__ = ["SimulatedInstrument"]

logger = logging.getLogger(__name__)

#: host commands kept in memory, the latest ones (for tests and diagnostics); the ground truth in memory is
#: bounded by ``SimConfig.truth_keep``: a simulation running for days holds no more than these
COMMANDS_KEPT = 1000


class SimulatedInstrument:
    """A simulated spectrometer on a pty or a TCP port, run in a background thread.

    Args:
        config: what to emit and which faults to inject.
        transport: ``"pty"`` or ``"tcp"``.
        link: pty only: the stable path (symlink to the current slave); a temporary one when None.
        host / port: tcp only: where to listen (port 0: any free port).
        truth_path: also append every :class:`TruthRecord` to this JSON-lines file.
        spectra: what to emit instead of the synthetic classes (e.g. :class:`DatasetSpectra`); its axis sets
            the pixel count and its ``max_counts`` the full scale (``config.pixels`` / ``max_counts`` unused).

    Use as a context manager, or ``start()`` / ``stop()``. ``url`` is the device URL a driver opens.
    """

    def __init__(self, config: SimConfig | None = None, *, transport: Literal["pty", "tcp"] = "pty",
                 link: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 truth_path: str | Path | None = None, spectra: SpectraSource | None = None) -> None:
        self.config = config or SimConfig()
        c = self.config
        self.gen: SpectraSource = spectra if spectra is not None else SpectrumGenerator(
            c.classes, c.catalog_seed, c.seed, pixels=c.pixels, excitation_nm=c.excitation_nm,
            max_counts=c.max_counts)
        self.pixels = int(self.gen.axis.size)
        self.max_counts = float(self.gen.max_counts)
        self._real = spectra is not None  # real intensities: sent as they are (float32, 9 digits in ASCII)
        self._fault_rng = np.random.default_rng(np.random.SeedSequence([c.seed, 15485863]))
        self._pool = [self.gen.next() for _ in range(max(0, c.pool))] if not self._real else []
        self._ep: Endpoint
        if transport == "pty":
            self._ep = PtyEndpoint(link)
        elif transport == "tcp":
            self._ep = TcpEndpoint(host, port)
        else:
            raise DeviceSettingError(f"transport must be 'pty' or 'tcp', got {transport!r}")
        self.transport = transport
        self.truth: deque[TruthRecord] = deque(maxlen=c.truth_keep)  # the latest ones; all in the truth file
        self.emitted = 0  # spectra emitted in all (truth may hold only the latest)
        self._truth_lock = threading.Lock()
        self._truth_file = open(truth_path, "a", encoding="utf-8") if truth_path else None  # noqa: SIM115
        self._stop = threading.Event()
        self.done = threading.Event()  # set once ``count`` spectra were emitted
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._integration_us = int(c.integration_time_us)
        self._streaming = False
        self._acquire_requests = 0
        self._next_due = 0.0
        self._consumed: set[tuple[int, str]] = set()
        self._parser = FrameParser()
        self._line = bytearray()
        self.commands: deque[str] = deque(maxlen=COMMANDS_KEPT)  # the latest commands received

    @property
    def path(self) -> str:
        """pty: the stable device path; tcp: ``host:port``."""
        return self._ep.path

    @property
    def url(self) -> str:
        """The device URL of this instrument for :func:`device_drivers.open_device`."""
        scheme = "serial://" if self.transport == "pty" else "tcp://"
        return f"{scheme}{self.path}?protocol={self.config.protocol}"

    def start(self) -> SimulatedInstrument:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.transport}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, close the pty / socket and the truth file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("simulator thread did not stop within %.1f s", timeout_s)
        self._ep.close()
        if self._truth_file is not None:
            self._truth_file.close()
            self._truth_file = None

    def __enter__(self) -> SimulatedInstrument:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def drain(self, stop: threading.Event | None = None, timeout_s: float = 5.0) -> bool:
        """Wait until the host has taken every byte sent (before stopping). True when drained."""
        return wait_until_read(self._ep.unread, stop or threading.Event(), timeout_s)

    def delivered(self) -> list[TruthRecord]:
        """Records of the spectra that went out intact, in order."""
        with self._truth_lock:
            return [r for r in self.truth if r.delivered]

    # ---------------------------------------------------------------------------------- thread
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._ep.wait_client(self._stop):
                    break
                self._streaming = self.config.protocol == "ascii" and not self.config.wait_for_start
                self._parser.reset()
                self._line.clear()
                try:
                    self._serve()
                except Gone:
                    logger.info("simulator: client went away")
                    self._streaming = False
        except Exception as exc:  # the thread must report, not die silently
            logger.exception("simulator failed")
            self.error = exc
        finally:
            self._stop.set()

    def _serve(self) -> None:
        c = self.config
        period = 1.0 / c.rate_hz if c.rate_hz > 0 else 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            busy = self._acquire_requests > 0 or (self._streaming and now >= self._next_due
                                                   and not self.done.is_set())
            wait = 0.0 if busy else (min(0.05, max(0.0, self._next_due - now)) if self._streaming else 0.05)
            data = self._ep.recv(wait)
            if data:
                self._on_bytes(data)
            if self._acquire_requests > 0:
                self._acquire_requests -= 1
                self._emit()
            elif self._streaming and not self.done.is_set() and time.monotonic() >= self._next_due:
                self._next_due = max(self._next_due + period, time.monotonic() - period)
                self._emit()

    # commands
    def _on_bytes(self, data: bytes) -> None:
        if self.config.protocol == "ascii":
            self._line += data
            while b"\n" in self._line:
                i = self._line.index(b"\n")
                cmd = bytes(self._line[:i]).decode("ascii", "replace").strip().upper()
                del self._line[: i + 1]
                self._ascii_command(cmd)
            return
        for f in self._parser.feed(data):
            self._framed_command(f.type, f.seq, f.payload)

    def _ascii_command(self, cmd: str) -> None:
        self.commands.append(cmd)
        if cmd == "START":
            if not self._streaming:
                self._send_ascii_header()
                self._next_due = time.monotonic()
            self._streaming = True
        elif cmd == "STOP":
            self._streaming = False
        elif cmd.startswith("INT "):
            with contextlib.suppress(ValueError):
                self._integration_us = int(cmd.split()[1])

    def _send_ascii_header(self) -> None:
        c = self.config
        head = b"".join([
            encode_header("model", c.model), encode_header("serial", c.serial),
            encode_header("pixels", self.pixels), encode_header("excitation_nm", c.excitation_nm),
            encode_header("max_counts", self.max_counts), encode_header("integration_us", self._integration_us),
            encode_header("axis_cm-1", self.gen.axis),
        ])
        self._ep.send(head, self._stop)

    def _reply(self, t: MsgType, seq: int, payload: bytes) -> None:
        self._ep.send(encode_frame(t, seq, payload), self._stop)

    def _framed_command(self, typ: int, seq: int, payload: bytes) -> None:
        c = self.config
        name = MsgType(typ).name
        self.commands.append(name)
        if typ == MsgType.HELLO:
            self._reply(MsgType.INFO, seq, encode_info({
                "model": c.model, "serial": c.serial, "pixels": self.pixels, "excitation_nm": c.excitation_nm,
                "min_counts": -self.max_counts if self._real else 0, "max_counts": self.max_counts,
                "saturation_level": self.max_counts,
                "integration_us": self._integration_us, "firmware": "sim-1", "protocol": VERSION,
            }))
        elif typ == MsgType.GET_AXIS:
            self._reply(MsgType.AXIS, seq, encode_axis(self.gen.axis, AxisUnit.RAMAN_SHIFT_CM))
        elif typ == MsgType.SET_INTEGRATION:
            try:
                us = decode_u32(payload)
            except DriverError:
                self._reply(MsgType.ERROR, seq, encode_error(3, "SET_INTEGRATION needs a uint32 payload"))
                return
            self._integration_us = max(1, us)
            self._reply(MsgType.ACK, seq, encode_ack(typ, self._integration_us))
        elif typ == MsgType.ACQUIRE:
            self._acquire_requests += 1
        elif typ == MsgType.START_STREAM:
            if not self._streaming:
                self._next_due = time.monotonic()
            self._streaming = True
        elif typ == MsgType.STOP_STREAM:
            self._streaming = False
            self._reply(MsgType.ACK, seq, encode_ack(typ, 0))
        else:
            self._reply(MsgType.ERROR, seq, encode_error(2, f"{name} is not a host command"))

    # emission
    def _faults_for(self, seq: int) -> list[str]:
        c = self.config
        v = c.faults.get(seq, ())
        kinds = [v] if isinstance(v, str) else list(v)
        if c.fault_rate > 0 and self._fault_rng.random() < c.fault_rate and c.random_faults:
            kinds.append(str(self._fault_rng.choice(list(c.random_faults))))
        return [k for k in kinds if (seq, k) not in self._consumed]

    def _emit(self) -> None:
        c = self.config
        seq = self._seq
        faults = self._faults_for(seq)
        if "disconnect" in faults:
            self._consumed.add((seq, "disconnect"))
            self._unplug()
            return  # this spectrum goes out once the host has reconnected and asked again
        if "stall" in faults:
            self._consumed.add((seq, "stall"))
            logger.info("simulator: stalling %.2f s before seq %d", c.stall_s, seq)
            if self._stop.wait(c.stall_s):
                return
        if self._pool and "saturate" not in faults:
            label, counts, saturated = self._pool[seq % len(self._pool)]
        else:
            label, counts, saturated = self.gen.next(saturate="saturate" in faults)
        index = self.gen.last_index
        em = encode_emission(
            counts, seq=seq, faults=faults, protocol=c.protocol, rng=self._fault_rng,
            float_samples=self._real or c.sample_type == "float32",  # real intensities need float32 samples
            integration_us=self._integration_us, device_time_us=int(time.monotonic() * 1e6), saturated=saturated,
            ascii_seq=c.ascii_seq, decimals=None if self._real else 0,
        )
        status = link_status(faults)
        name = self.gen.names[label] if 0 <= label < len(self.gen.names) else ""
        rec = TruthRecord(seq, label, name, status, tuple(faults), saturated, time.monotonic(), index)
        with self._truth_lock:
            self.truth.append(rec)
            self.emitted += 1
        if self._truth_file is not None:
            self._truth_file.write(json.dumps(asdict(rec)) + "\n")
            self._truth_file.flush()
        self._seq += 1
        if self._consumed:  # stall/disconnect marks of earlier spectra are never needed again
            self._consumed = {k for k in self._consumed if k[0] >= self._seq}
        self._ep.send(em.wire, self._stop)
        if c.count is not None and self._seq >= c.count:
            self.done.set()

    def _unplug(self) -> None:
        logger.info("simulator: unplugging for %.2f s", self.config.reconnect_delay_s)
        self._ep.drain(self._stop)
        self._ep.unplug()
        self._streaming = False
        self._parser.reset()
        self._line.clear()
        if self._stop.wait(self.config.reconnect_delay_s):
            return
        self._ep.plug()
        if self.transport == "tcp":
            raise Gone

