"""The tiny model's data and training settings, shared by tests/conftest.py's fixtures and the tests that
train more of the same (importable by name: the several conftest.py files of the suite shadow one another)."""

from __future__ import annotations

from typing import Any

TINY_DATA_ARGS: dict[str, Any] = {"classes": 4, "per_class": 40, "points": 300, "seed": 0}
TINY_TRAIN_CONFIG: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 32,
    "lr": 3e-3,
    "seed": 0,
    "model": {"window": 20, "step": 10, "n2": 64, "embedding_dim": 32, "bn_momentum": 0.1},
    "num_threads": 1,
    # The data's own axis (no margin chosen inside it): the tests built on this model send 300-point spectra
    # on 400-1800 cm^-1; shifted spectra then exercise the serving tolerance (edge fill) rather than the margin.
    "axis_tolerance_cm1": 0,
}
