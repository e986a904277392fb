"""Safe model updates: watch the model file, load a new model beside the old one, check it, hand it over.

A deploy replaces the model file (best atomically: write ``model.onnx.tmp``, then rename). The watcher sees the
file's (mtime, size, inode) change, waits until it has been unchanged for ``settle_s`` (a copy in progress is
never loaded), hashes it and, when the hash differs from the model being served, builds a complete
:class:`~edge_runtime.engine.Engine` in its own thread: the session, the contract checks, the self-test on the
contract's reference spectra, the validation report when ``require_validated``, the same execution provider as
the running model, and the resampling operator of every configured instrument axis. Only a model that passes
all of that is offered to the daemon, whose worker swaps it in between two micro-batches; anything else is
rejected with a logged reason and the old model keeps serving. A rejected file is not retried until it (or
its validation report) changes again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.engine import Engine, find_validation_report
from spectral_core.hashing import sha256_file

__all__ = ["ModelWatcher", "Signature", "file_signature"]

logger = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]


def _stat(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def file_signature(model: Path, with_report: bool) -> Signature:
    """What identifies a version of the model file (and of its validation report, when it matters)."""
    return _stat(model), _stat(find_validation_report(model)) if with_report else None


@dataclass
class Candidate:
    """A model file version the watcher is waiting on or has handled."""

    signature: Signature
    seen_at: float


class ModelWatcher:
    """Polls the model file and turns a settled new version into a checked :class:`Engine` or a rejection.

    Args:
        path: the model file the daemon serves.
        load: builds an Engine from the file (raises on any problem: corrupt file, contract, self-test,
            validation report, provider).
        check: further checks on a loaded engine (contract vs. the configured sources): None, or the reason
            the engine must not serve.
        current_sha256: the hash of the model in service (a file rewritten with the same bytes is no update).
        on_accept: called with the checked engine (the daemon swaps it in between two batches).
        on_reject: called with (sha256 or None, reason).
        poll_s: how often the file is looked at, s.
        settle_s: how long a new version must stay unchanged before it is read, s.
        with_report: also watch ``<model>.validation.json`` (``--require-validated``).
    """

    def __init__(
        self,
        path: Path,
        *,
        load: Callable[[Path], Engine],
        check: Callable[[Engine], str | None],
        current_sha256: Callable[[], str],
        on_accept: Callable[[Engine], None],
        on_reject: Callable[[str | None, str], None],
        poll_s: float = 2.0,
        settle_s: float = 0.5,
        with_report: bool = False,
    ) -> None:
        self.path = Path(path)
        self._load = load
        self._check = check
        self._current = current_sha256
        self._on_accept = on_accept
        self._on_reject = on_reject
        self.poll_s = max(0.05, float(poll_s))
        self.settle_s = max(0.0, float(settle_s))
        self.with_report = with_report
        self._handled = file_signature(self.path, with_report)
        self._pending: Candidate | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        logger.info("watching %s for model updates (every %g s)", self.path, self.poll_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception as exc:  # the watcher must outlive any surprise; serving goes on
                logger.error("model watcher: %s", exc, exc_info=True)

    def poll(self, now: float | None = None) -> None:
        """One look at the file: note a change, or handle a version that has settled."""
        t = time.monotonic() if now is None else now
        sig = file_signature(self.path, self.with_report)
        if sig[0] is None or sig == self._handled:
            self._pending = None  # missing (mid-replace) or nothing new
            return
        if self._pending is None or self._pending.signature != sig:
            self._pending = Candidate(sig, t)
            return
        if t - self._pending.seen_at < self.settle_s:
            return
        self._pending = None
        self._handle(sig)

    def _handle(self, sig: Signature) -> None:
        try:
            sha = sha256_file(self.path)
        except OSError as exc:
            logger.warning("model update: cannot read %s yet (%s)", self.path, exc)
            return
        if sha == self._current():
            self._handled = sig
            logger.info("model file %s touched but unchanged (sha256 %s)", self.path, sha[:12])
            return
        logger.info("model update: loading %s (sha256 %s) beside the model in service", self.path, sha[:12])
        try:
            engine = self._load(self.path)
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            self._reject(sig, sha, f"cannot load: {type(exc).__name__}: {exc}")
            return
        if file_signature(self.path, self.with_report) != sig:
            logger.info("model update: %s changed while it was loaded; waiting for it to settle", self.path)
            return
        if engine.model_sha256 != sha:
            self._reject(sig, engine.model_sha256, "the file changed between hashing and loading")
            return
        why = self._check(engine)
        if why is not None:
            self._reject(sig, sha, why)
            return
        self._handled = sig
        self._on_accept(engine)

    def _reject(self, sig: Signature, sha: str | None, reason: str) -> None:
        self._handled = sig
        logger.error("model update REJECTED (%s, sha256 %s): %s; the model in service keeps serving",
                     self.path, (sha or "?")[:12], reason)
        self._on_reject(sha, reason)
