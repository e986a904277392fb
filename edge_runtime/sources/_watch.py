"""The ``watch://`` drop folder: a state machine from a dropped file to its records, exactly once.

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
from typing import Any, get_args
from urllib.parse import unquote, urlsplit

import numpy as np
from numpy.typing import NDArray

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.protocols import Submit
from edge_runtime.records import Committed, Frame, LedgerEntry, bounded_text
from edge_runtime.settings import DEFAULT_TEMP_SUFFIXES, ServeSettings
from edge_runtime.sources._events import EVENT_BACKENDS, Events, open_events
from edge_runtime.sources._files import O_NOFOLLOW, OPEN_FLAGS, file_kind, move_exclusive, os_reason, refusal_key
from edge_runtime.sources._names import input_ref, storable
from edge_runtime.sources._parse import parse_file
from spectral_core.errors import DataError, RamanEdgeError

__all__ = ["LINK_POLICIES", "WatchSource", "watch_path"]

logger = logging.getLogger(__name__)

SUBDIRS = ("processing", "done", "quarantine")
#: claims queued for the reader threads at most; further stable files wait in the due queue
MAX_QUEUED_CLAIMS = 256
# the choices and defaults the daemon's settings declare, read from its model (never a second copy)
LINK_POLICIES: tuple[str, ...] = get_args(ServeSettings.model_fields["watch_links"].annotation)
DEFAULT_MAX_FILE_BYTES: int = ServeSettings.model_fields["max_file_bytes"].default
DEFAULT_MAX_SPECTRA_PER_FILE: int = ServeSettings.model_fields["max_spectra_per_file"].default
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
        self.events_backend = events
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
        self._events: Events | None = None
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
        self._events = open_events(self.root, self.events_backend, self.url)
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

    def _rewatch(self, events: Events) -> Events:
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
            fresh = open_events(self.root, self.events_backend, self.url)
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
                    frames = [self._failed(name, ref, f"cannot read: {os_reason(exc)}", t0=t0, recovered=recovered)]
                    break
                # out of file descriptors (a burst of connections, a leak elsewhere): not this file's fault;
                # it waits in processing/ and is read again, never quarantined for it and never left behind
                with self._inflight_lock:
                    self.fd_retries += 1
                logger.warning("%s: %s while reading %s; retrying in %.2f s", self.url, os_reason(exc), ref,
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
            key = refusal_key("read", st)
        except OSError:
            key = None
        claim = _Claim(self, name, ref, key or "", 1, recovered=recovered)
        return Frame(source=self.url, ref=ref, axis=None, intensities=None, t_received=t0, content_sha256=key,
                     error=("read", storable(reason)), on_done=claim.outcome(0))

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
            sha = refusal_key(refused.kind, refused.st)
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
            spectra = parse_file(Path(path_s), data, max_values=max(1, self.max_file_bytes // 4),
                             max_spectra=self.max_spectra_per_file)
        except (DataError, RamanEdgeError, ValueError, OSError, UnicodeError) as exc:
            frame.error = ("read", storable(str(exc)))
            spectra = None
        except Exception as exc:  # MemoryError and the unforeseen: this file's record
            frame.error = ("read", storable(f"{type(exc).__name__}: {exc}"))
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
                                    error=("read", storable(bad[k])), on_done=claim.outcome(k)))
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
        if not O_NOFOLLOW:  # no O_NOFOLLOW on this platform: look before opening
            lst = os.lstat(path_s)
            if stat.S_ISLNK(lst.st_mode):
                return self._read_link(path_s, lst)
        try:
            fd = os.open(path_s, OPEN_FLAGS)
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
            raise _Refused("read", f"not a regular file ({file_kind(st.st_mode)}) refused", st)
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
            fd = os.open(real, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise
            raise _Refused("read", f"symlink refused: its target cannot be opened ({os_reason(exc)})",
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
                    logger.warning("%s: %s while moving %s on; retrying", self.url, os_reason(exc), claim.ref)
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
                move_exclusive(src, os.fspath(self.done), claim.name, claim.first_id, recovered=claim.recovered)
            return
        info = claim.error_info(self.url)
        note = (json.dumps(info, indent=1) + "\n").encode("utf-8")
        move_exclusive(src, os.fspath(self.quarantine), claim.name, info["record_id"], recovered=claim.recovered,
                        error_json=note)

    def stop(self) -> None:
        self._stop.set()
        if self._events is not None:
            self._events.wakeup()

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def axis(self) -> NDArray[np.float64] | None:
        """None: every dropped file brings its own axis."""
        return None

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

    def outcome(self, k: int) -> Callable[[Committed], None]:
        """The ``on_done`` of spectrum ``k``: called by the daemon once its record is committed."""

        def done(c: Committed) -> None:
            prev, o = c.previous, c.outcome
            if c.duplicate and prev is not None:
                # these exact bytes were already recorded under this name: moved on as that first record says
                self.settle(k, prev.status == "ok", prev.id, prev.error_kind, prev.error)
            else:
                self.settle(k, o.ok, c.record_id, o.error_kind, o.error)

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


def watch_path(url: str) -> Path:
    """The folder of a ``watch://`` URL (``watch:///abs/dir``; ``watch://rel/dir`` is relative)."""
    parts = urlsplit(url)
    if parts.scheme != "watch":
        raise SettingsError(f"not a watch:// URL: {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise SettingsError(f"{url!r} names no folder; use watch:///path/to/dropdir")
    return Path(path)
