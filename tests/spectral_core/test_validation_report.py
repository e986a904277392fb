"""The one validation report schema: strict JSON round trip, format and version checks, reports written before
the schema existed, and the consistency check that refuses a hand-edited report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from spectral_core import validation_report as vr
from spectral_core.errors import ContractError, ValidationReportError
from spectral_core.validation_report import (
    Criteria,
    DataFacts,
    Environment,
    ErrorStats,
    ModelFacts,
    OutputComparison,
    OutputTolerance,
    RunFacts,
    TaskAgreement,
    ValidationReport,
    WorstElement,
    judge,
    report_path,
)

V1_REPORT = Path(__file__).parent / "data" / "validation_report_v1.json"
# SHA-256 of the model the v1 report was written for (ramanedge validate before this schema module existed)
V1_MODEL_SHA = "072fd9f3e389698bc415c68ae0e2211cda6ab3a4588cb63e3f3deac8c8d29ee7"
SHA = "ab" * 32


def _output(max_abs: float, atol: float | None) -> OutputComparison:
    stats = ErrorStats(max=max_abs, mean=max_abs / 4, median=max_abs / 5, p99=max_abs / 2)
    return OutputComparison(
        shape=[10, 3], abs=stats, rel=stats, min_atol=max_abs, min_rtol=None, atol=atol,
        rtol=None if atol is None else 0.0, passed=None if atol is None else max_abs <= atol,
        n_over=None if atol is None else int(max_abs > atol),
        worst=WorstElement(row=2, col=1, label="b", onnx=1.0 + max_abs, torch=1.0, abs=max_abs),
    )


def _report(logits_error: float = 1e-6, agreement: float = 1.0) -> ValidationReport:
    """A report whose verdict follows from its numbers (``judge``), as validate_model writes them."""
    criteria = Criteria(tolerances={"logits": OutputTolerance(atol=1e-4)}, min_argmax_agreement=1.0,
                        max_accuracy_drop_pp=0.0, min_embedding_cosine=0.999)
    outputs = {"probabilities": _output(1e-7, None), "logits": _output(logits_error, 1e-4),
               "embedding": _output(1e-7, None)}
    task = TaskAgreement(
        n=10, argmax_agreement=agreement, argmax_disagreements=round(10 * (1 - agreement)), top_k=3,
        top_k_agreement=1.0, embedding_cosine_mean=1.0, embedding_cosine_min=0.99999, accuracy_torch=0.9,
        accuracy_onnx=0.9, accuracy_change_pp=0.0, macro_f1_torch=0.88, macro_f1_onnx=0.88, macro_f1_change_pp=0.0,
    )
    failures = judge(criteria, outputs, task)
    return ValidationReport(
        passed=not failures, reason=failures[0] if failures else "", failures=failures, model_sha256=SHA,
        model=ModelFacts(path="m.onnx", precision="fp32", opset=18, contract_weights_sha256="cd" * 32,
                         in_graph_steps=["normalise"]),
        run=RunFacts(path="run", weights_sha256="cd" * 32),
        data=DataFacts(path="d.npz", sha256="ef" * 32, n_spectra=11, n_used=10, excluded={"4": "flat spectrum"}),
        environment=Environment(python="3.12", numpy="2", torch="2", onnx="1", onnxruntime="1", platform="x",
                                cpu="y", cpu_count=None, provider_requested="CPUExecutionProvider",
                                providers_used=["CPUExecutionProvider"]),
        criteria=criteria, outputs=outputs, task=task, created="2026-12-01T00:00:00+00:00",
    )


def _edited(report: ValidationReport, **changes: Any) -> str:
    obj = json.loads(report.to_json())
    obj.update(changes)
    return json.dumps(obj)


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    report = _report()
    path = report.write(report_path(tmp_path / "m.onnx"))
    assert path == tmp_path / "m.validation.json"
    assert ValidationReport.read(path) == report
    assert ValidationReport.from_json(report.to_json()) == report
    assert path.stat().st_mode & 0o044 == 0o044  # readable by a runtime running as another user
    assert report.refusal(SHA) is None


def test_a_report_written_before_the_schema_module_is_read_and_vouches_for_its_model() -> None:
    report = ValidationReport.read(V1_REPORT)
    assert report.format_version == 1 and report.passed
    assert report.outputs["logits"].abs is not None and report.outputs["logits"].abs.max < 1e-4
    assert report.task.unknown_agreement is not None
    assert report.inconsistencies() == []
    assert report.refusal(V1_MODEL_SHA) is None
    assert "another model" in (report.refusal(SHA) or "")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"format": None}, "not a ramanedge validation report"),
        ({"format": "ramanedge-run"}, "not a ramanedge validation report"),
        ({"format_version": 2}, "format version 2.*newer ramanedge"),
        ({"format_version": "1"}, "format version '1'"),
        ({"format_version": 0}, "format version 0; this ramanedge reads version 1"),
        ({"passed": "true"}, "passed"),  # strict: a string is no bool
        ({"model_sha256": None}, "model_sha256"),
        ({"sha256": SHA}, "sha256.*Extra inputs"),  # one of the spellings the runtime used to guess at
        ({"task": {"n": 10}}, "task"),
    ],
)
def test_strict_schema_and_version_are_checked(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationReportError, match=match):
        ValidationReport.from_json(_edited(_report(), **changes), source="r.json")


def test_old_guessed_spellings_and_junk_are_refused_with_the_fix(tmp_path: Path) -> None:
    old = tmp_path / "m.validation.json"
    old.write_text(json.dumps({"passed": True, "onnx_sha256": SHA}))
    with pytest.raises(ValidationReportError, match=r"not a ramanedge validation report.*ramanedge validate"):
        ValidationReport.read(old)
    old.write_text("[1, 2]")
    with pytest.raises(ValidationReportError, match="not a JSON object"):
        ValidationReport.read(old)
    old.write_text('{"passed": NaN')
    with pytest.raises(ValidationReportError, match="not JSON"):
        ValidationReport.read(old)
    with pytest.raises(ValidationReportError, match="cannot read"):
        ValidationReport.read(tmp_path / "missing.json")
    assert issubclass(ValidationReportError, ContractError)


def test_nan_is_neither_written_nor_read() -> None:
    text = _report().to_json().replace('"embedding_cosine_mean": 1.0', '"embedding_cosine_mean": NaN')
    assert "NaN" in text
    with pytest.raises(ValidationReportError, match="embedding_cosine_mean"):
        ValidationReport.from_json(text)


def test_a_report_larger_than_the_bound_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _report().write(tmp_path / "m.validation.json")
    monkeypatch.setattr(vr, "MAX_REPORT_BYTES", path.stat().st_size - 1)
    with pytest.raises(ValidationReportError, match="larger than"):
        ValidationReport.read(path)


def test_a_failed_report_says_why_and_is_refused() -> None:
    report = _report(logits_error=0.05)
    assert not report.passed and report.reason.startswith("logits: max abs error 0.05 > atol 0.0001")
    assert report.inconsistencies() == []
    assert report.refusal(SHA) == f"says the model did not pass validation ({report.reason})"


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        # passed flipped by hand on a report whose numbers fail
        (lambda o: o.update(passed=True, reason="", failures=[]), "its own numbers fail \\(logits: max abs error"),
        # only the flag flipped
        (lambda o: o.update(passed=True), "passed is true but 1 failure"),
        # the failed output's verdict flipped
        (lambda o: (o.update(passed=True, reason="", failures=[]), o["outputs"]["logits"].update(passed=True)),
         "logits: passed is True but min_atol 0.05"),
        # the failed output removed
        (lambda o: (o.update(passed=True, reason="", failures=[]), o["outputs"].pop("logits")), "outputs"),
        # the tolerance loosened in the output but not in the criteria
        (lambda o: (o.update(passed=True, reason="", failures=[]), o["outputs"]["logits"].update(atol=1.0,
                                                                                                 passed=True)),
         "logits: tolerance 1.0"),
    ],
)
def test_a_hand_edited_report_contradicts_itself_and_is_refused(tamper: Any, match: str) -> None:
    obj = json.loads(_report(logits_error=0.05).to_json())
    tamper(obj)
    edited = ValidationReport.from_json(json.dumps(obj))  # still valid JSON of the schema...
    why = edited.refusal(SHA)
    assert why is not None and why.startswith("contradicts itself")  # ...but not trusted
    assert re.search(match, why), why


def test_judge_names_every_failed_criterion() -> None:
    report = _report(logits_error=0.05, agreement=0.8)
    assert [f.split(" ")[0] for f in report.failures] == ["logits:", "argmax"]
    assert report.failures[1] == "argmax agreement 80.00% < 100.00% (2 of 10 spectra differ)"
    ok = _report()
    loose = ok.criteria.model_copy(update={"min_embedding_cosine": 0.999999})
    assert judge(loose, ok.outputs, ok.task) == ["embedding cosine similarity min 0.999990 < 0.999999"]
