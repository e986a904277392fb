"""Shutdown accounting and ledger failures: every frame read from a source ends as a result or a ``shutdown``
error record, even when the worker is stalled at SIGTERM; a ledger that cannot commit (a full disk) stops the
daemon with the real SQLite error, a non-zero status and the count of frames it could not record."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _er_daemon import REPO, query_ledger

import edge_runtime.daemon as daemon_mod
from edge_runtime.daemon import Daemon
from edge_runtime.ledger import Ledger
from edge_runtime.records import Frame, Outcome
from edge_runtime.settings import load_settings


class _FullDisk:
    """The ledger's writer connection on a disk that just filled up: COMMIT fails with SQLITE_FULL, and SQLite
    has already rolled the transaction back by itself (as it does for SQLITE_FULL)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self.con.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_a_failed_commit_raises_the_real_error_not_the_rollback_one(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "r.sqlite")
    try:
        ledger._writer = _FullDisk(ledger._writer)  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            ledger.commit([Outcome.failed(Frame("t", "a", None, None), "input", "x")])
    finally:
        ledger.close()
    assert Ledger(tmp_path / "r.sqlite").count() == 0


def test_full_disk_stops_the_daemon_non_zero_with_the_sqlite_error(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon_mod, "_COMMIT_RETRIES", 2)
    db = tmp_path / "r.sqlite"
    d = Daemon(load_settings({"model": str(model), "db": str(db), "http": "off", "provider": "cpu",
                              "sources": ["sim://?classes=4&rate=300&seed=3"], "model_poll_s": 0,
                              "drain_timeout_s": 3}))
    d.start()
    try:
        deadline = time.monotonic() + 60
        while len(query_ledger(db, "SELECT id FROM results")) < 20:
            assert time.monotonic() < deadline, "no records"
            time.sleep(0.05)
        assert d.ledger is not None
        with d.ledger._lock:  # between two commits
            d.ledger._writer = _FullDisk(d.ledger._writer)  # type: ignore[assignment]
        caplog.set_level(logging.INFO)
        rc = d.run()
    finally:
        if d.ledger is not None:
            d.ledger.close()
    assert rc == 1
    assert "database or disk is full" in d.stop_reason
    log = caplog.text
    assert "database or disk is full" in log and "cannot rollback" not in log
    produced = d.sources[0].status()["spectra"]
    committed = len(query_ledger(db, "SELECT id FROM results"))
    assert d.unrecorded > 0 and committed + d.unrecorded == produced, (committed, d.unrecorded, produced)
    assert "NOT recorded" in log


_STALLING_SERVE = """
import sys, threading
import edge_runtime.engine as E
orig = E.Engine.classify
calls = [0]
never = threading.Event()
def classify(self, frames):
    calls[0] += 1
    if calls[0] > 5:
        never.wait(300)  # the worker stalls (a wedged accelerator, a pathological input)
    return orig(self, frames)
E.Engine.classify = classify
from ramanedge.cli import main
sys.exit(main(["-v", "serve", *sys.argv[1:]]))
"""


def test_sigterm_with_a_stalled_worker_records_every_frame_read(model: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STALLING_SERVE, "--model", str(model), "--db", str(db), "--http", "off",
             "--provider", "cpu", "--source", "sim://?classes=4&rate=200&seed=3", "--queue-size", "16",
             "--max-batch", "4", "--drain-timeout", "1", "--model-poll", "0"],
            stdout=subprocess.DEVNULL, stderr=fh, cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 90
        while "ramanedge serve: ready" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        time.sleep(1.5)  # the worker stalls after 5 batches; the queue fills and the source waits on it
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    log = err.read_text()
    stop = [ln for ln in log.splitlines() if ln.startswith("ramanedge serve: stopped")][-1]
    produced = json.loads(stop.split("sources: ", 1)[1])[0]["spectra"]
    rows = query_ledger(db, "SELECT seq, status, error_kind FROM results ORDER BY seq")
    shutdown = [r for r in rows if r[2] == "shutdown"]
    assert len(rows) == produced > 20, (len(rows), produced, log[-3000:])
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + len(rows))), "no gap"
    assert len(shutdown) >= produced - 20 and all(r[1] == "error" for r in shutdown)
    assert rc == 0 and "NOT recorded" not in stop, log[-3000:]
