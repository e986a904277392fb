"""Training fits its unknown thresholds on the held-out validation part; the openset protocol reports the
false-unknown rate on known test spectra and the unknown classes' AUROC, with how it split the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from spectral_core.errors import DataError
from spectral_core.synth import synth_dataset
from trainer.evaluate import open_set_evaluation
from trainer.openset import fit_open_set
from trainer.train import TrainConfig, train

SMALL = {
    "epochs": 5, "batch_size": 32, "lr": 3e-3, "seed": 0, "num_threads": 1, "axis_tolerance_cm1": 0,
    "model": {"window": 20, "step": 10, "n2": 64, "embedding_dim": 32, "bn_momentum": 0.1},
}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_fit_open_set_calibrates_on_held_out_embeddings() -> None:
    rng = np.random.default_rng(0)
    cen = _unit(rng.normal(size=(3, 8)))
    y = np.repeat(np.arange(3), 50)
    tight = _unit(cen[y] + 0.02 * rng.normal(size=(150, 8)))
    wide = _unit(cen[y] + 0.08 * rng.normal(size=(150, 8)))
    old = fit_open_set(tight, y, 3)
    assert old.target_unknown_rate is None  # no rate: the training-distance quantile, as before
    new = fit_open_set(tight, y, 3, unknown_rate=0.05, cal_embeddings=wide, cal_predicted=y, calibration="val")
    assert new.target_unknown_rate == 0.05 and new.calibration_spectra == 150 and new.calibration == "val"
    assert new.centroids == old.centroids
    assert new.scales == pytest.approx(old.thresholds)
    assert all(n > o for n, o in zip(new.thresholds, old.thresholds, strict=True))
    # no held-out spectra: the training-distance thresholds, with a warning rather than a failure
    empty = fit_open_set(tight, y, 3, unknown_rate=0.05, cal_embeddings=wide[:0], cal_predicted=y[:0])
    assert empty.thresholds == old.thresholds and empty.target_unknown_rate is None


def test_train_stores_the_calibrated_thresholds_in_the_run(tmp_path: Path) -> None:
    ds = synth_dataset(classes=3, per_class=30, points=300, seed=0)
    cfg = TrainConfig.model_validate({**SMALL, "unknown_rate": 0.1, "val_fraction": 0.3})
    info = train(ds, tmp_path / "run", cfg)
    os_ = info.open_set
    assert os_ is not None
    assert os_.target_unknown_rate == 0.1
    assert os_.calibration_spectra == info.metrics["n_val"] and os_.calibration_spectra > 0
    assert os_.calibration is not None and "validation part" in os_.calibration
    assert sum(os_.calibration_counts or []) == info.metrics["n_val"]
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["open_set"]["target_unknown_rate"] == 0.1


def test_unknown_rate_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown_rate"):
        TrainConfig.model_validate({"unknown_rate": 0.0})


def test_openset_protocol_reports_false_unknown_and_auroc_with_the_split(tmp_path: Path) -> None:
    ds = synth_dataset(classes=4, per_class=30, points=300, seed=1)
    cfg = TrainConfig.model_validate({**SMALL, "unknown_rate": 0.05, "val_fraction": 0.25})
    doc = open_set_evaluation(ds, tmp_path / "os", cfg, unknown_classes=[ds.classes[3]], test_fraction=0.3)
    (row,) = doc["per_class"]
    assert row["held_out"] == ds.classes[3]
    assert row["known_test_spectra"] > 0 and 0.0 <= row["known_false_unknown"] <= 1.0
    assert 0.0 <= row["auroc"] <= 1.0 and row["calibration_spectra"] > 0
    # the same run scored with the thresholds before calibration (training-distance quantile), side by side
    assert row["known_false_unknown_uncalibrated"] is not None and row["unknown_flagged_uncalibrated"] is not None
    assert doc["params"]["unknown_rate"] == 0.05 and doc["grouping"]["grouped"] is False
    assert "split spectrum by spectrum" in doc["split"]
    for name in ("results.json", "openset.json"):
        saved = json.loads((tmp_path / "os" / name).read_text())
        assert saved["summary"]["known_false_unknown"] == pytest.approx(row["known_false_unknown"])
        assert saved["summary"]["auroc"] == pytest.approx(row["auroc"])
    md = (tmp_path / "os" / "results.md").read_text()
    assert "false unknown %" in md and "AUROC" in md and f"{row['auroc']:.3f}" in md
    assert "target false-unknown rate 0.05" in md and "before calibration" in md


def test_openset_protocol_splits_by_group(tmp_path: Path) -> None:
    ds = synth_dataset(classes=3, per_class=24, points=300, seed=2)
    groups = np.array([f"s{int(c)}-{i // 3}" for i, c in enumerate(ds.y)])  # 3 repeats per sample
    ds = type(ds)(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=groups, provenance=ds.provenance)
    cfg = TrainConfig.model_validate({**SMALL, "epochs": 3, "val_fraction": 0.25})
    doc = open_set_evaluation(ds, tmp_path / "g", cfg, unknown_classes=[ds.classes[0]])
    assert doc["grouping"]["grouped"] is True and "split by group" in doc["split"]


def test_openset_protocol_refuses_a_class_it_does_not_have(tmp_path: Path) -> None:
    ds = synth_dataset(classes=3, per_class=10, points=300, seed=3)
    with pytest.raises(DataError, match="unknown class"):
        open_set_evaluation(ds, tmp_path / "x", TrainConfig.model_validate(SMALL), unknown_classes=["nope"])


@pytest.mark.data
def test_melanoma_held_out_known_spectra_flagged_near_the_target(data_dir: Path, tmp_path: Path) -> None:
    """docs/results.md: 3.5% of known test spectra flagged without DMEM (target 5%), 95% of DMEM flagged; the
    uncalibrated thresholds flagged 59% of the same known spectra."""
    from spectral_core.io import read_dataset

    ds = read_dataset(data_dir / "melanoma-sers-erzina" / "dataset_nh2.npz")
    cfg = TrainConfig.from_file(Path(__file__).parents[2] / "trainer" / "configs" / "small_data.toml")
    cfg = cfg.with_overrides({"epochs": 30, "num_threads": 1})  # shortened: a test, not the measurement
    doc = open_set_evaluation(ds, tmp_path / "mel", cfg, unknown_classes=["DMEM"])
    (row,) = doc["per_class"]
    assert row["known_false_unknown"] <= 0.07
    assert row["known_false_unknown_uncalibrated"] > 0.2
    assert row["unknown_flagged"] > 0.5 and row["auroc"] > 0.9


def test_unknown_rate_flag_reaches_the_config() -> None:
    from ramanedge.cli import build_parser
    from trainer.cli import build_config

    for command in ("train", "evaluate"):
        args = build_parser(only=command).parse_args([command, "--data", "d.npz", "--out", "o", "--unknown-rate", "0.1"])
        assert build_config(args).unknown_rate == 0.1
    args = build_parser(only="train").parse_args(["train", "--data", "d.npz", "--out", "o"])
    assert build_config(args).unknown_rate == 0.05
