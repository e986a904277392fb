"""``ramanedge serve`` as a real process, for the edge-runtime tests."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def query_ledger(db: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` on a daemon's ledger while it runs; [] until the database and its tables exist."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


class Daemon:
    """``ramanedge serve`` in a subprocess; stderr is collected in a thread so the pipe never fills."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ramanedge", "-v", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=cwd or REPO,
            preexec_fn=preexec_fn,  # noqa: PLW1509 (callers pass only a setrlimit: no lock, no import)
        )
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self._ready = threading.Event()
        self.url: str | None = None
        self._t_err = threading.Thread(target=self._pump_err, daemon=True)
        self._t_out = threading.Thread(target=self._pump_out, daemon=True)
        self._t_err.start()
        self._t_out.start()

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("ramanedge serve: ready"):
                m = re.search(r"(http://[\d.]+:\d+)", line)
                self.url = m.group(1) if m else None
                self._ready.set()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout_s: float = 60.0) -> Daemon:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return self
            if self.proc.poll() is not None:
                self._t_err.join(5)
                pytest.fail(f"daemon exited with {self.proc.returncode} before ready:\n{self.log}")
        pytest.fail(f"daemon not ready within {timeout_s} s:\n{self.log}")

    def wait(self, timeout_s: float = 120.0) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon still running after {timeout_s} s:\n{self.log}")
        self._t_err.join(5)
        self._t_out.join(5)
        return rc

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._t_err.join(5)
        self._t_out.join(5)
