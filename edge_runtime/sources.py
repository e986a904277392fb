"""Where spectra come from: instruments opened by device URL, and ``watch://`` drop folders.

A source runs in its own thread and hands :class:`~edge_runtime.engine.Frame` objects to ``submit`` (which
blocks while the daemon's bounded queue is full: back-pressure, never a dropped spectrum). Everything a
source cannot read still becomes a frame, with ``error`` set, so it ends in the ledger with its reason.

Drop folder (``watch:///path/to/dropdir``)::

    dropdir/              the instrument writes here (temporary suffixes and dot-files are ignored)
    dropdir/processing/   a file is claimed by an atomic rename into here before it is read
    dropdir/done/         committed results (or the file is deleted: ``on_done="delete"``)
    dropdir/quarantine/   inputs that ended as an error, each with ``<name>.error.json`` giving the reason

Exactly-once: after the claim, the file's SHA-256 is looked up in the ledger under (source, name); a file
already recorded (a crash between the commit and the move) is only moved on, never classified again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np

from edge_runtime.engine import Frame, Outcome
from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from spectral_core.errors import DataError, DriverError, RamanEdgeError

__all__ = [
    "DEFAULT_TEMP_SUFFIXES",
    "DeviceSource",
    "Source",
    "WatchSource",
    "open_source",
]

logger = logging.getLogger(__name__)

Submit = Callable[[Frame], None]
DEFAULT_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".filepart",
                         ".swp", ".lock", "~")
SUBDIRS = ("processing", "done", "quarantine")


class Source(Protocol):
    """A producer of frames, started and stopped by the daemon."""

    url: str

    def open(self) -> None:
        """Open what needs opening, raising on a bad URL or a missing device/folder; nothing flows yet."""

    def start(self, submit: Submit) -> None:
        """Start the producer thread (opens first if :meth:`open` was not called)."""

    def stop(self) -> None:
        """Stop intake: no new frame is produced after this returns (one in hand may still be submitted)."""

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the producer thread to end."""

    def status(self) -> dict[str, Any]:
        """Counters and state for /readyz."""


def _read_file(path: Path) -> tuple[bytes, Any]:
    from spectral_core.io import read_spectrum

    return path.read_bytes(), read_spectrum(path)


# -- instruments ----------------------------------------------------------------------------------------


