"""A simulated instrument that speaks the real protocols over a real pty or TCP socket, plus ``sim://``.

:class:`SimulatedInstrument` runs in a thread: it owns the master side of a pseudo-terminal (its slave path is
opened by the driver with real pyserial; a stable symlink survives simulated unplugging) or a listening TCP
socket, answers the framed protocol's commands (or prints ASCII lines), emits spectra of the synthetic classes
of :mod:`spectral_core.synth` (or the spectra of a real data set, :class:`DatasetSpectra`, on its own axis) at
a rate, injects faults on request, and records the ground truth of every spectrum it emitted
(:class:`TruthRecord`: the latest ``SimConfig.truth_keep`` in memory, all of them optionally as JSON lines).

:class:`SimSpectrometer` is the in-process ``sim://`` driver: the same spectra without any transport, with the
true class in each spectrum's metadata.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import socket
import struct
import tempfile
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from device_drivers._base import BaseSpectrometer, DeviceInfo
from device_drivers.ascii_protocol import encode_header, encode_line
from device_drivers.errors import DeviceURLError, DriverError
from device_drivers.framing import (
    HEADER,
    SYNC,
    VERSION,
    AxisUnit,
    FrameParser,
    MsgType,
    SampleType,
    decode_u32,
    encode_ack,
    encode_axis,
    encode_error,
    encode_frame,
    encode_info,
    encode_spectrum,
)
from spectral_core.spectrum import SpectralDataset, Spectrum
from spectral_core.synth import SyntheticCatalog, instrument_axis

__all__ = [
    "FAULT_KINDS",
    "DatasetSpectra",
    "SimConfig",
    "SimSpectrometer",
    "SimulatedInstrument",
    "SpectrumGenerator",
    "TruthRecord",
    "read_truth",
]

logger = logging.getLogger(__name__)

#: Faults the simulator injects. garbage, unknown_type and bad_length add bytes before a spectrum (which is
#: still delivered; in the ASCII protocol each adds a line of its own); crc and truncate corrupt the spectrum
#: itself on the link (it is lost); short (half the pixels), nan (a NaN sample) and text (framed: a payload
#: that is not a spectrum; ASCII: a word among the numbers) send it intact on the link but malformed, with a
#: valid CRC; stall delays it by ``stall_s``; disconnect drops the link before it (it is sent after the host
#: reconnects); saturate clips it.
FAULT_KINDS = ("garbage", "crc", "truncate", "unknown_type", "bad_length", "stall", "disconnect", "saturate",
               "short", "nan", "text")
_LOSSY = {"crc": "corrupted", "truncate": "truncated", "short": "malformed", "nan": "malformed",
          "text": "malformed"}
_UNKNOWN_TYPE = 0x7A


@dataclass(frozen=True)
class SimConfig:
    """What the simulated instrument emits and how it misbehaves.

    Attributes:
        classes / catalog_seed: the synthetic classes (catalog_seed 0 = the training data's classes).
        seed: seeds the per-spectrum sampling and the random faults.
        rate_hz: spectra per second while streaming (0: as fast as the link takes them).
        pixels / excitation_nm: detector size and laser wavelength (nm); the axis is ``instrument_axis``.
        protocol: ``"framed"`` or ``"ascii"``.
        sample_type: ``"uint16"`` or ``"float32"`` SPECTRUM samples (framed protocol).
        integration_time_us: reported integration time, microseconds.
        count: stop after emitting this many spectra (None: never).
        faults: fault kind(s) by spectrum sequence number, e.g. ``{3: "crc", 7: ("garbage", "saturate")}``.
        fault_rate: probability of a random fault (one of ``random_faults``) on each spectrum.
        stall_s: length of a stall, s. reconnect_delay_s: time the device stays unplugged, s.
        wait_for_start: an ASCII instrument prints only after ``START`` (framed ones always wait).
        pool: when > 0, generate this many spectra up front and cycle through them (saturate faults excepted):
            for throughput measurements, where sampling the synthetic classes (~2.6 ms each) would dominate.
        ascii_seq: ASCII lines carry a ``SEQ:`` prefix (False: bare lines, the host numbers them).
        truth_keep: ground-truth records kept in memory (the latest ones; the truth file gets all of them).
    """

    classes: int = 8
    catalog_seed: int = 0
    seed: int = 1
    rate_hz: float = 20.0
    pixels: int = 1024
    excitation_nm: float = 785.0
    protocol: Literal["framed", "ascii"] = "framed"
    sample_type: Literal["uint16", "float32"] = "uint16"
    integration_time_us: int = 50_000
    max_counts: float = 65535.0
    model: str = "RamanEdge-Sim"
    serial: str = "SIM0001"
    count: int | None = None
    faults: Mapping[int, str | tuple[str, ...]] = field(default_factory=dict)
    fault_rate: float = 0.0
    random_faults: tuple[str, ...] = ("garbage", "crc", "truncate", "saturate")
    stall_s: float = 1.0
    reconnect_delay_s: float = 0.2
    wait_for_start: bool = True
    pool: int = 0
    ascii_seq: bool = True
    truth_keep: int = 100_000

    def __post_init__(self) -> None:
        if self.protocol not in ("framed", "ascii"):
            raise DeviceURLError(f"protocol must be 'framed' or 'ascii', got {self.protocol!r}")
        if self.sample_type not in ("uint16", "float32"):
            raise DeviceURLError(f"sample_type must be 'uint16' or 'float32', got {self.sample_type!r}")
        if self.rate_hz < 0 or self.pixels < 2 or self.classes < 1 or self.truth_keep < 1:
            raise DeviceURLError("rate_hz must be >= 0, pixels >= 2, classes >= 1 and truth_keep >= 1")
        kinds = [k for v in self.faults.values() for k in ((v,) if isinstance(v, str) else v)]
        bad = sorted(set(kinds + list(self.random_faults)) - set(FAULT_KINDS))
        if bad:
            raise DeviceURLError(f"unknown fault kind(s) {bad}; known: {list(FAULT_KINDS)}")


@dataclass(frozen=True)
class TruthRecord:
    """Ground truth of one emitted spectrum.

    Attributes:
        seq: the sequence number it was sent with.
        label: class index; class_name: its name (``spectral_core.synth.class_names``).
        status: ``"sent"`` (intact on the wire), ``"corrupted"`` (CRC fault), ``"truncated"`` or
            ``"malformed"`` (intact on the link, not a valid spectrum: short, nan, text faults).
        faults: the faults injected on it.
        saturated: clipped at full scale.
        t_monotonic: the simulator's monotonic clock when it was sent, s.
        index: row of the data set it came from (``--from``), None for synthetic spectra.
    """

    seq: int
    label: int
    class_name: str
    status: str
    faults: tuple[str, ...]
    saturated: bool
    t_monotonic: float
    index: int | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "sent"


def read_truth(path: str | Path) -> list[TruthRecord]:
    """Read a ground-truth JSON-lines file written by the simulator."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                d["faults"] = tuple(d.get("faults", ()))
                out.append(TruthRecord(**d))
    return out


class SpectraSource(Protocol):
    """What the simulator emits: spectra on ``axis`` (cm^-1) with their true class (``names[label]``)."""

    axis: NDArray[np.float64]
    max_counts: float
    last_index: int | None

    @property
    def names(self) -> tuple[str, ...]: ...

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]: ...


