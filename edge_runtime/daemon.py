"""The daemon: sources -> bounded queue -> micro-batches -> engine -> ledger (one transaction a batch) -> sinks.

Threads: one per source, one worker (the only ledger writer), the HTTP server's. The worker takes whatever is
already queued, up to ``max_batch``, without waiting for a batch to fill, so a lone spectrum is classified at
once and a burst is classified in a few large batches.

Shutdown (SIGTERM/SIGINT, ``count``/``duration`` reached, every finite source exhausted): intake stops, the
queue is drained and committed, then the ledger is closed, all within ``drain_timeout_s``. A dropped file not
committed by then stays in ``processing/`` and is classified at the next start; any other frame left over is
recorded as a ``shutdown`` error. When the worker is stalled (or dead) at the deadline, the shutdown takes
over: the frames in its hands, in the queue and still waiting to be queued are recorded as ``shutdown`` errors
and whatever the worker finishes afterwards is discarded. Every frame taken in is counted; any that ends
neither as a record nor as a file still in ``processing/`` is reported (``unrecorded``) and makes the exit
status non-zero. Nothing is lost silently.
"""

from __future__ import annotations

import gc
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from edge_runtime.engine import Engine, ProviderName, task_changes
from edge_runtime.errors import SettingsError
from edge_runtime.hotswap import ModelWatcher
from edge_runtime.httpapi import HttpApi
from edge_runtime.ledger import Ledger, explain
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt import MqttTls
from edge_runtime.protocols import Sink, Source
from edge_runtime.records import Committed, Frame, Outcome, Record, bounded_text
from edge_runtime.settings import ServeSettings, parse_host_port
from edge_runtime.sinks import open_sinks
from edge_runtime.sources import open_source
from spectral_core.providers import short_name

__all__ = ["Daemon"]

logger = logging.getLogger(__name__)

_COMMIT_RETRIES = 10


