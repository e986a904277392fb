"""Export + validate on a model trained on a real data set from ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.onnx_export import export_run
from export.validate import format_report, validate_model
from spectral_core.io import read_dataset


@pytest.mark.data
@pytest.mark.slow
def test_rruff_model_exports_and_validates(data_dir: Path, tmp_path: Path) -> None:
    from trainer.train import TrainConfig, train

    data = data_dir / "rruff-ramin-27class" / "dataset.npz"
    ds = read_dataset(data)
    cfg = TrainConfig.model_validate(
        {"epochs": 8, "batch_size": 64, "seed": 0, "num_threads": 1, "model": {"n2": 64, "embedding_dim": 32}}
    )
    run = tmp_path / "run"
    train(ds, run, cfg)
    for precision in ("fp32", "int8-dynamic"):
        model = export_run(run, tmp_path / f"rruff_{precision}.onnx", precision=precision)
        report = validate_model(model, run, data)
        assert report.passed, format_report(report)
        assert report.task.n == ds.n_spectra
        if precision == "fp32":
            assert report.task.argmax_agreement == 1.0
