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

import contextlib
import errno
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import stat
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np
from numpy.typing import NDArray

from edge_runtime._inotify import Inotify
from edge_runtime._inotify import available as inotify_available
from edge_runtime.engine import Frame, Outcome, bounded_text
from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger, LedgerEntry
from edge_runtime.settings import DEFAULT_TEMP_SUFFIXES
from spectral_core.errors import DataError, DriverError, RamanEdgeError

__all__ = [
    "DEFAULT_TEMP_SUFFIXES",
    "EVENT_BACKENDS",
    "LINK_POLICIES",
    "CalibratedSource",
    "DeviceSource",
    "Source",
    "WatchSource",
    "input_ref",
    "name_of_ref",
    "open_source",
]

logger = logging.getLogger(__name__)

Submit = Callable[[Frame], None]
SUBDIRS = ("processing", "done", "quarantine")
#: claims queued for the reader threads at most; further stable files wait in the due queue
MAX_QUEUED_CLAIMS = 256
LINK_POLICIES = ("refuse", "inside")
DEFAULT_MAX_FILE_BYTES = 64 << 20
DEFAULT_MAX_SPECTRA_PER_FILE = 10_000
#: inotify: a file still open for writing waits for IN_CLOSE_WRITE, unless it stayed unchanged this long, s
#: (a writer that truncates without closing, or a close event the kernel never sent)
CLOSE_WAIT_S = 30.0
#: out of file descriptors: first wait before reading or moving again, and the longest one, s
FD_BACKOFF_S = 0.05
FD_BACKOFF_MAX_S = 2.0
#: the reason in a quarantine ``.error.json`` is cut to this many bytes (the cut is stated)
ERROR_JSON_REASON_BYTES = 64 << 10
#: failed spectra listed one by one in the ``.error.json`` of a multi-spectrum file (all are counted)
ERROR_JSON_MAX_FAILED = 100
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a FIFO swapped in after the claim must not block the open (fstat then refuses it)
_OPEN_FLAGS = os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_BINARY", 0)
#: what read_spectrum says of a file holding several spectra: such a file is read whole (read_dataset)
_MULTI = re.compile(r"holds \d+ spectra")
_KEPT_METADATA = ("device_serial", "integration_time_us")


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
        reason = bounded_text(reason, MAX_DEVICE_REASON)  # a driver's message may quote what the device sent
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

    def take_states(self) -> dict[str, bool]:
        """No open/close events here: every file is judged by the settle check alone."""
        return {}

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
    burst of thousands of files costs two ``lstat`` calls each). With inotify, a file that a writer still holds
    open for writing waits for its ``IN_CLOSE_WRITE`` as well. Stable files go to ``readers`` threads that
    claim, read, hash and parse them.

    Every entry of the folder ends as records: a symbolic link (unless ``watch_links="inside"`` and it
    resolves to a file inside the folder), a FIFO or device node, a file over ``max_file_bytes``, an ``.npz``
    declaring more data than that allows, or anything that fails while being read or parsed (MemoryError
    included) is an error record for that file, and the file (the link itself, never its target) goes to
    quarantine/. A file holding several spectra gives one record each (``name#k``).

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
        watch_links: ``refuse`` every symbolic link, or accept those that resolve ``inside`` the drop folder.
        max_file_bytes: larger files are refused unread, bytes.
        max_spectra_per_file: a file holding more spectra is one error record.
        ready_marker: when set (e.g. ``.ready``), ``x.csv`` is claimed only once ``x.csv.ready`` exists (for
            writers that close and reopen a file to append); the marker is removed once the file is claimed.
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
        watch_links: str = "refuse",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_spectra_per_file: int = DEFAULT_MAX_SPECTRA_PER_FILE,
        ready_marker: str | None = None,
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
        if watch_links not in LINK_POLICIES:
            raise SettingsError(f"watch_links must be one of {LINK_POLICIES}, got {watch_links!r}")
        if int(max_file_bytes) < 1 or int(max_spectra_per_file) < 1:
            raise SettingsError("max_file_bytes and max_spectra_per_file must be at least 1")
        self.on_done = on_done
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.events_backend = events if use_events else "poll"
        self.watch_links = watch_links
        self.max_file_bytes = int(max_file_bytes)
        self.max_spectra_per_file = int(max_spectra_per_file)
        if ready_marker is not None and (not ready_marker or "/" in ready_marker or os.sep in ready_marker):
            raise SettingsError(f"ready_marker must be a name suffix such as '.ready', got {ready_marker!r}")
        self.ready_marker = ready_marker or None
        self.processing = self.root / "processing"
        self.done = self.root / "done"
        self.quarantine = self.root / "quarantine"
        self._root_s = os.fspath(self.root)
        self._processing_s = os.fspath(self.processing)
        self._stop = threading.Event()
        self._events: _PollOnly | Inotify | None = None
        self._pending: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) at its last check
        self._due: deque[tuple[float, str]] = deque()  # (monotonic time of the next check, name), in order
        self._writing: set[str] = set()  # inotify: opened for writing and not closed yet
        self._moves_later: deque[tuple[_Claim, float]] = deque()  # moves that met EMFILE: (claim, retry at)
        self._thread: threading.Thread | None = None
        self.claimed = 0
        self.recovered = 0
        self.already_recorded = 0
        self.refused = 0
        self.fd_retries = 0
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
        return (name.startswith(".") or low.endswith(self.temp_suffixes) or low.endswith(".error.json")
                or (self.ready_marker is not None and name.endswith(self.ready_marker)))

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
        if events is None:
            raise RuntimeError("WatchSource._run before start()")
        pool = ThreadPoolExecutor(self.readers, thread_name_prefix="watch-read")
        try:
            # Files claimed before a crash first: they are either recorded (move on) or not (classify).
            for name in self._list(self.processing):
                if self._stop.is_set():
                    break
                self.recovered += 1
                with self._inflight_lock:
                    self._inflight.add(name)
                self._dispatch(pool, self._handle, name, submit, None, True)
            last_scan = -1e18
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_scan >= self.poll_s:
                    self._scan(now)
                    last_scan = now
                self._check_due(pool, submit)
                if self._moves_later:
                    self._retry_moves()
                now = time.monotonic()
                timeout = last_scan + self.poll_s - now
                if self._due and not self._starved:  # starved: a reader's wake-up ends the wait
                    timeout = min(timeout, self._due[0][0] - now)
                if self._moves_later:
                    timeout = min(timeout, self._moves_later[0][1] - now)
                names, overflow = events.wait(max(0.001, timeout))
                self._note_states(events.take_states())
                if events.dead or self.folder_missing:
                    events = self._rewatch(events)
                    last_scan = -1e18 if not self.folder_missing else last_scan
                elif overflow:
                    self.rescans += 1
                    self._writing.clear()  # close events may be among the lost ones: the settle check decides
                    logger.warning("%s: the event queue overflowed; rescanning the folder", self.url)
                    last_scan = -1e18
                if names:
                    self._consider(names, time.monotonic())
        finally:
            events.close()
            # Queued claims are cancelled (those files stay in the drop folder for the next start); claims
            # already running finish, their frames reach the queue.
            pool.shutdown(wait=True, cancel_futures=True)

    def _note_states(self, states: dict[str, bool]) -> None:
        for name, complete in states.items():
            if complete:
                self._writing.discard(name)
            elif not self._ignored(name):  # temporary names are renamed away without a close event here
                self._writing.add(name)

    def _list(self, folder: Path) -> list[str]:
        """Names of the entries of ``folder`` that are not directories, one entry at a time: an entry that
        cannot be examined (a link loop, a vanished file) is taken as a file, so it gets its own record."""
        names: list[str] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            continue
                    except OSError as exc:
                        logger.debug("%s: %r: %s", self.url, entry.name, exc)
                    names.append(entry.name)
        except OSError as exc:
            if not self.root.is_dir():
                self.folder_missing = True  # said once, by _rewatch
            else:
                logger.warning("%s: cannot list %s (%d entries read): %s", self.url, folder, len(names), exc)
        names.sort()
        return names

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
        names = self._list(self.root)
        if self.folder_missing:
            return
        self._consider(names, now)
        self.scans += 1

    def _consider(self, names: Iterable[str], now: float) -> None:
        """New candidates: their size and mtime now (of the entry itself: links are never followed), checked
        again ``settle_s`` later. Directories are no candidates; every other kind of entry is."""
        due = now + self.settle_s
        with self._inflight_lock:
            fresh = sorted(n for n in names if n not in self._pending and n not in self._inflight)
        for name in fresh:
            if self._ignored(name):
                continue
            try:
                st = os.lstat(os.path.join(self._root_s, name))
            except OSError:
                continue  # gone already (claimed, or a temporary file renamed away)
            if stat.S_ISDIR(st.st_mode):
                continue
            self._pending[name] = (st.st_size, st.st_mtime_ns)
            self._due.append((due, name))

    def _check_due(self, pool: ThreadPoolExecutor, submit: Submit) -> None:
        """Files whose check is due: unchanged -> claimed; changed -> checked again ``settle_s`` later."""
        now = time.monotonic()
        ready: list[tuple[str, float]] = []
        with self._inflight_lock:
            room = MAX_QUEUED_CLAIMS - self._queued
        wall = time.time()
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
                st = os.lstat(os.path.join(self._root_s, name))
            except FileNotFoundError:
                del self._pending[name]
                self._writing.discard(name)
                continue
            except OSError as exc:
                logger.debug("%s: lstat %r: %s", self.url, name, exc)
                self._due.append((now + self.settle_s, name))
                continue
            cur = (st.st_size, st.st_mtime_ns)
            if cur != prev:
                self._pending[name] = cur
                self._due.append((now + self.settle_s, name))
            elif name in self._writing and wall - st.st_mtime < CLOSE_WAIT_S:
                # a writer still holds it open (inotify saw no IN_CLOSE_WRITE yet): a pause between two
                # chunks is not the end of the file
                self._due.append((now + max(self.settle_s, 0.05), name))
            elif self.ready_marker is not None and not os.path.lexists(
                    os.path.join(self._root_s, name + self.ready_marker)):
                self._pending[name] = (-1, -1)  # the file is judged again (settled) once its marker is there
                self._due.append((now + max(self.settle_s, 0.1), name))
            else:
                self._writing.discard(name)
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
        """Atomic rename into processing/ (of the entry itself: a link is moved, not its target), then read and
        submit."""
        src, dst = os.path.join(self._root_s, name), os.path.join(self._processing_s, name)
        try:
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                if not os.path.lexists(src) or os.path.isdir(self._processing_s):
                    raise  # someone else took the file
                logger.error("%s: processing/ was removed; creating processing/, done/ and quarantine/ again",
                             self.url)
                self.open()
                os.rename(src, dst)
        except (OSError, SettingsError) as exc:
            with self._inflight_lock:
                self._inflight.discard(name)
            if not isinstance(exc, FileNotFoundError):  # FileNotFoundError: someone else took it
                logger.warning("%s: cannot claim %s: %s", self.url, input_ref(name), exc)
            return
        with self._inflight_lock:
            self.claimed += 1
        if self.ready_marker is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src + self.ready_marker)
        self._handle(name, submit, mtime_s, False)

    def _handle(self, name: str, submit: Submit, acquired: float | None, recovered: bool) -> None:
        """Read a claimed file and submit its spectra, unless the ledger already has them.

        Only a file found in processing/ at start-up can already be recorded (a crash between the commit and
        the move), so only those are looked up here; for every other file the ledger's unique key on (source,
        name, SHA-256) makes the commit itself the exactly-once check. Whatever goes wrong with this one file
        becomes its error record (descriptor exhaustion excepted: that is waited out and retried).
        """
        t0 = time.monotonic()
        ref = input_ref(name)
        backoff = FD_BACKOFF_S
        while True:
            try:
                frames = self._read_claimed(name, ref, acquired, recovered, t0)
                break
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE) or self._stop.is_set():
                    frames = [self._failed(name, ref, f"cannot read: {_os_reason(exc)}", t0=t0, recovered=recovered)]
                    break
                # out of file descriptors (a burst of connections, a leak elsewhere): not this file's fault;
                # it waits in processing/ and is read again, never quarantined for it and never left behind
                with self._inflight_lock:
                    self.fd_retries += 1
                logger.warning("%s: %s while reading %s; retrying in %.2f s", self.url, _os_reason(exc), ref,
                               backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, FD_BACKOFF_MAX_S)
            except Exception as exc:  # per-file isolation: any failure is this file's record
                logger.warning("%s: %s failed while being read: %s: %s", self.url, ref, type(exc).__name__, exc)
                frames = [self._failed(name, ref, f"{type(exc).__name__}: {exc}", t0=t0,
                                      recovered=recovered)]
                break
        for frame in frames:
            submit(frame)

    def _failed(self, name: str, ref: str, reason: str, *, t0: float, recovered: bool) -> Frame:
        """One error frame for the whole file, keyed by a refusal key when its bytes were never hashed."""
        try:
            st = os.lstat(os.path.join(self._processing_s, name))
            key = _refusal_key("read", st)
        except OSError:
            key = None
        claim = _Claim(self, name, ref, key or "", 1, recovered=recovered)
        return Frame(source=self.url, ref=ref, axis=None, intensities=None, t_received=t0, content_sha256=key,
                     error=("read", _storable(reason)), on_done=claim.outcome(0))

    def _read_claimed(
        self, name: str, ref: str, acquired: float | None, recovered: bool, t0: float
    ) -> list[Frame]:
        path_s = os.path.join(self._processing_s, name)
        refused = None
        try:
            data, st = self._read_bytes(path_s, name)
        except _Refused as exc:
            refused = exc
        if refused is not None:
            with self._inflight_lock:
                self.refused += 1
            sha = _refusal_key(refused.kind, refused.st)
            entry = self.ledger.lookup(self.url, ref, sha) if recovered else None
            claim = _Claim(self, name, ref, sha, 1, recovered=recovered)
            if entry is not None:
                self._recorded(claim, 0, ref, entry)
                return []
            logger.warning("%s: %s refused: %s", self.url, ref, refused.reason)
            return [Frame(source=self.url, ref=ref, axis=None, intensities=None, t_received=t0,
                          acquired_at=refused.st.st_mtime, content_sha256=sha, error=(refused.kind, refused.reason),
                          on_done=claim.outcome(0))]
        if acquired is None:
            acquired = st.st_mtime
        sha = hashlib.sha256(data).hexdigest()
        if recovered:
            entry = self.ledger.lookup(self.url, ref, sha)
            if entry is not None:
                self._recorded(_Claim(self, name, ref, sha, 1, recovered=recovered), 0, ref, entry)
                return []
        frame = Frame(source=self.url, ref=ref, axis=None, intensities=None, t_received=t0,
                      acquired_at=acquired, content_sha256=sha)
        try:
            spectra = _parse(Path(path_s), data, max_values=max(1, self.max_file_bytes // 4),
                             max_spectra=self.max_spectra_per_file)
        except (DataError, RamanEdgeError, ValueError, OSError, UnicodeError) as exc:
            frame.error = ("read", _storable(str(exc)))
            spectra = None
        except Exception as exc:  # MemoryError and the unforeseen: this file's record
            frame.error = ("read", _storable(f"{type(exc).__name__}: {exc}"))
            spectra = None
        del data
        read_s = time.monotonic() - t0
        if spectra is None or len(spectra[1]) + len(spectra[3]) == 1:
            claim = _Claim(self, name, ref, sha, 1, recovered=recovered)
            if spectra is not None:
                axis, X, metas, _ = spectra
                frame.axis = self._intern_axis(axis)
                frame.intensities = X[0]
                frame.metadata = metas[0]
            frame.read_s = read_s
            frame.on_done = claim.outcome(0)
            return [frame]
        axis, X, metas, bad = spectra
        axis = self._intern_axis(axis)
        n = len(X) + len(bad)
        claim = _Claim(self, name, ref, sha, n, recovered=recovered)
        frames: list[Frame] = []
        good = iter(range(len(X)))  # the readable spectra, in file order, between the bad ones
        for k in range(n):
            ref_k = f"{ref}#{k}"
            i = None if k in bad else next(good)
            if recovered:
                entry = self.ledger.lookup(self.url, ref_k, sha)
                if entry is not None:
                    self._recorded(claim, k, ref_k, entry)
                    continue
            if i is None:  # this one spectrum could not be read: its own error record, the others go on
                frames.append(Frame(source=self.url, ref=ref_k, axis=None, intensities=None,
                                    metadata={"spectrum_index": k, "spectra_in_file": n}, t_received=t0,
                                    acquired_at=acquired, read_s=read_s / n, content_sha256=sha,
                                    error=("read", _storable(bad[k])), on_done=claim.outcome(k)))
                continue
            frames.append(Frame(source=self.url, ref=ref_k, axis=axis, intensities=X[i],
                                metadata={**metas[i], "spectrum_index": k, "spectra_in_file": n},
                                t_received=t0, acquired_at=acquired, read_s=read_s / n, content_sha256=sha,
                                on_done=claim.outcome(k)))
        return frames

    def _recorded(self, claim: _Claim, k: int, ref: str, entry: LedgerEntry) -> None:
        with self._inflight_lock:
            self.already_recorded += 1
        logger.info("%s: %s is already recorded as #%d (%s)", self.url, ref, entry.id, entry.status)
        claim.settle(k, entry.status == "ok", entry.id, entry.error_kind, entry.error)

    def _read_bytes(self, path_s: str, name: str) -> tuple[bytes, os.stat_result]:
        """The bytes of a claimed file, opened without following a link and read only up to the size cap.

        Raises:
            _Refused: a link (unless allowed), not a regular file, or over ``max_file_bytes``.
            OSError: the file cannot be opened or read (EMFILE/ENFILE are retried by the caller).
        """
        if not _O_NOFOLLOW:  # no O_NOFOLLOW on this platform: look before opening
            lst = os.lstat(path_s)
            if stat.S_ISLNK(lst.st_mode):
                return self._read_link(path_s, lst)
        try:
            fd = os.open(path_s, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK):
                raise
            lst = os.lstat(path_s)
            if not stat.S_ISLNK(lst.st_mode):
                raise
            return self._read_link(path_s, lst)
        try:
            return self._read_fd(fd)
        finally:
            os.close(fd)

    def _read_fd(self, fd: int) -> tuple[bytes, os.stat_result]:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("read", f"not a regular file ({_file_kind(st.st_mode)}) refused", st)
        limit = self.max_file_bytes
        if st.st_size > limit:
            raise _Refused("read", f"file of {st.st_size} bytes refused: larger than max_file_bytes={limit}", st)
        # One read of the whole file (its size + 1, so the end is seen at once), then small reads while it
        # grows, never past the cap: the bytes in memory stay bounded by max_file_bytes.
        chunks = []
        got = 0
        want = st.st_size + 1
        while True:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise _Refused("read", f"file grew past max_file_bytes={limit} while being read", st)
            want = min(limit + 1 - got, 1 << 16)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks), st

    def _read_link(self, path_s: str, lst: os.stat_result) -> tuple[bytes, os.stat_result]:
        """A claimed symbolic link: refused, or with ``watch_links="inside"`` its target read when that is a
        regular file inside the drop folder (outside processing/, done/ and quarantine/). Nothing of the target
        reaches the error text (its contents are never read when it is refused)."""
        if self.watch_links != "inside":
            raise _Refused("read", "symlink refused (set watch_links=inside to accept links into the drop folder)",
                           lst)
        target = os.readlink(path_s)
        # a relative link was made in the drop folder: it resolves from there, not from processing/
        real = os.path.realpath(os.path.join(self._root_s, target))
        root = os.path.realpath(self._root_s)
        own = [os.path.join(root, d) for d in SUBDIRS]
        inside = os.path.commonpath([root, real]) == root and real != root
        if not inside or any(os.path.commonpath([d, real]) == d for d in own):
            raise _Refused("read", "symlink refused: it does not resolve to a file inside the drop folder", lst)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise
            raise _Refused("read", f"symlink refused: its target cannot be opened ({_os_reason(exc)})",
                           lst) from None
        try:
            data, _ = self._read_fd(fd)
        finally:
            os.close(fd)
        return data, lst

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

    def _finish(self, claim: _Claim) -> None:
        """Every record of a claimed file is committed: move it on (or keep it for a retry on EMFILE)."""
        retry = False
        try:
            retry = self._move_on(claim)
        finally:
            if retry:
                with self._inflight_lock:
                    self._moves_later.append((claim, time.monotonic() + FD_BACKOFF_S))
                if self._events is not None:
                    self._events.wakeup()
            else:
                with self._inflight_lock:
                    self._inflight.discard(claim.name)

    def _retry_moves(self) -> None:
        now = time.monotonic()
        while True:
            with self._inflight_lock:
                if not self._moves_later or self._moves_later[0][1] > now:
                    return
                claim, _ = self._moves_later.popleft()
            self._finish(claim)

    def _move_on(self, claim: _Claim) -> bool:
        """Move a file out of processing/; True when it must be tried again (out of file descriptors)."""
        src = os.path.join(self._processing_s, claim.name)
        for attempt in (1, 2):
            try:
                self._move_once(src, claim)
                return False
            except FileNotFoundError:
                if attempt == 1 and os.path.lexists(src) and self.root.is_dir():
                    # done/ or quarantine/ was removed under the daemon: create them again and retry
                    logger.error("%s: done/ or quarantine/ was removed; creating them again", self.url)
                    try:
                        self.open()
                    except (OSError, SettingsError) as exc:
                        logger.error("%s: %s", self.url, exc)
                        return False
                    continue
                logger.warning("%s: %s vanished from processing/ before it could be moved on (it is recorded)",
                               self.url, claim.ref)
                return False
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and not self._stop.is_set():
                    logger.warning("%s: %s while moving %s on; retrying", self.url, _os_reason(exc), claim.ref)
                    return True
                logger.error("%s: cannot move %s out of processing/: %s (it is recorded; the next start moves it "
                             "on)", self.url, claim.ref, exc)
                return False
        return False

    def _move_once(self, src: str, claim: _Claim) -> None:
        if not claim.failed:
            if self.on_done == "delete":
                os.unlink(src)
            else:
                _move_exclusive(src, os.fspath(self.done), claim.name, claim.first_id, recovered=claim.recovered)
            return
        info = claim.error_info(self.url)
        note = (json.dumps(info, indent=1) + "\n").encode("utf-8")
        _move_exclusive(src, os.fspath(self.quarantine), claim.name, info["record_id"], recovered=claim.recovered,
                        error_json=note)

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
            "refused": self.refused,
            "fd_retries": self.fd_retries,
            "pending": len(self._pending),
            "scans": self.scans,
            "rescans": self.rescans,
            "folder_missing": self.folder_missing,
            "rewatches": self.rewatches,
        }


