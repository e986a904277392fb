"""The session fixtures other packages build on: tiny_data and tiny_run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectral_core.io import read_dataset
from spectral_core.preprocess import Preprocessor
from spectral_core.synth import synth_dataset
from trainer.checkpoint import load_run
from trainer.train import predict


def test_tiny_data_is_the_documented_synthetic_set(tiny_data: Path) -> None:
    ds = read_dataset(tiny_data)
    ref = synth_dataset(classes=4, per_class=40, points=300, seed=0)
    assert ds.fingerprint() == ref.fingerprint()


def test_tiny_run_loads_and_learned(tiny_run: Path, tiny_data: Path) -> None:
    model, info = load_run(tiny_run)
    assert (tiny_run / "history.csv").is_file() and (tiny_run / "curves.png").is_file()
    assert info.classes == ["compound_A", "compound_B", "compound_C", "compound_D"]
    assert info.open_set is not None and len(info.open_set.thresholds) == 4
    assert info.data_sha256 == read_dataset(tiny_data).fingerprint()
    # Held-out spectra (another seed) are classified well above chance (0.25).
    test = synth_dataset(classes=4, per_class=50, points=300, seed=1)
    x = Preprocessor(info.preprocess).transform(test.X, test.axis)
    logits, emb = predict(model, x)
    assert float((logits.argmax(1) == test.y).mean()) > 0.6
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