def _release_freed_memory() -> None:
    """Give the heap freed after building resampling operators back to the OS (glibc keeps it otherwise).

    A cubic-spline operator is built from a dense (4, n, n) coefficient array: tens of MB freed again at once.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return
    trim(0)


class Daemon:
    """One serving process. ``start`` raises on any start-up problem; ``run`` serves until told to stop."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.max_request_bytes = settings.max_request_bytes
        self.request_timeout_s = settings.request_timeout_s
        self.engine: Engine | None = None
        self.ledger: Ledger | None = None
        self.sinks: list[Sink] = []
        self.http: HttpApi | None = None
        self.metrics: Metrics | None = None
        self.sources: list[Source] = []
        self._q: queue.Queue[Frame] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._signal_reason: str | None = None
        self._intake_open = False
        self._intake_closed = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        self._drain_deadline: float | None = None
        self.processed = 0
        self.stop_reason = ""
        self.started_at = time.monotonic()
        self.ready_s: float | None = None
        self.left_in_processing = 0
        # Accounting of every frame taken in (files: frames with a content hash, which stay in processing/
        # when not recorded; others: device and HTTP frames, which only a record accounts for).
        self._count_lock = threading.Lock()
        self._taken = {"file": 0, "other": 0}
        self._recorded = {"file": 0, "other": 0}
        #: frames taken in that ended neither as a record nor as a file left in processing/ (set by shutdown)
        self.unrecorded = 0
        self._commit_lock = threading.Lock()  # one commit at a time; the shutdown takes it to take over
        self._taken_over = False
        self._inflight: list[Frame] = []  # the batch the worker holds, until it is committed
        self._stranded: list[Frame] = []  # frames a source could not queue before the drain deadline
        self.watcher: ModelWatcher | None = None
        self._next_engine: Engine | None = None
        self._swap_lock = threading.Lock()
        #: (sha256, task changes) of the last candidate checked, for the swap record
        self._candidate_changes: tuple[str, list[str]] | None = None
        self.model_updates: dict[str, Any] = {"accepted": 0, "rejected": 0, "last_accepted": None,
                                              "last_rejected": None, "pending": None}
        # What the dashboard shows, kept by the worker (the only writer) and read by HTTP threads.
        self.recent: deque[Record] = deque(maxlen=50)
        self.recent_errors: deque[Record] = deque(maxlen=20)
        self.latest: tuple[Record, Any, Any] | None = None
        self.quarantined = 0

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        t0 = time.monotonic()
        # A frame crosses three threads (driver reader, source, worker); with CPython's default 5 ms GIL
        # switch interval each hand-over can wait that long behind a busy thread. 0.5 ms keeps the hand-overs
        # well under the latency budget at a negligible throughput cost.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.engine = Engine(s.model, provider=s.provider, **self._engine_options())
        e = self.engine
        try:
            self.ledger = Ledger(s.db, serving=e.identity, synchronous=s.ledger_sync)
        except (sqlite3.Error, OSError) as exc:
            raise SettingsError(f"cannot open the ledger {s.db}: {exc}") from None
        try:
            self.sinks = open_sinks(s.jsonl, mqtt=s.mqtt, ledger=self.ledger,
                                    mqtt_tls=MqttTls(s.mqtt_ca_file, s.mqtt_cert_file, s.mqtt_key_file))
        except BaseException:
            self.ledger.close()
            raise
        self.metrics = Metrics(
            {"model": e.model_path.name, "model_sha256": e.model_sha256, "provider": e.provider,
             "preprocess_hash": e.preprocess_hash},
            queue_depth=self._q.qsize,
        )
        self.metrics.set_drift_expected(e.drift.expected_flag_rate if e.drift is not None else None)
        if s.http is not None:
            host, port = parse_host_port(s.http)
            try:
                self.http = HttpApi(host, port, self)
            except OSError as exc:
                for sink in self.sinks:  # the MQTT sink's threads would outlive a failed start
                    sink.close(0.0)
                self.ledger.close()
                raise SettingsError(f"cannot listen on {s.http}: {exc}") from None
            self.http.start()
        self._worker = threading.Thread(target=self._work, name="worker", daemon=True)
        self._worker.start()
        if s.model_poll_s > 0:
            self.watcher = ModelWatcher(
                Path(s.model), load=self._load_candidate, check=self._check_candidate,
                current_sha256=self._serving_sha256, on_accept=self._accept_engine, on_reject=self._reject_engine,
                poll_s=s.model_poll_s, settle_s=max(s.settle_s, 0.2), with_report=s.require_validated,
            )
        watch_opts: dict[str, Any] = {"settle_s": s.settle_s, "poll_s": s.poll_s, "on_done": s.on_done,
                                      "temp_suffixes": s.temp_suffixes, "events": s.watch_events,
                                      "readers": s.watch_readers, "watch_links": s.watch_links,
                                      "max_file_bytes": s.max_file_bytes,
                                      "max_spectra_per_file": s.max_spectra_per_file,
                                      "ready_marker": s.ready_marker}
        self._intake_open = True
        try:
            for url in s.sources:
                src = open_source(url, self.ledger, **watch_opts)
                src.open()
                self.sources.append(src)
                axis = src.axis
                if axis is not None:
                    # the resampling operator for this instrument is built before its first spectrum arrives
                    why = e.prepare(axis)
                    if why is not None:
                        logger.error("%s: its spectra cannot be classified by this model: %s", url, why)
            _release_freed_memory()
            for src in self.sources:
                src.start(self._submit)
                logger.info("source %s started", src.url)
        except BaseException:
            self.stop("start-up failed")
            self.shutdown()
            raise
        # Everything allocated so far (modules, the model, operators) lives as long as the process: moved out
        # of the collector's sight, a full collection no longer walks it, so GC pauses stay short.
        gc.collect()
        gc.freeze()
        if self.watcher is not None:
            self.watcher.start()
        threading.Thread(target=self._preload, name="preload", daemon=True).start()
        self.ready_s = time.monotonic() - t0
        self.metrics.ready = True
        logger.info("ready in %.3f s", self.ready_s)

    def _preload(self) -> None:
        """After start-up, in the background: import what preprocessing a new source axis needs (splines), so
        the first dropped file or POSTed spectrum on an unseen axis does not pay for it."""
        if self.engine is None:
            return
        try:
            self.engine.preprocessor.preload()
        except ImportError as exc:  # pragma: no cover - scipy is a base dependency
            logger.warning("preloading preprocessing libraries failed: %s", exc)

    def stop(self, reason: str) -> None:
        """Ask the daemon to stop (from any thread; from a signal handler use :meth:`stop_from_signal`)."""
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def stop_from_signal(self, reason: str) -> None:
        """Ask the daemon to stop, from a signal handler: only a plain attribute is set, and ``run`` calls
        :meth:`stop` within 50 ms.

        A handler runs in the main thread between two bytecodes, possibly while that thread holds the lock of
        ``_stop`` (a plain, non-reentrant Lock) inside ``Event.wait``: ``Event.set`` there would wait for itself
        forever, and SIGTERM would hang the daemon.
        """
        self._signal_reason = reason

    def run(self) -> int:
        """Serve until stopped; returns the exit status (0 after a clean drain)."""
        s = self.settings
        t_end = None if s.duration is None else time.monotonic() + s.duration
        while not self._stop.wait(0.05):
            if self._signal_reason is not None:
                self.stop(self._signal_reason)
            elif t_end is not None and time.monotonic() >= t_end:
                self.stop(f"duration {s.duration:g} s reached")
            elif self._worker_error is not None:
                exc = self._worker_error
                self.stop(bounded_text(f"worker failed: {type(exc).__name__}: {exc}", 512))
            elif self.sources and all(x.finished for x in self.sources) and self._q.empty():
                self.stop("every source finished")
        return self.shutdown()

    def shutdown(self) -> int:
        """Stop intake, drain, commit, close. Bounded by ``drain_timeout_s``."""
        t0 = time.monotonic()
        self._drain_deadline = t0 + self.settings.drain_timeout_s
        logger.info("stopping (%s): draining %d queued frame(s)", self.stop_reason or "requested", self._q.qsize())
        if self.metrics is not None:
            self.metrics.ready = False
        self._intake_open = False
        if self.watcher is not None:
            self.watcher.stop()
        for src in self.sources:
            src.stop()
        for src in self.sources:
            src.join(max(0.0, self._drain_deadline - time.monotonic()))
        self._intake_closed.set()
        if self._worker is not None:
            self._worker.join(max(0.0, self._drain_deadline - time.monotonic()) + 1.0)
            if self._worker.is_alive() or self._worker_error is not None or not self._q.empty() or self._stranded:
                self._take_over()
        if self.http is not None:
            self.http.stop()
        for sink in self.sinks:
            # a sink's final flush (MQTT) stays within the drain deadline (at least half a second)
            sink.close(max(0.5, self._drain_deadline - time.monotonic()))
        if self.ledger is not None:
            self.ledger.close()
        with self._count_lock:
            self.unrecorded = self._taken["other"] - self._recorded["other"]
            self.left_in_processing = self._taken["file"] - self._recorded["file"]
        logger.info("stopped after %.3f s; %d record(s) this run", time.monotonic() - t0, self.processed)
        if self.unrecorded:
            logger.critical("%d frame(s) read from the sources were NOT recorded (drain deadline %g s passed)",
                            self.unrecorded, self.settings.drain_timeout_s)
        if self.left_in_processing:
            logger.warning("%d dropped file(s) not recorded stay in processing/ for the next start",
                           self.left_in_processing)
        return 1 if self._worker_error is not None or self.unrecorded else 0

    def _take_over(self) -> None:
        """The worker missed the drain deadline (stalled) or died: record what it and the queue still hold.

        Holding the commit lock, the frames in the worker's hands, in the queue and stranded at the sources are
        recorded as ``shutdown`` errors (dropped files stay in processing/ for the next start); a batch the
        worker finishes afterwards is discarded, since its frames already have their records.
        """
        budget = max(0.5, (self._drain_deadline or 0.0) - time.monotonic())
        if not self._commit_lock.acquire(timeout=budget):  # the worker is stuck inside a commit (the ledger)
            logger.critical("the worker holds the ledger past the drain deadline; its frames cannot be recorded")
            return
        try:
            self._taken_over = True
            left = list(self._inflight)
            self._inflight = []
            while True:
                try:
                    left.append(self._q.get_nowait())
                except queue.Empty:
                    break
            with self._count_lock:
                left.extend(self._stranded)
                self._stranded.clear()
            keep = [f for f in left if f.content_sha256 is None]
            if self._worker is not None and self._worker.is_alive():
                why = f"the worker is stalled past the drain deadline ({self.settings.drain_timeout_s:g} s)"
            else:
                why = "the worker failed"
            reason = f"daemon stopped before classification: {why}"
            if keep:
                try:
                    self._commit_locked([Outcome.failed(f, "shutdown", reason) for f in keep])
                except (sqlite3.Error, OSError) as exc:
                    logger.critical("recording %d frame(s) as shutdown errors failed: %s", len(keep), exc)
                    return
            logger.warning("%s: %d frame(s) recorded as shutdown errors, %d file(s) left in processing/",
                           why, len(keep), len(left) - len(keep))
        finally:
            self._commit_lock.release()

    # -- intake --------------------------------------------------------------------------------------

    def _count_in(self, frame: Frame) -> None:
        with self._count_lock:
            self._taken["file" if frame.content_sha256 is not None else "other"] += 1

    def _prepare(self, frame: Frame) -> None:
        """In the source's (or HTTP request's) own thread: build the operator for a new axis before queueing,
        so a long spectrum on an unseen axis never holds up the worker and every other source behind it."""
        engine = self.engine
        if engine is None or frame.error is not None or frame.axis is None:
            return
        try:
            engine.prepare_frame(frame)
        except Exception as exc:  # only a head start: the worker meets the same problem and records it
            logger.debug("preparing %s from %s: %s", frame.ref, frame.source, exc)

    def _submit(self, frame: Frame) -> None:
        """For sources: queue a frame, waiting while the queue is full (back-pressure)."""
        self._count_in(frame)
        self._prepare(frame)
        while True:
            try:
                self._q.put(frame, timeout=0.2)
                return
            except queue.Full:
                late = self._drain_deadline is not None and time.monotonic() > self._drain_deadline
                if late or self._worker is None or not self._worker.is_alive():
                    # recorded as a shutdown error (or counted as unrecorded) when the daemon stops
                    logger.error("frame %s from %s cannot be queued (worker %s)", frame.ref, frame.source,
                                 "past the drain deadline" if late else "gone")
                    with self._count_lock:
                        self._stranded.append(frame)
                    return

    def offer(self, frame: Frame, timeout_s: float) -> bool:
        """For HTTP: queue a frame unless intake is closed or the queue stays full for ``timeout_s``."""
        if not self._intake_open or self._stop.is_set():
            return False
        self._prepare(frame)
        try:
            self._q.put(frame, timeout=timeout_s)
        except queue.Full:
            return False
        self._count_in(frame)
        return True

    # -- the worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        max_batch = self.settings.max_batch
        try:
            while True:
                try:
                    first = self._q.get(timeout=0.05)
                except queue.Empty:
                    if self._intake_closed.is_set():
                        return
                    self._maybe_swap()
                    continue
                batch = [first]
                while len(batch) < max_batch:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                self._inflight = batch
                if self._taken_over:
                    return
                if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                    self._abandon(batch)
                    return
                self._maybe_swap()
                self._process(batch)
        except BaseException as exc:
            self._worker_error = exc
            logger.critical("worker failed: %s", exc, exc_info=True)

    def _process(self, batch: Sequence[Frame]) -> None:
        engine, ledger = self.engine, self.ledger
        if engine is None or ledger is None:
            raise RuntimeError("daemon not started")
        outcomes = engine.classify(batch)
        self._commit(outcomes)

    def _commit(self, outcomes: list[Outcome]) -> None:
        """The worker's commit of a batch (discarded when the shutdown took over: those frames are recorded)."""
        with self._commit_lock:
            if self._taken_over:
                logger.warning("a batch of %d the stalled worker finished after the drain deadline is discarded "
                               "(recorded as shutdown errors)", len(outcomes))
                return
            self._commit_locked(outcomes)

    def _commit_locked(self, outcomes: list[Outcome]) -> None:
        ledger = self.ledger
        if ledger is None:
            raise RuntimeError("daemon not started")
        for attempt in range(_COMMIT_RETRIES):
            try:
                committed = ledger.commit(outcomes)
                break
            except sqlite3.OperationalError as exc:
                if attempt == _COMMIT_RETRIES - 1:
                    logger.critical("ledger commit failed %d times, giving up: %s", _COMMIT_RETRIES, exc)
                    raise
                logger.error("ledger commit failed (%s); retrying", exc)
                time.sleep(0.2 * (attempt + 1))
        self._inflight = []
        with self._count_lock:
            for o in outcomes:
                self._recorded["file" if o.frame.content_sha256 is not None else "other"] += 1
        records = [c.record for c in committed if c.record is not None]
        for sink in self.sinks:
            sink.write(records)
        if self.metrics is not None:
            self.metrics.observe(committed)
        self._remember(committed)
        for c in committed:
            cb = c.outcome.frame.on_done
            if cb is not None:
                try:
                    cb(c)
                except (OSError, ValueError, RuntimeError) as exc:
                    logger.error("after-commit action for %s failed: %s", c.outcome.frame.ref, exc)
        self.processed += len(records)
        count = self.settings.count
        if count is not None and self.processed >= count:
            self.stop(f"count {count} reached")

    def _remember(self, committed: list[Committed]) -> None:
        """Keep the last records, errors and spectrum for the dashboard (references only, no copies)."""
        for c in committed:
            rec, o = c.record, c.outcome
            if rec is None:
                continue
            self.recent.append(rec)
            if not o.ok:
                self.recent_errors.append(rec)
                if o.frame.content_sha256 is not None:  # a dropped file that ended as an error: quarantined
                    self.quarantined += 1
            f = o.frame
            if f.axis is not None and f.intensities is not None and o.ok:
                self.latest = (rec, f.axis, f.intensities)

    # -- model updates -------------------------------------------------------------------------------

    def _serving_sha256(self) -> str:
        with self._swap_lock:
            nxt = self._next_engine
        if nxt is not None:
            return nxt.model_sha256
        return self.engine.model_sha256 if self.engine else ""

    def _load_candidate(self, path: Path) -> Engine:
        """A new engine on the provider of the one in service (a swap never changes the provider quietly)."""
        s, e = self.settings, self.engine
        provider: ProviderName = s.provider
        if e is not None:
            provider = cast("ProviderName", short_name(e.provider) or s.provider)
        return Engine(path, provider=provider, **self._engine_options())

    def _engine_options(self) -> dict[str, Any]:
        """What every engine of this daemon is built with (at start-up and for each model update)."""
        s = self.settings
        return {"require_gpu": s.require_gpu, "require_validated": s.require_validated, "threads": s.threads,
                "max_batch": s.max_batch, "max_points": s.max_points, "axis_tolerance": s.axis_tolerance_cm1}

    def _check_candidate(self, new: Engine) -> str | None:
        """None when ``new`` can classify what the configured sources deliver, else the reason it cannot."""
        if self.engine is not None and new.provider != self.engine.provider:
            return f"runs on {new.provider}, the model in service on {self.engine.provider}"
        changes = [] if self.engine is None else task_changes(self.engine.contract, new.contract)
        with self._swap_lock:
            self._candidate_changes = (new.model_sha256, changes)
        if changes and not self.settings.allow_task_change:
            return "changes the task (refused without --allow-task-change): " + "; ".join(changes)
        for src in self.sources:
            axis = src.axis
            if axis is not None:
                why = new.prepare(axis)
                if why is not None:
                    return f"incompatible with source {src.url}: {why}"
        return None

    def _accept_engine(self, new: Engine) -> None:
        with self._swap_lock:
            self._next_engine = new
            self.model_updates["pending"] = new.model_sha256
        logger.info("model update: %s (sha256 %s) passed its checks; swapping in before the next batch",
                    new.model_path.name, new.model_sha256[:12])

    def _reject_engine(self, sha: str | None, reason: str) -> None:
        with self._swap_lock:
            self.model_updates["rejected"] += 1
            cand = self._candidate_changes
            changes = cand[1] if cand is not None and cand[0] == sha else None
            self.model_updates["last_rejected"] = {"sha256": sha, "reason": bounded_text(reason, 2048),
                                                   "changes": changes, "at": time.time()}
        if self.metrics is not None:
            self.metrics.model_update(False, reason)

    def _maybe_swap(self) -> None:
        """In the worker, between two batches: put a checked new model in service."""
        with self._swap_lock:
            new, self._next_engine = self._next_engine, None
            if new is None:
                return
            self.model_updates["pending"] = None
        old, ledger = self.engine, self.ledger
        self.engine = new
        if ledger is not None:  # the worker is the only writer: every later record names the new model
            ledger.serve(new.identity)
        if self.metrics is not None:
            self.metrics.set_info({"model": new.model_path.name, "model_sha256": new.model_sha256,
                                   "provider": new.provider, "preprocess_hash": new.preprocess_hash})
            self.metrics.set_drift_expected(new.drift.expected_flag_rate if new.drift is not None else None)
            self.metrics.model_update(True, "")
        changes = [] if old is None else task_changes(old.contract, new.contract)
        with self._swap_lock:
            self.model_updates["accepted"] += 1
            self.model_updates["last_accepted"] = {"sha256": new.model_sha256, "at": time.time(),
                                                   "previous": old.model_sha256 if old else None,
                                                   "changes": changes}
        logger.warning("model swapped: sha256 %s -> %s (%s, %d classes)%s",
                       old.model_sha256[:12] if old else "-", new.model_sha256[:12], new.model_path.name,
                       len(new.classes), "; TASK CHANGED: " + "; ".join(changes) if changes else "")

    def _abandon(self, first: list[Frame]) -> None:
        """Drain deadline passed: leave dropped files for the next start, record the rest as errors."""
        left = list(first)
        while True:
            try:
                left.append(self._q.get_nowait())
            except queue.Empty:
                break
        keep = [f for f in left if f.content_sha256 is None]
        self.left_in_processing = len(left) - len(keep)
        reason = f"daemon stopped before classification (drain timeout {self.settings.drain_timeout_s:g} s)"
        if keep:
            self._commit([Outcome.failed(f, "shutdown", reason) for f in keep])
        logger.warning("drain timeout: %d frame(s) recorded as shutdown errors, %d file(s) left in processing/",
                       len(keep), self.left_in_processing)

    # -- what HTTP sees ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        return self._worker is not None and self._worker.is_alive() and self._worker_error is None

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = bool(self.metrics and self.metrics.ready) and self.healthy() and not self._stop.is_set()
        info: dict[str, Any] = {
            "model": self.engine.describe() if self.engine else None,
            "sources": [s.status() for s in self.sources],
            "queue_depth": self._q.qsize(),
            "processed": self.processed,
            "ready_s": self.ready_s,
            "model_updates": self.model_update_status(),
        }
        return ready, info

    def model_update_status(self) -> dict[str, Any]:
        with self._swap_lock:
            return {"watching": self.watcher is not None, **dict(self.model_updates)}

    def dashboard_state(self, max_points: int = 1024) -> dict[str, Any]:
        """Everything the dashboard page shows, in one JSON object (polled about once a second)."""
        e = self.engine
        latest = None
        if self.latest is not None:
            rec, axis, y = self.latest
            a = np.asarray(axis, dtype=np.float64)
            v = np.asarray(y, dtype=np.float64)
            step = max(1, -(-a.size // max_points))
            latest = {"record": _slim(rec), "axis": np.round(a[::step], 2).tolist(),
                      "intensities": np.round(v[::step], 3).tolist()}
        ready, _ = self.readiness()
        return {
            "ready": ready,
            "stopping": self._stop.is_set(),
            "model": e.describe() if e else None,
            "model_updates": self.model_update_status(),
            "stats": self.metrics.snapshot() if self.metrics else {},
            "processed": self.processed,
            "quarantined": self.quarantined,
            "recent": [_slim(r) for r in list(self.recent)[::-1]],
            "recent_errors": [_slim(r) for r in list(self.recent_errors)[::-1]],
            "latest": latest,
            "sources": [src.status() for src in self.sources],
            "sinks": [x.status() for x in self.sinks],
        }

    def metrics_text(self) -> str:
        return self.metrics.render() if self.metrics else ""

    def results_since(self, since: int, limit: int) -> list[Record]:
        return self.ledger.since(since, limit) if self.ledger else []

    def model_axis(self) -> list[float]:
        return list(self.engine.contract.axis) if self.engine else []


_SLIM_KEYS = ("id", "source", "input_ref", "status", "class", "confidence", "unknown", "open_set_distance",
              "open_set_threshold", "drift", "drift_t2", "drift_q", "drift_t2_limit", "drift_q_limit",
              "error_kind", "error", "read_ms", "preprocess_ms", "inference_ms", "queue_ms", "total_ms", "batch_size",
              "model_sha256", "completed_at", "saturated")


def _slim(rec: Record) -> dict[str, Any]:
    """A record without its probabilities and metadata (the dashboard's tables), with its unknown and drift
    decisions explained in words."""
    return {**{k: rec.get(k) for k in _SLIM_KEYS}, "explain": explain(rec)}
