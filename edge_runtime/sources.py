"""Where spectra come from: instruments opened by device URL, and ``watch://`` drop folders.

A source runs in its own thread and hands :class:`~edge_runtime.engine.Frame` objects to ``submit`` (which
blocks while the daemon's bounded queue is full: back-pressure, never a dropped spectrum). Everything a
source cannot read still becomes a frame, with ``error`` set, so it ends in the ledger with its reason.

Drop folder (``watch:///path/to/dropdir``)::

    dropdir/              the instrument writes here (temporary suffixes and dot-files are ignored)
    dropdir/processing/   a file is claimed by an atomic rename into here before it is read
    dropdir/done/         committed results (or the file is deleted: ``on_done="delete"``)
    dropdir/quarantine/   inputs that ended as an error, each with ``<name>.error.json`` giving the reason

Exactly-once: a file is keyed by (source, name, SHA-256 of its bytes) in the ledger. A file found in
processing/ at start-up (a crash after its claim) is looked up first: already recorded (a crash between the
commit and the move) means it is only moved on, never classified again. Any other file is classified and the
commit itself refuses a second record for the same key (a re-drop of the same bytes), which is then moved on
as the first record says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np

from edge_runtime._inotify import Inotify
from edge_runtime._inotify import available as inotify_available
from edge_runtime.engine import Frame, Outcome
from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from spectral_core.errors import DataError, DriverError, RamanEdgeError

__all__ = [
    "DEFAULT_TEMP_SUFFIXES",
    "EVENT_BACKENDS",
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
#: claims queued for the reader threads at most; further stable files wait in the due queue
MAX_QUEUED_CLAIMS = 256


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


# -- instruments ----------------------------------------------------------------------------------------


#: characters of a driver's error message kept in a device error record
MAX_DEVICE_REASON = 2000


class DeviceSource:
    """Spectra from an instrument opened with :func:`device_drivers.open_device`.

    The device is opened in :meth:`start`, so a bad URL or an absent instrument fails start-up loudly. A link
    that fails later is recorded as an error and reopened with back-off until the daemon stops. Every frame
    the driver rejects (malformed, damaged on the link, or missing from a sequence gap) is recorded as its own
    error with the driver's reason and the seq when known (from the driver's ``events()``; a driver without
    it is read with ``stream()`` and its sequence gaps and ``lost`` counter are recorded instead).

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
        if len(reason) > MAX_DEVICE_REASON:  # a driver's message may quote what the device sent
            reason = f"{reason[:MAX_DEVICE_REASON]}... ({len(reason)} characters, cut)"
        submit(Frame(source=self.url, ref=ref, axis=None, intensities=None, error=("device", reason)))

    def _run(self, submit: Submit) -> None:
        from device_drivers import RejectedFrame
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
            events = getattr(dev, "events", None)
            explicit = callable(events)
            items = events if callable(events) else dev.stream
            try:
                for spec in items():
                    backoff = self.reconnect_s
                    if isinstance(spec, RejectedFrame):
                        self._rejected(submit, dev, spec)
                        if self._stop.is_set():
                            break
                        continue
                    if explicit:
                        submit(self._frame(spec))
                        if self._stop.is_set():
                            break
                        continue
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

    def _rejected(self, submit: Submit, dev: Any, bad: Any) -> None:
        """One error record for a frame the driver rejected, with its reason and seq (when known)."""
        self.errors += 1
        meta: dict[str, Any] = {"rejected": bad.kind}
        if bad.seq is not None:
            meta["seq"] = int(bad.seq)
        try:
            meta["device_serial"] = dev.info.serial
        except (DriverError, RamanEdgeError, AttributeError) as exc:  # not known yet: the record says the rest
            logger.debug("%s: device serial unknown for a rejected frame: %s", self.url, exc)
        ref = f"seq={bad.seq}" if bad.seq is not None else f"rejected-{self.errors}"
        submit(Frame(source=self.url, ref=ref, axis=None, intensities=None, metadata=meta,
                     t_received=bad.t_monotonic, acquired_at=bad.t_wall, error=("device", bad.reason)))

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


