"""External services for tests: a Mosquitto broker and Debian's chromium, started per test on loopback.

A missing binary skips the test with a visible reason, except under CI (``CI=true``), where it fails: the
same rule as the ``data_dir`` fixture. ``scripts/test-services.sh`` installs them (Debian, as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
HINT = "run scripts/test-services.sh as root (apt-get install mosquitto chromium chromium-driver)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """The path of ``name`` (PATH, then the usual sbin/bin folders); skip, or fail under CI, when absent."""
    found = shutil.which(name) or next((str(Path(d) / name) for d in SEARCH if (Path(d) / name).is_file()), None)
    if found is None:
        msg = f"{name} is not installed; {HINT}"
        if _in_ci():
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:``port`` with persistence in ``workdir``; ``start``/``stop`` restart it
    on the same port with the same store (queued QoS 1 messages of persistent sessions survive)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("mosquitto")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {workdir}/", "log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to user mosquitto, who cannot write the tmp store
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> Mosquitto:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM (the broker writes its store), then SIGKILL if it lingers."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(15)
