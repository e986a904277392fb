"""validate_model and `ramanedge validate`: every precision passes on real labelled spectra, a corrupted model
fails and the report says where, data with another axis or other classes is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.onnx_export import export_run
from export.validate import format_report, report_path, validate_model
from ramanedge.cli import main
from spectral_core.errors import ContractError, ModelFileError, ProviderError
from spectral_core.hashing import sha256_file
from spectral_core.io import read_dataset, write_npz
from spectral_core.synth import synth_dataset


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spectra of tiny_data's four classes, never seen in training (another seed), 100 per class."""
    path = tmp_path_factory.mktemp("held_out") / "held_out.npz"
    write_npz(synth_dataset(classes=4, per_class=100, points=300, seed=7), path)
    return path


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8-static"])
def test_every_precision_exports_and_passes_validation(
    precision: str, tiny_run: Path, tiny_data: Path, held_out: Path, tmp_path: Path
) -> None:
    calibration = read_dataset(tiny_data) if precision == "int8-static" else None
    path = export_run(tiny_run, tmp_path / f"m_{precision}.onnx", precision=precision, calibration=calibration)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    report = validate_model(path, tiny_run, held_out)
    assert report.passed, format_report(report)
    assert report.model.precision == precision
    assert report.environment.providers_used[0] == "CPUExecutionProvider"
    assert report.task.n == 400 and report.task.argmax_agreement >= 0.97
    assert report.task.unknown_agreement is not None  # the tiny run has an open set
    saved = json.loads(report_path(path).read_text())
    assert saved["passed"] is True and saved["model_sha256"] == sha256_file(path)
    for name in ("probabilities", "logits", "embedding"):
        assert set(saved["outputs"][name]["abs"]) == {"max", "mean", "median", "p99"}
    if precision == "fp32":
        assert report.outputs["logits"].abs.max <= 1e-4 and report.outputs["logits"].passed is True
        assert report.task.argmax_agreement == 1.0
    if precision.startswith("int8"):
        assert any(n.op_type in ("MatMulInteger", "QuantizeLinear") for n in onnx.load(path).graph.node)


def test_corrupted_weight_fails_and_report_says_where(
    tiny_onnx: Path, tiny_run: Path, held_out: Path, tmp_path: Path
) -> None:
    model = onnx.load(tiny_onnx)
    init = next(t for t in model.graph.initializer if t.name == "bc")  # the classifier bias
    w = numpy_helper.to_array(init).copy()
    w[1] += 0.05
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    bad = tmp_path / "corrupt.onnx"
    onnx.save(model, bad)
    report = validate_model(bad, tiny_run, held_out)
    assert not report.passed
    assert report.reason.startswith("probabilities:") or report.reason.startswith("logits:")
    logits = report.outputs["logits"]
    assert logits.passed is False and logits.abs is not None and logits.worst is not None
    assert logits.abs.max == pytest.approx(0.05, rel=1e-3)
    assert logits.worst.col == 1 and logits.worst.label == report_classes(tiny_run)[1]
    assert any(f.startswith("logits: max abs error 0.05") for f in report.failures)
    saved = json.loads(report_path(bad).read_text())
    assert saved["passed"] is False and saved["model_sha256"] == sha256_file(bad)
    # the CLI exits non-zero with the one-line reason
    assert main(["validate", str(bad), "--run", str(tiny_run), "--data", str(held_out)]) == 1


def report_classes(run: Path) -> list[str]:
    return list(json.loads((run / "run.json").read_text())["classes"])