class _PollOnly:
    """No filesystem events: the folder is only scanned (network shares, or when asked)."""

    name = "poll"
    dead = False

    def __init__(self) -> None:
        self._wake = threading.Event()

    def wait(self, timeout_s: float) -> tuple[set[str], bool]:
        self._wake.wait(timeout_s)
        self._wake.clear()
        return set(), False

    def wakeup(self) -> None:
        self._wake.set()

    def close(self) -> None:
        pass


class _WatchdogEvents(_PollOnly):
    """Filesystem events through watchdog (macOS, Windows, or Linux without usable inotify)."""

    name = "watchdog"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        names: set[str] = set()
        lock = threading.Lock()
        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                p = Path(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
                if p.parent == folder:
                    with lock:
                        names.add(p.name)
                    wake.set()

        self._names, self._lock = names, lock
        obs = Observer()
        obs.schedule(_Handler(), str(folder), recursive=False)
        obs.daemon = True
        obs.start()
        self._observer = obs

    def wait(self, timeout_s: float) -> tuple[set[str], bool]:
        super().wait(timeout_s)
        with self._lock:
            names = set(self._names)
            self._names.clear()
        return names, False

    def close(self) -> None:
        try:
            self._observer.unschedule_all()  # before stop: a late event must find no dead emitter
        except (OSError, KeyError, RuntimeError) as exc:
            logger.debug("watchdog unschedule: %s", exc)
        self._observer.stop()
        self._observer.join(5.0)


EVENT_BACKENDS = ("auto", "inotify", "watchdog", "poll")


def _open_events(folder: Path, backend: str, url: str) -> _PollOnly | Inotify:
    """The event source for ``folder``: inotify on Linux, watchdog elsewhere, polling as the last resort."""
    if backend not in EVENT_BACKENDS:
        raise SettingsError(f"watch events must be one of {EVENT_BACKENDS}, got {backend!r}")
    if backend == "poll":
        return _PollOnly()
    if backend in ("auto", "inotify") and inotify_available():
        try:
            return Inotify(folder)
        except OSError as exc:
            if backend == "inotify":
                raise SettingsError(f"{url}: inotify: {exc}") from None
            logger.warning("%s: inotify unavailable (%s); trying watchdog", url, exc)
    elif backend == "inotify":
        raise SettingsError(f"{url}: inotify is not available on this system")
    try:
        return _WatchdogEvents(folder)
    except (ImportError, OSError) as exc:
        if backend == "watchdog":
            raise SettingsError(f"{url}: watchdog: {exc}") from None
        logger.warning("%s: filesystem events unavailable (%s); polling only", url, exc)
        return _PollOnly()


class WatchSource:
    """A drop folder: filesystem events (inotify on Linux, watchdog elsewhere) plus a polling scan as fallback
    and safety net.

    One thread turns events and scans into candidate files and checks that each stayed unchanged for
    ``settle_s`` (a first-in first-out queue of due checks: nothing is re-examined before it is due, so a
    burst of thousands of files costs two ``stat`` calls each). Stable files go to ``readers`` threads that
    claim, read, hash and parse them.

    Args:
        url: ``watch:///abs/path`` (or ``watch://relative/path``).
        ledger: the ledger, for the exactly-once lookup of files found in processing/ at start-up.
        settle_s: a file is read only after its size and mtime stayed unchanged this long, s.
        poll_s: full directory scan interval, s (events make it a safety net; on network shares it is the
            only way to see new files).
        on_done: ``move`` to done/ or ``delete`` after the result is committed.
        temp_suffixes: names ending so are being written and are never read.
        use_events: False: polling only (same as ``events="poll"``).
        events: ``auto`` (inotify, else watchdog, else polling), ``inotify``, ``watchdog`` or ``poll``.
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
        events: str = "auto",
        readers: int = 2,
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
        if events not in EVENT_BACKENDS:
            raise SettingsError(f"watch events must be one of {EVENT_BACKENDS}, got {events!r}")
        self.on_done = on_done
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.events_backend = events if use_events else "poll"
        self.processing = self.root / "processing"
        self.done = self.root / "done"
        self.quarantine = self.root / "quarantine"
        self._root_s = os.fspath(self.root)
        self._processing_s = os.fspath(self.processing)
        self._stop = threading.Event()
        self._events: _PollOnly | Inotify | None = None
        self._pending: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) at its last check
        self._due: deque[tuple[float, str]] = deque()  # (monotonic time of the next check, name), in order
        self._thread: threading.Thread | None = None
        self.claimed = 0
        self.recovered = 0
        self.already_recorded = 0
        self.events_active = False
        self.events_name = "none"
        self.scans = 0
        self.rescans = 0
        self.rewatches = 0
        self.folder_missing = False
        self._queued = 0  # claims handed to the readers and not finished
        self._starved = False  # the source waits for room among the readers' queued claims

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
        # events are watched before the first scan, so a file dropped in between is seen by one or the other
        self._events = _open_events(self.root, self.events_backend, self.url)
        self.events_name = self._events.name
        self.events_active = self.events_name != "poll"
        logger.info("%s: %s", self.url, "filesystem events via " + self.events_name if self.events_active
                    else f"polling every {self.poll_s:g} s")
        self._thread = threading.Thread(target=self._run, args=(submit,), name=f"source:{self.url}", daemon=True)
        self._thread.start()

    def _run(self, submit: Submit) -> None:
        # Claims, reads and parses run in a few threads: renames, stats and reads wait on the filesystem
        # with the GIL released, so they overlap with each other and with the parsing.
        events = self._events
        assert events is not None
        pool = ThreadPoolExecutor(self.readers, thread_name_prefix="watch-read")
        try:
            # Files claimed before a crash first: they are either recorded (move on) or not (classify).
            for entry in sorted(os.scandir(self.processing), key=lambda e: e.name):
                if entry.is_file() and not self._stop.is_set():
                    self.recovered += 1
                    with self._inflight_lock:
                        self._inflight.add(entry.name)
                    self._dispatch(pool, self._handle, entry.name, submit, None, True)
            last_scan = -1e18
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_scan >= self.poll_s:
                    self._scan(now)
                    last_scan = now
                self._check_due(pool, submit)
                now = time.monotonic()
                timeout = last_scan + self.poll_s - now
                if self._due and not self._starved:  # starved: a reader's wake-up ends the wait
                    timeout = min(timeout, self._due[0][0] - now)
                names, overflow = events.wait(max(0.001, timeout))
                if events.dead or self.folder_missing:
                    events = self._rewatch(events)
                    last_scan = -1e18 if not self.folder_missing else last_scan
                elif overflow:
                    self.rescans += 1
                    logger.warning("%s: the event queue overflowed; rescanning the folder", self.url)
                    last_scan = -1e18
                if names:
                    self._consider(names, time.monotonic())
        finally:
            events.close()
            # Queued claims are cancelled (those files stay in the drop folder for the next start); claims
            # already running finish, their frames reach the queue.
            pool.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        with self._inflight_lock:
            self._queued += 1
        fut = pool.submit(fn, *args)
        fut.add_done_callback(self._task_done)

    def _task_done(self, fut: Future[None]) -> None:
        with self._inflight_lock:
            self._queued -= 1
            wake = self._starved and self._queued <= MAX_QUEUED_CLAIMS // 2
            if wake:
                self._starved = False
        if wake and self._events is not None:
            self._events.wakeup()
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            logger.error("%s: a claimed file could not be handed on (%s: %s); it stays in processing/ for the "
                         "next start", self.url, type(exc).__name__, exc)

    def _rewatch(self, events: _PollOnly | Inotify) -> _PollOnly | Inotify:
        """The drop folder went away (deleted, renamed, unmounted): say so once, and once it is back, recreate
        processing/, done/ and quarantine/ and watch the new folder (its files are found by the next scan)."""
        if not self.root.is_dir():
            if not self.folder_missing:
                self.folder_missing = True
                logger.error("%s: the drop folder %s is gone; files dropped now are not seen until it is back",
                             self.url, self.root)
            return events
        try:
            self.open()
            fresh = _open_events(self.root, self.events_backend, self.url)
        except (OSError, SettingsError) as exc:
            logger.error("%s: the drop folder is back but cannot be watched yet: %s", self.url, exc)
            self.folder_missing = True
            return events
        events.close()
        self._events = fresh
        if self._stop.is_set():
            fresh.wakeup()
        self.folder_missing = False
        self.rewatches += 1
        logger.warning("%s: watching the drop folder %s again (%s)", self.url, self.root, fresh.name)
        return fresh

    def _scan(self, now: float) -> None:
        try:
            with os.scandir(self.root) as it:
                names = {e.name for e in it if e.name not in self._pending and e.is_file()}
        except OSError as exc:
            if not self.root.is_dir():
                self.folder_missing = True  # said once, by _rewatch
            else:
                logger.warning("%s: cannot list the drop folder: %s", self.url, exc)
            return
        self._consider(names, now)
        self.scans += 1

    def _consider(self, names: Iterable[str], now: float) -> None:
        """New candidates: their size and mtime now, checked again ``settle_s`` later."""
        due = now + self.settle_s
        with self._inflight_lock:
            fresh = sorted(n for n in names if n not in self._pending and n not in self._inflight)
        for name in fresh:
            if self._ignored(name):
                continue
            try:
                st = os.stat(os.path.join(self._root_s, name))
            except OSError:
                continue  # gone already (claimed, or a temporary file renamed away)
            if not stat.S_ISREG(st.st_mode):
                continue
            self._pending[name] = (st.st_size, st.st_mtime_ns)
            self._due.append((due, name))

    def _check_due(self, pool: ThreadPoolExecutor, submit: Submit) -> None:
        """Files whose check is due: unchanged -> claimed; changed -> checked again ``settle_s`` later."""
        now = time.monotonic()
        ready: list[tuple[str, float]] = []
        with self._inflight_lock:
            room = MAX_QUEUED_CLAIMS - self._queued
        while self._due and self._due[0][0] <= now:
            if len(ready) >= room:
                # Enough claims queued for the readers: the rest stay due (a backlog of 100,000 files costs
                # its names, not 100,000 queued tasks); a reader wakes this thread when there is room again.
                with self._inflight_lock:
                    self._starved = self._queued + len(ready) >= MAX_QUEUED_CLAIMS
                break
            _, name = self._due.popleft()
            prev = self._pending.get(name)
            if prev is None:
                continue
            try:
                st = os.stat(os.path.join(self._root_s, name))
            except FileNotFoundError:
                del self._pending[name]
                continue
            except OSError as exc:
                logger.debug("%s: stat %s: %s", self.url, name, exc)
                self._due.append((now + self.settle_s, name))
                continue
            cur = (st.st_size, st.st_mtime_ns)
            if cur != prev:
                self._pending[name] = cur
                self._due.append((now + self.settle_s, name))
            else:
                ready.append((name, st.st_mtime))
        for name, mtime_s in sorted(ready):
            if self._stop.is_set():
                return
            with self._inflight_lock:
                busy = name in self._inflight
                if not busy:
                    self._inflight.add(name)
            if busy:
                # the same name is still being processed; claim this one when that one is done
                self._due.append((now + max(self.settle_s, 0.01), name))
                continue
            del self._pending[name]
            self._dispatch(pool, self._claim, name, mtime_s, submit)

    def _claim(self, name: str, mtime_s: float, submit: Submit) -> None:
        """Atomic rename into processing/, then read and submit."""
        src, dst = os.path.join(self._root_s, name), os.path.join(self._processing_s, name)
        try:
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                if not os.path.exists(src) or os.path.isdir(self._processing_s):
                    raise  # someone else took the file
                logger.error("%s: processing/ was removed; creating processing/, done/ and quarantine/ again",
                             self.url)
                self.open()
                os.rename(src, dst)
        except (OSError, SettingsError) as exc:
            with self._inflight_lock:
                self._inflight.discard(name)
            if not isinstance(exc, FileNotFoundError):  # FileNotFoundError: someone else took it
                logger.warning("%s: cannot claim %s: %s", self.url, name, exc)
            return
        with self._inflight_lock:
            self.claimed += 1
        self._handle(name, submit, mtime_s, False)

    def _handle(self, name: str, submit: Submit, acquired: float | None, recovered: bool) -> None:
        """Read a claimed file and submit it, unless the ledger already has it.

        Only a file found in processing/ at start-up can already be recorded (a crash between the commit and
        the move), so only those are looked up here; for every other file the ledger's unique key on (source,
        name, SHA-256) makes the commit itself the exactly-once check.
        """
        t0 = time.monotonic()
        path_s = os.path.join(self._processing_s, name)
        try:
            with open(path_s, "rb") as f:
                data = f.read()
                if acquired is None:
                    acquired = os.fstat(f.fileno()).st_mtime
        except OSError as exc:
            logger.error("%s: cannot read claimed file %s: %s (left in processing/)", self.url, name, exc)
            return
        sha = hashlib.sha256(data).hexdigest()
        if recovered:
            entry = self.ledger.lookup(self.url, name, sha)
            if entry is not None:
                with self._inflight_lock:
                    self.already_recorded += 1
                logger.info("%s: %s is already recorded as #%d (%s); moving it on", self.url, name, entry.id,
                            entry.status)
                self._finish(name, sha, entry.status == "ok", entry.id, kind=entry.error_kind, reason=entry.error)
                return
        frame = Frame(source=self.url, ref=name, axis=None, intensities=None, t_received=t0,
                      acquired_at=acquired, content_sha256=sha)
        try:
            spec = _parse(Path(path_s), data)
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
        if o.duplicate and o.previous is not None:
            # this exact file was already recorded (a re-drop of the same bytes under the same name): it is
            # moved on as that first record says
            prev = o.previous
            self._finish(f.ref, f.content_sha256 or "", prev.status == "ok", prev.id, kind=prev.error_kind,
                         reason=prev.error)
            return
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
        src = os.path.join(self._processing_s, name)
        for attempt in (1, 2):
            try:
                self._move_once(src, name, sha, ok, record_id, kind=kind, reason=reason)
                return
            except FileNotFoundError:
                if attempt == 1 and os.path.exists(src) and self.root.is_dir():
                    # done/ or quarantine/ was removed under the daemon: create them again and retry
                    logger.error("%s: done/ or quarantine/ was removed; creating them again", self.url)
                    try:
                        self.open()
                    except (OSError, SettingsError) as exc:
                        logger.error("%s: %s", self.url, exc)
                        return
                    continue
                logger.warning("%s: %s vanished from processing/ before it could be moved on (it is recorded)",
                               self.url, name)
                return
            except OSError as exc:
                logger.error("%s: cannot move %s out of processing/: %s (it is recorded; the next start moves it "
                             "on)", self.url, name, exc)
                return

    def _move_once(
        self, src: str, name: str, sha: str, ok: bool, record_id: int | None, *, kind: str | None, reason: str | None
    ) -> None:
        if ok:
            if self.on_done == "delete":
                os.unlink(src)
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

    def stop(self) -> None:
        self._stop.set()
        if self._events is not None:
            self._events.wakeup()

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def finished(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "events": self.events_active,
            "events_via": self.events_name,
            "claimed": self.claimed,
            "recovered": self.recovered,
            "already_recorded": self.already_recorded,
            "pending": len(self._pending),
            "scans": self.scans,
            "rescans": self.rescans,
            "folder_missing": self.folder_missing,
            "rewatches": self.rewatches,
        }


def _parse(path: Path, data: bytes) -> Any:
    """One spectrum from a dropped file, with the shared readers."""
    if not data:
        raise DataError(f"{path.name}: empty file")
    if path.suffix.lower() == ".npy":
        raise DataError(f"{path.name}: a bare .npy holds no wavenumber axis; drop two-column text or JCAMP-DX")
    from spectral_core.io import read_spectrum

    spec = read_spectrum(path, data=data)
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