class _Refused(Exception):
    """A claimed entry refused unread (a link, not a regular file, over the size cap)."""

    def __init__(self, kind: str, reason: str, st: os.stat_result) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.st = kind, reason, st


class _Claim:
    """A claimed file on its way: its ``n`` records still awaited, and the failed ones among those committed.
    The file moves on once the last one is committed (done/ if all are ok, else quarantine/)."""

    __slots__ = ("failed", "first_id", "lock", "n", "name", "recovered", "ref", "sha", "source", "waiting")

    def __init__(
        self, source: WatchSource, name: str, ref: str, sha: str, n: int, *, recovered: bool = False
    ) -> None:
        self.source, self.name, self.ref, self.sha, self.n = source, name, ref, sha, n
        self.recovered = recovered
        self.waiting = n
        self.failed: list[tuple[int, int | None, str | None, str | None]] = []
        self.first_id: int | None = None
        self.lock = threading.Lock()

    def outcome(self, k: int) -> Callable[[Outcome], None]:
        """The ``on_done`` of spectrum ``k``: called by the daemon once its record is committed."""

        def done(o: Outcome) -> None:
            prev = o.previous
            if o.duplicate and prev is not None:
                # these exact bytes were already recorded under this name: moved on as that first record says
                self.settle(k, prev.status == "ok", prev.id, prev.error_kind, prev.error)
            else:
                self.settle(k, o.ok, o.record_id, o.error_kind, o.error)

        return done

    def settle(self, k: int, ok: bool, record_id: int | None, kind: str | None, reason: str | None) -> None:
        with self.lock:
            if not ok:
                self.failed.append((k, record_id, kind, reason))
            if record_id is not None and (self.first_id is None or record_id < self.first_id):
                self.first_id = record_id
            self.waiting -= 1
            last = self.waiting == 0
        if last:
            self.source._finish(self)

    def error_info(self, url: str) -> dict[str, Any]:
        """The quarantine ``.error.json``: the reason (bounded), and for a multi-spectrum file the failed k."""
        failed = sorted(self.failed, key=lambda f: f[0])
        k0, rid, kind, reason = failed[0]
        info: dict[str, Any] = {"file": self.ref, "source": url, "record_id": rid, "kind": kind}
        if self.n == 1:
            info["reason"] = bounded_text(reason or "", ERROR_JSON_REASON_BYTES)
        else:
            info["reason"] = bounded_text(f"{len(failed)} of {self.n} spectra failed; first #{k0}: {reason}",
                                      ERROR_JSON_REASON_BYTES)
            info["spectra"] = self.n
            info["failed_count"] = len(failed)
            info["failed"] = [{"k": k, "record_id": r, "kind": kd, "reason": bounded_text(why or "", 512)}
                              for k, r, kd, why in failed[:ERROR_JSON_MAX_FAILED]]
        info["sha256"] = self.sha
        info["quarantined_at"] = time.time()
        return info