def test_cli_export_and_validate(tiny_run: Path, held_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.onnx"
    assert main(["export", str(tiny_run), "--out", str(out), "--precision", "int8"]) == 0
    assert "int8-dynamic" in capsys.readouterr().out
    assert main(["validate", str(out), "--run", str(tiny_run), "--data", str(held_out)]) == 0
    text = capsys.readouterr().out
    assert "argmax agreement" in text and "PASSED" in text and "CPUExecutionProvider" in text
    # a tolerance tighter than what int8 reaches makes it fail, with the output named
    assert main(["validate", str(out), "--run", str(tiny_run), "--data", str(held_out), "--atol", "logits=1e-6"]) == 1
    assert "FAILED: logits: max abs error" in capsys.readouterr().err


def test_data_on_another_axis_is_refused(tiny_onnx: Path, tiny_run: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_axis.npz"
    write_npz(synth_dataset(classes=4, per_class=3, points=300, axis=np.linspace(500.0, 2000.0, 300)), wrong)
    with pytest.raises(ContractError, match="not the model axis"):
        validate_model(tiny_onnx, tiny_run, wrong, write=False)


def test_data_with_other_classes_is_refused(tiny_onnx: Path, tiny_run: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_classes.npz"
    write_npz(synth_dataset(classes=5, per_class=3, points=300), wrong)
    with pytest.raises(ContractError, match="classes"):
        validate_model(tiny_onnx, tiny_run, wrong, write=False)
    assert main(["validate", str(tiny_onnx), "--run", str(tiny_run), "--data", str(wrong)]) == 2


def test_model_from_another_run_is_refused(tiny_onnx: Path, tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    import torch

    from trainer.checkpoint import load_run, save_run

    model, info = load_run(tiny_run)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    other = tmp_path / "other_run"
    save_run(other, model, info.model_copy(update={"weights_sha256": "", "created": ""}))
    with pytest.raises(ContractError, match="other weights"):
        validate_model(tiny_onnx, other, tiny_data, write=False)


def test_missing_provider_is_an_error_not_a_fallback(tiny_onnx: Path, tiny_run: Path, tiny_data: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        # onnxruntime-gpu lists CUDA even without a GPU; the session must then refuse or really use it
        try:
            report = validate_model(tiny_onnx, tiny_run, tiny_data, provider="cuda", write=False)
        except ProviderError as exc:
            assert "CUDAExecutionProvider" in str(exc) or "fell back" in str(exc)
        else:
            assert report.environment.providers_used[0] == "CUDAExecutionProvider"
    with pytest.raises(ProviderError, match="unknown provider"):
        validate_model(tiny_onnx, tiny_run, tiny_data, provider="tpu", write=False)
    with pytest.raises(ModelFileError, match="no such model file"):
        validate_model(tiny_onnx.with_name("missing.onnx"), tiny_run, tiny_data, write=False)


def test_compare_output_reports_polygraphy_style_minimum_tolerances() -> None:
    from export.validate import OutputTolerance, compare_output
    from spectral_core.validation_report import WorstElement

    ref = np.array([[1.0, 0.0, -2.0], [0.5, 4.0, 0.0]])
    got = ref + np.array([[1e-3, 0.0, -4e-3], [0.0, 0.0, 2e-5]])
    out = compare_output("logits", got, ref, OutputTolerance(atol=1e-3), labels=["a", "b", "c"])
    assert out.abs is not None and out.abs.max == pytest.approx(4e-3)
    assert out.min_atol == pytest.approx(4e-3)  # the smallest atol (rtol 0) that passes
    assert out.min_rtol == pytest.approx((4e-3 - 1e-3) / 2.0)  # the smallest rtol with atol 1e-3
    assert out.passed is False and out.n_over == 1
    assert out.worst == WorstElement(row=0, col=2, label="c", onnx=-2.004, torch=-2.0, abs=out.worst.abs)
    assert out.worst.abs == pytest.approx(4e-3)
    # an error on an exact zero cannot be passed by rtol alone: reported as null, and strict JSON holds
    zero = compare_output("logits", got, ref, OutputTolerance(atol=0.0), labels=None)
    assert zero.min_rtol is None
    json.dumps(zero.model_dump(mode="json"), allow_nan=False)