class DeviceSource:
    """Spectra from an instrument opened with :func:`device_drivers.open_device`.

    The device is opened in :meth:`start`, so a bad URL or an absent instrument fails start-up loudly. A link
    that fails later is recorded as an error and reopened with back-off until the daemon stops. Frames the
    driver counts as lost or garbled are recorded as errors too (from its ``lost`` counter).

    Args:
        url: any device_drivers URL (serial://, tcp://, sim://, replay://, seabreeze://).
        reconnect_s: first back-off before reopening a failed device, s (doubles to 30 s).
    """

    def __init__(self, url: str, *, reconnect_s: float = 0.5) -> None:
        self.url = url
        self.reconnect_s = reconnect_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dev: Any = None
        self._dev_lock = threading.Lock()
        self.frames = 0
        self.errors = 0
        self.exhausted = False
        self.state = "new"
        self.axis: np.ndarray[Any, np.dtype[np.float64]] | None = None

    def _open(self) -> Any:
        from device_drivers import open_device

        return open_device(self.url)

    def open(self) -> None:
        """Open the device now (so a bad URL fails start-up) and learn its axis (cm^-1) when it says."""
        if self._dev is not None:
            return
        self._dev = self._open()
        self.state = "open"
        try:
            self.axis = np.asarray(self._dev.info.raman_shift(), dtype=np.float64)
        except (DriverError, RamanEdgeError, ValueError) as exc:
            logger.warning("%s: axis unknown before the first spectrum: %s", self.url, exc)

    def start(self, submit: Submit) -> None:
        self.open()
        self._thread = threading.Thread(target=self._run, args=(submit,), name=f"source:{self.url}", daemon=True)
        self._thread.start()

    def _error(self, submit: Submit, reason: str, ref: str = "link") -> None:
        self.errors += 1
        submit(Frame(source=self.url, ref=ref, axis=None, intensities=None, error=("device", reason)))

    def _run(self, submit: Submit) -> None:
        from device_drivers.errors import SourceExhaustedError

        backoff = self.reconnect_s
        while not self._stop.is_set():
            dev = self._dev
            if dev is None:
                try:
                    dev = self._open()
                except (DriverError, RamanEdgeError, OSError) as exc:
                    self.state = f"reconnecting: {exc}"
                    logger.warning("%s: reopen failed (%s); next try in %.1f s", self.url, exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                with self._dev_lock:
                    if self._stop.is_set():
                        dev.close()
                        break
                    self._dev = dev
                self.state = "open"
                logger.info("%s: reopened", self.url)
            base_lost = int(dev.stats.get("lost", 0))
            accounted = 0
            try:
                for spec in dev.stream():
                    backoff = self.reconnect_s
                    seq = spec.metadata.get("seq")
                    gap = int(spec.metadata.get("lost_before") or 0)
                    if gap > 0:
                        # the driver saw a jump in sequence numbers: those spectra never arrived
                        self._error(submit, f"{gap} spectrum(s) lost on the link before seq {seq} (sequence gap)",
                                    ref=f"lost-before-seq={seq}")
                        accounted += gap
                    submit(self._frame(spec))
                    lost = int(dev.stats.get("lost", 0)) - base_lost
                    if lost > accounted:
                        self._error(submit, f"{lost - accounted} spectrum(s) lost or garbled on the link "
                                            f"(driver counter, near seq {seq})", ref=f"lost-near-seq={seq}")
                        accounted = lost
                    if self._stop.is_set():
                        break
            except SourceExhaustedError:
                self.exhausted = True
                logger.info("%s: source exhausted after %d spectra", self.url, self.frames)
                break
            except (DriverError, OSError, RamanEdgeError, ValueError) as exc:
                # a broken link, or a payload the driver could not turn into a spectrum: recorded, reopened
                if self._stop.is_set():
                    break  # the daemon closed the device to stop a blocking read
                self._error(submit, f"{type(exc).__name__}: {exc}")
                logger.warning("%s: %s; reopening", self.url, exc)
            finally:
                with self._dev_lock:
                    self._dev = None
                try:
                    dev.close()
                except (DriverError, OSError) as exc:
                    logger.debug("%s: close: %s", self.url, exc)
            if self._stop.is_set() or self.exhausted:
                break
        self.state = "exhausted" if self.exhausted else "stopped"

    def _frame(self, spec: Any) -> Frame:
        self.frames += 1
        meta = dict(spec.metadata)
        seq = meta.get("seq")
        t_mono = meta.get("t_monotonic")
        return Frame(
            source=self.url,
            ref=f"seq={seq}" if seq is not None else f"n={self.frames}",
            axis=spec.axis,
            intensities=spec.intensities,
            metadata=meta,
            t_received=float(t_mono) if isinstance(t_mono, (int, float)) else time.monotonic(),
            acquired_at=meta.get("t_wall"),
        )

    def stop(self) -> None:
        self._stop.set()
        with self._dev_lock:
            dev = self._dev
        if dev is not None:
            try:
                dev.close()
            except (DriverError, OSError) as exc:
                logger.debug("%s: close: %s", self.url, exc)

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "state": self.state, "spectra": self.frames, "errors": self.errors}


# -- drop folders ---------------------------------------------------------------------------------------


