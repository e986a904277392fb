"""A warning when near-identical spectra lie on both sides of a split (a leaky grouping)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset
from trainer.evaluate import evaluate
from trainer.leakage import near_identical_pairs, split_leakage
from trainer.train import TrainConfig


def _leaky(copies: int) -> SpectralDataset:
    """60 spectra in 60 groups; the first ``copies`` are stored again (scaled, offset: a copy, not a new
    acquisition) under groups of their own, so a grouped split can put original and copy apart."""
    ds = synth_dataset(classes=3, per_class=20, points=300, seed=3)
    X = np.asarray(ds.X, dtype=np.float32)
    y = np.asarray(ds.y)
    dup = X[:copies] * 1.7 + 5.0
    return SpectralDataset(
        X=np.vstack([X, dup]), axis=ds.axis, y=np.r_[y, y[:copies]], classes=ds.classes,
        groups=[f"s{i}" for i in range(len(X))] + [f"copy{i}" for i in range(copies)],
    )


def test_pairs_are_exactly_the_planted_copies() -> None:
    ds = _leaky(5)
    pairs = near_identical_pairs(np.asarray(ds.X))
    assert pairs.tolist() == [[i, 60 + i] for i in range(5)]
    # independent synthetic acquisitions (noise of their own) are not near-identical
    assert near_identical_pairs(np.asarray(ds.X)[:60]).shape == (0, 2)


def test_split_leakage_counts_pairs_across_and_names_groups() -> None:
    pairs = np.array([[0, 3], [1, 2]])
    splits = [{"name": "fold1", "train": [0], "val": [1], "test": [2, 3]},
              {"name": "fold2", "train": [0, 3], "val": [], "test": [1, 2]}]
    doc = split_leakage(pairs, splits, np.array(["a", "b", "c", "d"]))
    assert doc["pairs_across"] == 2 and doc["distinct_pairs_across"] == 2 and doc["splits_affected"] == 1  # fold2 keeps both pairs on one side
    assert doc["example"] == {"split": "fold1", "test_index": 3, "train_index": 0, "test_group": "d",
                              "train_group": "a"}


def test_evaluate_warns_about_a_leaky_set(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = TrainConfig(num_threads=1)
    with caplog.at_level(logging.WARNING, logger="trainer.evaluate"):
        evaluate(_leaky(10), tmp_path / "leaky", cfg, models=["knn"], folds=3, jobs=1)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "near-identical" in warning and "group 'copy" in warning and "group 's" in warning
    doc = json.loads((tmp_path / "leaky" / "results.json").read_text())["leakage"]
    # 3-fold CV: each planted pair straddles the split of whichever fold holds one of its two spectra
    assert doc["near_identical_pairs"] == 10 and 1 <= doc["distinct_pairs_across"] <= 10
    assert "possible leak" in (tmp_path / "leaky" / "results.md").read_text()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trainer.evaluate"):
        evaluate(_leaky(0), tmp_path / "clean", cfg, models=["knn"], folds=3, jobs=1)
    assert not any("near-identical" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "clean" / "results.json").read_text())["leakage"]["pairs_across"] == 0
    assert "possible leak" not in (tmp_path / "clean" / "results.md").read_text()