class SpectrumGenerator:
    """Synthetic spectra in detector counts on the instrument axis (cm^-1), with their true classes."""

    last_index: int | None = None

    def __init__(self, classes: int = 8, catalog_seed: int = 0, seed: int = 1, *, pixels: int = 1024,
                 excitation_nm: float = 785.0, max_counts: float = 65535.0) -> None:
        self.catalog = SyntheticCatalog(classes, catalog_seed)
        self.axis = instrument_axis(pixels, excitation_nm)
        self.max_counts = float(max_counts)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 48611]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.catalog.names)

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]:
        """(label, counts, saturated) of the next spectrum."""
        label = int(self.rng.integers(0, self.catalog.n_classes))
        y = self.catalog.sample(label, self.axis, self.rng)
        if saturate:
            y = y * (1.5 * self.max_counts / max(float(y.max()), 1.0))
        y = np.clip(y, 0.0, self.max_counts)
        return label, y, bool(y.max() >= self.max_counts)


class DatasetSpectra:
    """The spectra of a real data set, in file order (from the start again after the last), on its own axis.

    Its labels are the ground truth (label -1 and an empty class name when the file has none). Intensities
    are sent as they are (float32 on the wire), so the full scale is set well above the data: ten times the
    largest absolute value (a saturate fault scales a spectrum up to it).

    Args:
        ds: the data set, e.g. from :func:`spectral_core.io.read_dataset` with the CLI's reading options.
        max_counts: full scale; default ten times the largest absolute intensity.
    """

    def __init__(self, ds: SpectralDataset, *, max_counts: float | None = None) -> None:
        if ds.n_spectra == 0:
            raise DriverError("the data set holds no spectra to simulate")
        self.ds = ds
        self.axis = np.asarray(ds.axis, dtype=np.float64)
        finite = np.abs(ds.X[np.isfinite(ds.X)])
        peak = float(finite.max()) if finite.size else 1.0
        self.max_counts = float(max_counts) if max_counts is not None else 10.0 * max(peak, 1e-30)
        self.last_index: int | None = None
        self._i = 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.ds.classes)

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]:
        """(label, intensities, saturated) of the next row; label -1 when the data set has no labels."""
        i = self._i
        self._i = (i + 1) % self.ds.n_spectra
        self.last_index = i
        y = np.asarray(self.ds.X[i], dtype=np.float64)
        if saturate:
            y = np.minimum(y * (1.5 * self.max_counts / max(float(np.nanmax(y)), 1e-30)), self.max_counts)
        label = -1 if self.ds.y is None else int(self.ds.y[i])
        return label, y, bool(np.nanmax(y) >= self.max_counts)