class WatchSource:
    """A drop folder: filesystem events (watchdog) plus a polling scan as fallback and safety net.

    Args:
        url: ``watch:///abs/path`` (or ``watch://relative/path``).
        ledger: the ledger, for the exactly-once lookup.
        settle_s: a file is read only after its size and mtime stayed unchanged this long, s.
        poll_s: full directory scan interval, s (events make it a safety net; on network shares it is the
            only way to see new files).
        on_done: ``move`` to done/ or ``delete`` after the result is committed.
        temp_suffixes: names ending so are being written and are never read.
        use_events: use watchdog events (False: polling only).
        readers: threads that claim, read and parse files.
    """

    def __init__(
        self,
        url: str,
        ledger: Ledger,
        *,
        settle_s: float = 0.2,
        poll_s: float = 1.0,
        on_done: str = "move",
        temp_suffixes: Iterable[str] = DEFAULT_TEMP_SUFFIXES,
        use_events: bool = True,
        readers: int = 3,
    ) -> None:
        self.url = url
        self.readers = max(1, int(readers))
        self._inflight: set[str] = set()  # claimed (or being claimed) and not yet moved on
        self._inflight_lock = threading.Lock()
        self._axes: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        self.root = watch_path(url)
        self.ledger = ledger
        self.settle_s = float(settle_s)
        self.poll_s = float(poll_s)
        if on_done not in ("move", "delete"):
            raise SettingsError(f"on_done must be 'move' or 'delete', got {on_done!r}")
        self.on_done = on_done
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.use_events = use_events
        self.processing = self.root / "processing"
        self.done = self.root / "done"
        self.quarantine = self.root / "quarantine"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._events: set[str] = set()
        self._events_lock = threading.Lock()
        self._pending: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first seen, monotonic)
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self.claimed = 0
        self.recovered = 0
        self.already_recorded = 0
        self.events_active = False

    def _ignored(self, name: str) -> bool:
        low = name.lower()
        return name.startswith(".") or low.endswith(self.temp_suffixes) or low.endswith(".error.json")

    def open(self) -> None:
        """Check the folder and create processing/, done/ and quarantine/ in it."""
        if not self.root.is_dir():
            raise SettingsError(f"{self.url}: drop folder {self.root} does not exist")
        for d in (self.processing, self.done, self.quarantine):
            d.mkdir(exist_ok=True)

    def start(self, submit: Submit) -> None:
        self.open()
        if self.use_events:
            self._start_observer()
        self._thread = threading.Thread(target=self._run, args=(submit,), name=f"source:{self.url}", daemon=True)
        self._thread.start()

    def _start_observer(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError as exc:  # pragma: no cover - watchdog is a base dependency
            logger.warning("%s: watchdog unavailable (%s); polling every %.1f s", self.url, exc, self.poll_s)
            return
        src = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                path = getattr(event, "dest_path", "") or event.src_path
                p = Path(os.fsdecode(path))
                if p.parent == src.root:
                    with src._events_lock:
                        src._events.add(p.name)
                    src._wake.set()

        try:
            obs = Observer()
            obs.schedule(_Handler(), str(self.root), recursive=False)
            obs.daemon = True
            obs.start()
        except OSError as exc:
            logger.warning("%s: filesystem events unavailable (%s); polling every %.1f s", self.url, exc, self.poll_s)
            return
        self._observer = obs
        self.events_active = True

    def _run(self, submit: Submit) -> None:
        # Claims, reads and parses run in a few threads: renames, stats and reads wait on the filesystem
        # with the GIL released, so they overlap with each other and with the parsing.
        pool = ThreadPoolExecutor(self.readers, thread_name_prefix="watch-read")
        try:
            # Files claimed before a crash first: they are either recorded (move on) or not (classify).
            for entry in sorted(os.scandir(self.processing), key=lambda e: e.name):
                if entry.is_file() and not self._stop.is_set():
                    self.recovered += 1
                    with self._inflight_lock:
                        self._inflight.add(entry.name)
                    self._dispatch(pool, self._handle, entry.name, submit, None)
            last_scan = -1e9
            tick = max(0.005, min(self.settle_s / 2, 0.05))
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_scan >= self.poll_s or not self.events_active:
                    self._scan()
                    last_scan = now
                with self._events_lock:
                    names, self._events = self._events, set()
                for name in names:
                    if name not in self._pending and not self._ignored(name):
                        self._pending[name] = (-1, -1, now)
                self._check_pending(pool, submit)
                self._wake.wait(tick if self._pending else min(self.poll_s, 0.5))
                self._wake.clear()
        finally:
            # Queued claims are cancelled (those files stay in the drop folder for the next start); claims
            # already running finish, their frames reach the queue.
            pool.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        fut = pool.submit(fn, *args)
        fut.add_done_callback(self._task_done)

    def _task_done(self, fut: Future[None]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            logger.error("%s: a claimed file could not be handed on (%s: %s); it stays in processing/ for the "
                         "next start", self.url, type(exc).__name__, exc)

    def _scan(self) -> None:
        now = time.monotonic()
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if entry.name not in self._pending and not self._ignored(entry.name) and entry.is_file():
                        self._pending[entry.name] = (-1, -1, now)
        except OSError as exc:
            logger.warning("%s: cannot list the drop folder: %s", self.url, exc)

    def _check_pending(self, pool: ThreadPoolExecutor, submit: Submit) -> None:
        now = time.monotonic()
        ready: list[tuple[str, float]] = []
        for name, (size, mtime, seen) in list(self._pending.items()):
            if size >= 0 and now - seen < self.settle_s:
                continue  # not due for its stability check yet: no stat
            try:
                st = os.stat(self.root / name)
            except FileNotFoundError:
                del self._pending[name]
                continue
            except OSError as exc:
                logger.debug("%s: stat %s: %s", self.url, name, exc)
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                self._pending[name] = (st.st_size, st.st_mtime_ns, now)
            else:
                ready.append((name, st.st_mtime))
        for name, mtime_s in sorted(ready):
            if self._stop.is_set():
                return
            with self._inflight_lock:
                if name in self._inflight:
                    continue  # the same name is still being processed; claim it when that one is done
                self._inflight.add(name)
            self._pending.pop(name, None)
            self._dispatch(pool, self._claim, name, mtime_s, submit)

    def _claim(self, name: str, mtime_s: float, submit: Submit) -> None:
        """Atomic rename into processing/, then read and submit."""
        try:
            os.rename(self.root / name, self.processing / name)
        except OSError as exc:
            with self._inflight_lock:
                self._inflight.discard(name)
            if not isinstance(exc, FileNotFoundError):  # FileNotFoundError: someone else took it
                logger.warning("%s: cannot claim %s: %s", self.url, name, exc)
            return
        with self._inflight_lock:
            self.claimed += 1
        self._handle(name, submit, mtime_s)

    def _handle(self, name: str, submit: Submit, acquired: float | None) -> None:
        """Read a claimed file and submit it, unless the ledger already has it."""
        t0 = time.monotonic()
        path = self.processing / name
        try:
            data = path.read_bytes()
            if acquired is None:
                acquired = path.stat().st_mtime
        except OSError as exc:
            logger.error("%s: cannot read claimed file %s: %s (left in processing/)", self.url, name, exc)
            return
        sha = hashlib.sha256(data).hexdigest()
        entry = self.ledger.lookup(self.url, name, sha)
        if entry is not None:
            with self._inflight_lock:
                self.already_recorded += 1
            logger.info("%s: %s is already recorded as #%d (%s); moving it on", self.url, name, entry.id, entry.status)
            self._finish(name, sha, entry.status == "ok", entry.id, kind=entry.error_kind, reason=entry.error)
            return
        frame = Frame(source=self.url, ref=name, axis=None, intensities=None, t_received=t0,
                      acquired_at=acquired, content_sha256=sha)
        try:
            spec = _parse(path, data)
            frame.axis = self._intern_axis(spec.axis)
            frame.intensities = spec.intensities
            frame.metadata = {k: v for k, v in spec.metadata.items() if k in ("device_serial", "integration_time_us")}
        except (DataError, RamanEdgeError, ValueError, OSError, UnicodeError) as exc:
            frame.error = ("read", str(exc))
        frame.read_s = time.monotonic() - t0
        frame.on_done = self._on_done
        submit(frame)

    def _intern_axis(self, axis: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """One shared array per distinct axis (files of one instrument all carry the same axis): saves memory
        per queued frame and lets the engine batch them together."""
        with self._inflight_lock:
            for known in self._axes:
                if known.shape == axis.shape and np.array_equal(known, axis):
                    return known
            self._axes.insert(0, axis)
            del self._axes[8:]
        return axis

    def _on_done(self, o: Outcome) -> None:
        f = o.frame
        self._finish(f.ref, f.content_sha256 or "", o.ok, o.record_id, kind=o.error_kind, reason=o.error)

    def _finish(
        self, name: str, sha: str, ok: bool, record_id: int | None, *, kind: str | None, reason: str | None
    ) -> None:
        try:
            self._move_on(name, sha, ok, record_id, kind=kind, reason=reason)
        finally:
            with self._inflight_lock:
                self._inflight.discard(name)

    def _move_on(
        self, name: str, sha: str, ok: bool, record_id: int | None, *, kind: str | None, reason: str | None
    ) -> None:
        src = self.processing / name
        try:
            if ok:
                if self.on_done == "delete":
                    src.unlink()
                else:
                    os.replace(src, _free_name(self.done, name, record_id))
                return
            dst = _free_name(self.quarantine, name, record_id)
            info = {"file": name, "source": self.url, "record_id": record_id, "kind": kind, "reason": reason,
                    "sha256": sha, "quarantined_at": time.time()}
            tmp = dst.with_name(dst.name + ".error.json.tmp")
            tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
            os.replace(src, dst)
            os.replace(tmp, dst.with_name(dst.name + ".error.json"))
        except FileNotFoundError:
            logger.warning("%s: %s vanished from processing/ before it could be moved on", self.url, name)
        except OSError as exc:
            logger.error("%s: cannot move %s out of processing/: %s", self.url, name, exc)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            try:
                self._observer.unschedule_all()  # before stop: a late inotify event must find no dead emitter
            except (OSError, KeyError, RuntimeError) as exc:
                logger.debug("%s: unschedule: %s", self.url, exc)
            self._observer.stop()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._observer is not None:
            self._observer.join(max(0.0, deadline - time.monotonic()))

    @property
    def finished(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "events": self.events_active,
            "claimed": self.claimed,
            "recovered": self.recovered,
            "already_recorded": self.already_recorded,
            "pending": len(self._pending),
        }


def _parse(path: Path, data: bytes) -> Any:
    """One spectrum from a dropped file, with the shared readers."""
    if not data:
        raise DataError(f"{path.name}: empty file")
    if path.suffix.lower() == ".npy":
        raise DataError(f"{path.name}: a bare .npy holds no wavenumber axis; drop two-column text or JCAMP-DX")
    from spectral_core.io import read_spectrum

    spec = read_spectrum(path)
    if not np.all(np.isfinite(spec.intensities)):
        raise DataError(f"{path.name}: NaN/inf intensities")
    return spec


def _free_name(folder: Path, name: str, record_id: int | None) -> Path:
    dst = folder / name
    if not dst.exists():
        return dst
    stem, dot, ext = name.partition(".")
    tag = str(record_id) if record_id is not None else str(time.monotonic_ns())
    return folder / f"{stem}.{tag}{dot}{ext}"


def watch_path(url: str) -> Path:
    """The folder of a ``watch://`` URL (``watch:///abs/dir``; ``watch://rel/dir`` is relative)."""
    parts = urlsplit(url)
    if parts.scheme != "watch":
        raise SettingsError(f"not a watch:// URL: {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise SettingsError(f"{url!r} names no folder; use watch:///path/to/dropdir")
    return Path(path)


def open_source(url: str, ledger: Ledger, **watch_options: Any) -> Source:
    """The source for ``url``: ``watch://`` drop folders here, anything else through device_drivers."""
    if url.startswith("watch:"):
        return WatchSource(url, ledger, **watch_options)
    if "://" not in url:
        raise SettingsError(f"source {url!r} is not a URL (e.g. serial:///dev/ttyUSB0, sim://, watch:///dir)")
    return DeviceSource(url)
