"""Fixtures of the edge-runtime tests: the shared tiny model, a stand-in model for tampering, and a helper that
runs ``ramanedge serve`` as a real process and always stops it."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _er_daemon import Daemon


@pytest.fixture(scope="session")
def model(tiny_onnx: Path) -> Path:
    """The shared tiny RamanNet export (4 synthetic classes, 300 points, 400-1800 cm^-1, validated)."""
    return tiny_onnx


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model with a real contract built with onnx.helper (for tests that tamper with a model)."""
    pytest.importorskip("onnx")
    from _er_model import build_model

    return build_model(tmp_path_factory.mktemp("standin") / "standin.onnx")


@pytest.fixture
def serve() -> Iterator[type[Daemon]]:
    """Start daemons with ``serve(args)``; every one still running at the end is terminated, then killed."""
    started: list[Daemon] = []

    class _Tracked(Daemon):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, **k)  # type: ignore[arg-type]
            started.append(self)

    yield _Tracked
    for d in started:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(15)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait(15)