# ------------------------------------------------------------------------------------------- endpoints

def _wait_until_read(unread: Callable[[], int], stop: threading.Event, timeout_s: float,
                     settle_s: float = 0.05) -> bool:
    """Wait until ``unread()`` has stayed 0 for ``settle_s`` (True) or ``timeout_s`` passed (False).

    Zero once is not enough on a pty: bytes still in the kernel's flip buffer are not yet counted by FIONREAD.
    """
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    while not stop.is_set():
        now = time.monotonic()
        if unread() == 0:
            zero_since = now if zero_since is None else zero_since
            if now - zero_since >= settle_s:
                return True
        else:
            zero_since = None
        if now >= deadline:
            return False
        stop.wait(0.005)
    return False


class _Gone(Exception):
    """The host side went away (TCP client closed); wait for the next one."""


class _PtyEndpoint:
    """The master side of a pty; ``path`` is a symlink to the slave that survives a simulated unplug."""

    def __init__(self, link: str | None) -> None:
        self._tmpdir: str | None = None
        if link is None:
            self._tmpdir = tempfile.mkdtemp(prefix="ramanedge-sim-")
            link = os.path.join(self._tmpdir, "tty")
        self.path = link
        self.master = -1
        self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw at once: before the host opens the port, canonical mode would echo and translate CR/LF.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def wait_client(self, stop: threading.Event) -> bool:
        return not stop.is_set()

    def recv(self, timeout_s: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], max(0.0, timeout_s))
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def send(self, data: bytes, stop: threading.Event) -> None:
        view = memoryview(data)
        while view and not stop.is_set():
            _, w, _ = select.select([], [self.master], [], 0.05)
            if not w:
                continue
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def unread(self) -> int:
        """Bytes written but not yet read by the host."""
        if self.slave < 0:
            return 0
        buf = bytearray(4)
        fcntl.ioctl(self.slave, termios.FIONREAD, buf)
        return int(struct.unpack("i", bytes(buf))[0])

    def drain(self, stop: threading.Event, timeout_s: float = 5.0) -> None:
        """Wait until the host has read everything sent (so an unplug loses nothing already sent)."""
        _wait_until_read(self.unread, stop, timeout_s)

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    def close(self) -> None:
        self.unplug()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._tmpdir:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)


