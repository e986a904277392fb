"""validate_model runs the ONNX side through the serving Engine and writes the one report schema the runtime reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.engine import Engine, InferenceOutputs
from export.validate import format_report, validate_model
from ramanedge.cli import main
from spectral_core.preprocess import PreprocessConfig, SmoothConfig
from spectral_core.validation_report import ValidationReport, report_path


@pytest.fixture
def model(tiny_onnx: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model (reports written beside it stay in this test's folder)."""
    m = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, m)
    return m


def test_the_onnx_side_is_the_serving_engine(
    model: Path, tiny_run: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Engine, int]] = []
    real = Engine.infer_raw

    def spy(self: Engine, X: Any) -> InferenceOutputs:
        seen.append((self, int(np.asarray(X).shape[0])))
        return real(self, X)

    monkeypatch.setattr(Engine, "infer_raw", spy)
    report = validate_model(model, tiny_run, tiny_data)
    assert report.passed, format_report(report)
    assert len(seen) == 1 and seen[0][1] == report.task.n == 160
    engine = seen[0][0]
    assert engine.requested_provider == "cpu"
    assert report.environment.providers_used == engine.session.get_providers()
    assert report.model_sha256 == engine.model_sha256
    # what was written is the report returned, in the schema the runtime reads, and the runtime accepts it
    assert ValidationReport.read(report_path(model)) == report
    assert Engine(model, provider="cpu", require_validated=True).describe()["validated"] is True


def test_runtime_preprocessing_that_differs_from_training_fails_validation(
    model: Path, tiny_run: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's preprocessing is what is compared: a serving config that drifted from the run's is caught."""
    real = Engine._serving_config

    def smoothed(self: Engine) -> PreprocessConfig:
        return real(self).model_copy(update={"smooth": SmoothConfig(window=9, polyorder=3)})

    monkeypatch.setattr(Engine, "_serving_config", smoothed)
    report = validate_model(model, tiny_run, tiny_data)
    assert not report.passed
    assert report.reason.startswith(("probabilities:", "logits:", "embedding:"))
    assert not Engine(model, provider="cpu").describe()["validated"]


def test_cli_json_is_the_report_file(
    model: Path, tiny_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(model), "--run", str(tiny_run), "--data", str(tiny_data), "--json"]) == 0
    printed = ValidationReport.from_json(capsys.readouterr().out)
    assert printed == ValidationReport.read(report_path(model))
    assert json.loads(report_path(model).read_text())["format_version"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--atol", "logit=1e-3"], "no output 'logit'; the outputs are probabilities, logits, embedding"),
        (["--min-agreement", "2"], "invalid criteria: min_argmax_agreement"),
        (["--atol", "logits=-1"], "invalid criteria: atol"),
    ],
)
def test_cli_refuses_criteria_that_would_not_be_applied(
    model: Path, tiny_run: Path, tiny_data: Path, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["validate", str(model), "--run", str(tiny_run), "--data", str(tiny_data), *args])
    assert not report_path(model).exists()
