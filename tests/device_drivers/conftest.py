"""Fixtures of the device-driver tests: simulators on a real pty or a loopback TCP port, always stopped."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# This folder is named like the package it tests. pytest puts tests/ on sys.path, where this folder would
# otherwise be imported as an empty namespace package "device_drivers" shadowing the real one (the editable
# install's finder is consulted after sys.path). A regular package on sys.path always wins over a namespace.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.append(_REPO)
_dd = sys.modules.get("device_drivers")
if _dd is not None and getattr(_dd, "__file__", None) is None:  # a namespace import already happened
    for _name in [m for m in sys.modules if m == "device_drivers" or m.startswith("device_drivers.")]:
        del sys.modules[_name]

from device_drivers.sim import SimConfig, SimulatedInstrument  # noqa: E402 (after the sys.path fix above)


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimulatedInstrument]]:
    """Start a SimulatedInstrument; every one started is stopped (thread joined, pty/socket closed) at the end."""
    started: list[SimulatedInstrument] = []

    def _start(config: SimConfig | None = None, **kwargs: Any) -> SimulatedInstrument:
        sim = SimulatedInstrument(config or SimConfig(), **kwargs).start()
        started.append(sim)
        return sim

    before = set(threading.enumerate())
    yield _start
    for sim in started:
        sim.stop()
    for sim in started:
        assert sim.error is None, f"simulator thread failed: {sim.error!r}"
    leaked = [t for t in set(threading.enumerate()) - before if t.name.startswith("sim-") and t.is_alive()]
    assert not leaked, f"simulator threads still running: {leaked}"