class _TcpEndpoint:
    """A listening socket serving one client at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._lsock = socket.create_server((host, port), reuse_port=False)
        self._lsock.settimeout(0.05)
        self.address: tuple[str, int] = self._lsock.getsockname()[:2]
        self.path = f"{self.address[0]}:{self.address[1]}"
        self._conn: socket.socket | None = None

    def wait_client(self, stop: threading.Event) -> bool:
        while self._conn is None and not stop.is_set():
            try:
                conn, peer = self._lsock.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            logger.info("simulator: client %s connected", peer)
            self._conn = conn
        return self._conn is not None

    def recv(self, timeout_s: float) -> bytes:
        if self._conn is None:
            raise _Gone
        r, _, _ = select.select([self._conn], [], [], max(0.0, timeout_s))
        if not r:
            return b""
        try:
            data = self._conn.recv(65536)
        except OSError as exc:
            self.unplug()
            raise _Gone from exc
        if not data:
            self.unplug()
            raise _Gone
        return data

    def send(self, data: bytes, stop: threading.Event) -> None:
        if self._conn is None:
            raise _Gone
        view = memoryview(data)
        while view and not stop.is_set():
            _, w, _ = select.select([], [self._conn], [], 0.05)
            if not w:
                continue
            try:
                n = self._conn.send(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.unplug()
                raise _Gone from exc
            view = view[n:]

    def drain(self, stop: threading.Event, timeout_s: float = 5.0) -> None:
        """Half-close and wait for the host to close: every byte sent is delivered before the unplug."""
        if self._conn is None:
            return
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if self.recv(0.05) == b"":
                    continue
            except _Gone:
                return

    def unread(self) -> int:
        """Bytes sent but not yet acknowledged by the peer (on loopback: not yet in its receive buffer)."""
        if self._conn is None:
            return 0
        buf = bytearray(4)
        try:
            fcntl.ioctl(self._conn.fileno(), termios.TIOCOUTQ, buf)
        except OSError:
            return 0
        return int(struct.unpack("i", bytes(buf))[0])

    def unplug(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def plug(self) -> None:
        """A TCP instrument comes back by accepting the next connection."""

    def close(self) -> None:
        self.unplug()
        self._lsock.close()


# ------------------------------------------------------------------------------------------ simulator

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
        self._ep: _PtyEndpoint | _TcpEndpoint
        if transport == "pty":
            self._ep = _PtyEndpoint(link)
        elif transport == "tcp":
            self._ep = _TcpEndpoint(host, port)
        else:
            raise DeviceURLError(f"transport must be 'pty' or 'tcp', got {transport!r}")
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
        self.commands: deque[str] = deque(maxlen=1000)  # the latest commands received, for tests

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
        return _wait_until_read(self._ep.unread, stop or threading.Event(), timeout_s)

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
                except _Gone:
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
        rng = self._fault_rng
        pre = b""
        if "garbage" in faults:
            junk = rng.integers(0, 256, int(rng.integers(5, 40)), dtype=np.uint8)
            junk = junk[(junk != SYNC[0]) & (junk != 0x0A)]  # pure garbage: never a sync or end of line
            pre += junk.tobytes() + (b"\n" if c.protocol == "ascii" else b"")
        wire = np.asarray(counts, dtype=np.float64)
        if "short" in faults:
            wire = wire[: wire.size // 2]  # the device says `pixels`, this one has half: valid CRC / line
        if "nan" in faults:
            wire = wire.copy()
            wire[wire.size // 2] = np.nan
        if c.protocol == "framed":
            if "unknown_type" in faults:
                pre += encode_frame(_UNKNOWN_TYPE, seq, b"future message")
            if "bad_length" in faults:
                pre += HEADER.pack(SYNC, VERSION, int(MsgType.SPECTRUM), seq, 0xFFFFFFF0)
            real = self._real or "nan" in faults  # NaN and real intensities need float32 samples
            st = SampleType.UINT16 if c.sample_type == "uint16" and not real else SampleType.FLOAT32
            payload = encode_spectrum(wire, sample_type=st, integration_time_us=self._integration_us,
                                      device_time_us=int(time.monotonic() * 1e6), saturated=saturated)
            if "text" in faults:
                payload = b"ERR sensor read failed; this payload is text, not a spectrum"
            body = encode_frame(MsgType.SPECTRUM, seq, payload)
            if "crc" in faults:
                b = bytearray(body)
                b[HEADER.size + 20 + int(rng.integers(0, len(b) - HEADER.size - 24))] ^= 0xFF
                body = bytes(b)
            if "truncate" in faults:
                body = body[: len(body) // 2]
        else:
            if c.protocol == "ascii" and ("unknown_type" in faults or "bad_length" in faults):
                pre += b"%%% not a spectrum %%%\n"
            body = encode_line(wire, seq if c.ascii_seq else None, decimals=None if self._real else 0)
            if "crc" in faults:
                parts = body.split(b",")
                parts[len(parts) // 2] = b"1x" + parts[len(parts) // 2]
                body = b",".join(parts)
            if "text" in faults:
                parts = body.split(b",")
                parts[len(parts) // 3] = b"ERR"
                body = b",".join(parts)
            if "truncate" in faults:
                body = body[: len(body) // 2] + b"\n"
        status = "sent"
        for k in ("short", "nan", "text", "crc", "truncate"):
            if k in faults:
                status = _LOSSY[k]
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
        self._ep.send(pre + body, self._stop)
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
            raise _Gone


# ---------------------------------------------------------------------------------------- sim://

class SimSpectrometer(BaseSpectrometer):
    """The in-process ``sim://`` driver: synthetic spectra at ``rate_hz``, true class in the metadata.

    Metadata adds ``label`` (class name), ``label_index`` and ``classes`` (all names, in index order).
    ``truth`` lists every spectrum emitted.
    """

    def __init__(self, url: str = "sim://", *, classes: int = 8, rate_hz: float = 20.0, seed: int = 1,
                 catalog_seed: int = 0, pixels: int = 1024, excitation_nm: float = 785.0,
                 integration_time_us: int = 50_000, saturate_every: int = 0) -> None:
        super().__init__()
        if rate_hz < 0:
            raise DeviceURLError(f"rate must be >= 0 spectra/s, got {rate_hz}")
        self.url = url
        self.gen = SpectrumGenerator(classes, catalog_seed, seed, pixels=pixels, excitation_nm=excitation_nm)
        self.rate_hz = float(rate_hz)
        self.saturate_every = int(saturate_every)
        self._integration_us = int(integration_time_us)
        self._info = DeviceInfo(
            model="RamanEdge-Sim (in-process)", serial=f"SIM-{seed}", pixels=pixels, axis=self.gen.axis,
            axis_unit="cm-1", excitation_nm=excitation_nm, max_counts=65535.0, saturation_level=65535.0,
        )
        self._seq = 0
        self._next_due = time.monotonic()
        self.truth: deque[TruthRecord] = deque(maxlen=100_000)  # the latest spectra emitted

    @property
    def info(self) -> DeviceInfo:
        return self._info

    @property
    def classes(self) -> list[str]:
        return list(self.gen.catalog.names)

    def acquire(self) -> Spectrum:
        """The next spectrum, paced at ``rate_hz`` on the monotonic clock."""
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        if self.rate_hz > 0:
            now = time.monotonic()
            if self._next_due > now:
                time.sleep(self._next_due - now)
            self._next_due = max(self._next_due + 1.0 / self.rate_hz, time.monotonic() - 1.0 / self.rate_hz)
        seq = self._seq
        self._seq += 1
        sat = self.saturate_every > 0 and (seq + 1) % self.saturate_every == 0
        label, counts, saturated = self.gen.next(saturate=sat)
        name = self.gen.catalog.names[label]
        self.truth.append(TruthRecord(seq, label, name, "sent", ("saturate",) if sat else (), saturated,
                                      time.monotonic()))
        return self._make_spectrum(counts, seq=seq, extra={
            "label": name, "label_index": label, "classes": self.classes,
        })

    def stream(self) -> Generator[Spectrum, None, None]:
        while not self._closed:
            yield self.acquire()