def input_ref(name: str) -> str:
    """The ledger's ``input_ref`` of a drop-folder entry: the name itself when it is valid UTF-8 without a
    backslash (nearly always); otherwise each byte that is not UTF-8 is written ``\\xNN`` and a backslash
    ``\\\\``, so that every name has its own, reversible reference (:func:`name_of_ref`)."""
    if "\\" not in name:
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(name)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def name_of_ref(ref: str) -> bytes:
    """The file name (bytes) of an ``input_ref`` made by :func:`input_ref` (without a ``#k`` suffix)."""
    out = bytearray()
    i = 0
    while i < len(ref):
        c = ref[i]
        if c == "\\" and ref[i + 1 : i + 2] == "\\":
            out += b"\\"
            i += 2
        elif c == "\\" and ref[i + 1 : i + 2] == "x":
            out.append(int(ref[i + 2 : i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def _storable(text: str) -> str:
    """Error text that SQLite, JSON and MQTT take: a file name that is not UTF-8 (quoted by a reader) has its
    undecodable bytes as ``\\udcNN`` escapes instead of lone surrogates."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _refusal_key(kind: str, st: os.stat_result) -> str:
    """The exactly-once key of an entry refused unread: not a hash of its bytes (never read), but of what
    identifies it across a rename and a restart (kind, size, mtime, inode)."""
    ident = f"ramanedge-unread:{kind}:{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    return hashlib.sha256(ident.encode()).hexdigest()


def _os_reason(exc: OSError) -> str:
    """An OSError without its file name (names are the record's ref already; a link target never shows)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"[{name or exc.errno}] {exc.strerror or type(exc).__name__}"


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return what
    return f"mode {mode:o}"


def _move_exclusive(
    src: str, folder: str, name: str, record_id: int | None, *, recovered: bool = False,
    error_json: bytes | None = None,
) -> str:
    """Move ``src`` into ``folder`` under a name no file there has yet (with ``error_json`` written beside it
    as ``<name>.error.json`` first); returns the path it got. Never overwrites a file.

    ``name``, then ``stem.<record id>.ext``, then ``stem.<record id>-<n>.ext``: each tried with ``os.link``
    (fails if the name exists; links a symlink itself) and then the unlink of ``src``; on filesystems without
    hard links an O_EXCL placeholder is created and replaced. A crash between the link and the unlink leaves
    ``src`` with a second link: a recovered file that is already in ``folder`` is only unlinked. A crash
    after the ``.error.json`` and before the move leaves that note alone (the file gets a new one).
    """
    stem, dot, ext = name.partition(".")
    tag = str(record_id) if record_id is not None else str(time.monotonic_ns())
    names = (name if n == 0 else f"{stem}.{tag}{dot}{ext}" if n == 1 else f"{stem}.{tag}-{n - 1}{dot}{ext}"
             for n in range(1_000_000))
    if recovered:
        st = os.lstat(src)
        if st.st_nlink > 1:
            for cand in itertools.islice(names, 64):
                dst = os.path.join(folder, cand)
                try:
                    other = os.lstat(dst)
                except FileNotFoundError:
                    break
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    os.unlink(src)
                    return dst
            names = (name if n == 0 else f"{stem}.{tag}{dot}{ext}" if n == 1 else f"{stem}.{tag}-{n - 1}{dot}{ext}"
                     for n in range(1_000_000))
    hard_links = os.link in os.supports_follow_symlinks
    for cand in names:
        dst = os.path.join(folder, cand)
        note = None
        if error_json is not None:
            note = dst + ".error.json"
            if os.path.lexists(dst):
                continue
            try:
                fd = os.open(note, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            try:
                os.write(fd, error_json)
            finally:
                os.close(fd)
        try:
            if hard_links:
                try:
                    os.link(src, dst, follow_symlinks=False)
                except FileExistsError:
                    raise
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                                         errno.ENOSYS):
                        raise
                    hard_links = False
                else:
                    os.unlink(src)
                    return dst
            os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW, 0o600))
            os.replace(src, dst)
            return dst
        except FileExistsError:
            if note is not None:
                os.unlink(note)
            continue
        except BaseException:
            if note is not None:
                with contextlib.suppress(OSError):
                    os.unlink(note)
            raise
    raise FileExistsError(errno.EEXIST, f"no free name for {input_ref(name)} in {folder}")


def _parse(
    path: Path, data: bytes, *, max_values: int, max_spectra: int
) -> tuple[NDArray[np.float64], NDArray[np.float32], list[dict[str, Any]], dict[int, str]]:
    """The spectra of a dropped file, with the shared readers: (axis in cm^-1, intensities (n, points) of the
    readable spectra, one metadata dict each, and the unreadable ones of a partly bad table or map: index in
    the file -> reason). A single spectrum takes the fast path; a table, map or series is read whole.

    Raises:
        DataError: empty, a bare .npy, an .npz declaring more than ``max_values`` values, more than
            ``max_spectra`` spectra, or NaN/inf intensities; ReaderError: what the reader found wrong.
    """
    if not data:
        raise DataError(f"{path.name}: empty file")
    if path.suffix.lower() == ".npy":
        raise DataError(f"{path.name}: a bare .npy holds no wavenumber axis; drop two-column text or JCAMP-DX")
    if data[:4] == b"PK\x03\x04":
        _check_npz(path, data, max_values)
    from spectral_core.errors import ReaderError
    from spectral_core.io import BadSpectraError, read_dataset, read_spectrum

    try:
        spec = read_spectrum(path, data=data)
    except ReaderError as exc:
        partly = isinstance(exc, BadSpectraError) and exc.partly
        if _MULTI.search(str(exc)) is None and not partly:
            raise
        # the bytes in hand: the file is not read again from disk; a partly bad file gives its good spectra
        # and the index and reason of each bad one
        ds = read_dataset(path, data=data, bad_spectra="skip")
    else:
        if not np.all(np.isfinite(spec.intensities)):
            raise DataError(f"{path.name}: NaN/inf intensities")
        meta = {k: v for k, v in spec.metadata.items() if k in _KEPT_METADATA}
        return np.asarray(spec.axis, dtype=np.float64), np.asarray(spec.intensities)[None, :], [meta], {}
    bad = {int(e["index"]): str(e["reason"]) for e in ds.provenance.get("skipped_spectra") or ()}
    n = ds.n_spectra + len(bad)
    if n > max_spectra:
        raise DataError(f"{path.name}: holds {n} spectra, more than max_spectra_per_file={max_spectra}")
    if n == 0:
        raise DataError(f"{path.name}: holds no spectrum")
    n = ds.n_spectra
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    if ds.y is not None and ds.classes:
        for k in range(n):
            metas[k]["label_in_file"] = ds.classes[int(ds.y[k])]
    if ds.groups is not None:
        for k in range(n):
            metas[k]["group"] = str(ds.groups[k])
    for key, column in (ds.meta or {}).items():  # each spectrum's own facts: map x/y, acquisition, time
        for k, value in enumerate(np.asarray(column).tolist()):
            if value is not None and value != "" and not (isinstance(value, float) and not math.isfinite(value)):
                metas[k][str(key)] = value
    return np.asarray(ds.axis, dtype=np.float64), ds.X, metas, bad


def _check_npz(path: Path, data: bytes, max_values: int) -> None:
    """Refuse a zip (.npz) whose arrays declare more than ``max_values`` values in all (or more than 16 bytes a
    value allowed), from the member headers alone: a small file declaring 1e9 values is never allocated."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        return  # the reader says what is wrong with it
    total = nbytes = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                raise DataError(f"{path.name}: member {info.filename[:80]!r} has no readable .npy header "
                                f"({type(exc).__name__})") from None
            values = math.prod(int(d) for d in shape)
            total += values
            nbytes += values * max(1, dtype.itemsize)
            if total > max_values or nbytes > 4 * max_values * 4:
                raise DataError(f"{path.name}: its arrays declare {total} values ({nbytes} bytes) so far, more "
                                f"than the {max_values} values that max_file_bytes allows (max_file_bytes / 4); "
                                "refused before reading them")


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
    """The source for ``url``: ``watch://`` drop folders here, anything else through device_drivers.

    A ``calibration=instrument.json`` option (any source) corrects every spectrum's axis with that file
    (``ramanedge calibrate``); the option is taken out of the URL the source itself sees, so the source's
    identity in the ledger does not change when a calibration is added or renewed.
    """
    if "://" not in url:
        raise SettingsError(f"source {url!r} is not a URL (e.g. serial:///dev/ttyUSB0, sim://, watch:///dir)")
    inner_url, cal_path = _split_calibration(url)
    src: Source = WatchSource(inner_url, ledger, **watch_options) if inner_url.startswith("watch:") else (
        DeviceSource(inner_url))
    if cal_path is None:
        return src
    from spectral_core.calibration import CalibrationError, load_calibration

    try:
        calibration = load_calibration(cal_path)
    except CalibrationError as exc:
        raise SettingsError(f"{url}: {exc}") from None
    return CalibratedSource(src, calibration)


def _split_calibration(url: str) -> tuple[str, str | None]:
    """(``url`` without its ``calibration=`` option, that option's path or None)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    # the other options stay exactly as written (no re-encoding): the source parses them itself
    kept, paths = [], []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == "calibration":
            paths.append(unquote(value))
        else:
            kept.append(item)
    if not paths:
        return url, None
    if len(paths) > 1 or not paths[0]:
        raise SettingsError(f"{url}: give calibration= once, with the path of a `ramanedge calibrate` file")
    return base + ("?" + "&".join(kept) if kept else ""), paths[0]


class CalibratedSource:
    """A source whose spectra get their axis corrected by a wavenumber calibration before they are queued.

    Every frame's axis passes :func:`spectral_core.calibration.apply_calibration` (one shared corrected array
    per source axis, so batching is unchanged) and its record carries the calibration's SHA-256; a spectrum the
    correction cannot be applied to becomes that spectrum's ``calibration`` error record.
    """

    def __init__(self, inner: Source, calibration: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.calibration = calibration

    @property
    def axis(self) -> NDArray[np.float64] | None:
        """The source's corrected axis, when the source knows it before its first spectrum."""
        raw = getattr(self.inner, "axis", None)
        if raw is None:
            return None
        from spectral_core.calibration import CalibrationError, apply_calibration

        try:
            return apply_calibration(self.calibration, raw)[0]
        except CalibrationError as exc:
            logger.error("%s: the calibration does not apply to the instrument's axis: %s", self.url, exc)
            return None

    @property
    def finished(self) -> bool:
        return bool(getattr(self.inner, "finished", False))

    def open(self) -> None:
        self.inner.open()

    def start(self, submit: Submit) -> None:
        from spectral_core.calibration import CalibrationError, apply_calibration

        cal = self.calibration

        def calibrated(frame: Frame) -> None:
            if frame.error is None and frame.axis is not None:
                try:
                    frame.axis, extra = apply_calibration(cal, frame.axis)
                    frame.metadata = {**frame.metadata, **extra}
                except CalibrationError as exc:
                    frame.error = ("calibration", bounded_text(str(exc), MAX_DEVICE_REASON))
            submit(frame)

        self.inner.start(calibrated)

    def stop(self) -> None:
        self.inner.stop()

    def join(self, timeout_s: float) -> None:
        self.inner.join(timeout_s)

    def status(self) -> dict[str, Any]:
        return {**self.inner.status(), "calibration": self.calibration.summary()}
