"""Evaluation on a real data set (../shared/data): the protocol machinery on real files, baselines only (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectral_core.errors import DataError
from spectral_core.io import read_dataset
from trainer.evaluate import evaluate
from trainer.train import TrainConfig


@pytest.mark.data
def test_covid_binary_task_with_baselines(data_dir: Path, tmp_path: Path) -> None:
    ds = read_dataset(data_dir / "covid19-serum-yin" / "dataset.npz").select_classes(["Healthy", "COVID-19"])
    merged = evaluate(ds, tmp_path / "ev", TrainConfig(), protocol="holdout", repeats=3, models=["svm", "knn"])
    # docs/results.md: svm 93.2 +- 2.7 over 50 splits; well above chance (0.5) on any 3.
    assert merged["models"]["svm"]["summary"]["accuracy"]["mean"] > 0.8
    assert merged["data"]["spectra"] == 309


@pytest.mark.data
def test_rruff_refuses_five_folds(data_dir: Path, tmp_path: Path) -> None:
    ds = read_dataset(data_dir / "rruff-ramin-27class" / "dataset.npz")
    with pytest.raises(DataError, match="fewer members"):
        evaluate(ds, tmp_path / "ev", TrainConfig(), protocol="kfold", folds=5, models=["svm"])
