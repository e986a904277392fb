"""Fixtures of the explanation tests: a small RamanNet trained once on data with known discriminating bands."""

from __future__ import annotations

from pathlib import Path

import pytest
from known_bands import known_band_dataset, train_small_run

from spectral_core.io import write_npz


@pytest.fixture(scope="session")
def band_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``train``/``test`` npz files of the three known-band classes and ``run``, a RamanNet trained on train."""
    d = tmp_path_factory.mktemp("known_bands")
    train = write_npz(known_band_dataset(per_class=100, seed=1), d / "train.npz")
    test = write_npz(known_band_dataset(per_class=30, seed=2), d / "test.npz")
    from spectral_core.io import read_dataset

    run = train_small_run(read_dataset(train), d / "run")
    return {"train": train, "test": test, "run": run}
