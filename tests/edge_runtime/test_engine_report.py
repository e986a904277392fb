"""The engine reads validation reports by their one schema, and exposes every model output for validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _er_model import rewrite_contract

from edge_runtime.engine import Engine
from edge_runtime.errors import ModelRefusedError
from spectral_core.errors import ContractError
from spectral_core.hashing import sha256_file
from spectral_core.validation_report import ValidationReport, report_path


@pytest.fixture
def served(model: Path, tmp_path: Path) -> Path:
    """A copy of the validated tiny model, with a copy of its report beside it."""
    m = tmp_path / "m.onnx"
    shutil.copy(model, m)
    shutil.copy(report_path(model), report_path(m))
    return m


def _rewrite(m: Path, edit: Any) -> None:
    obj = json.loads(report_path(m).read_text())
    edit(obj)
    report_path(m).write_text(json.dumps(obj))


def test_the_report_validate_wrote_is_accepted(served: Path) -> None:
    e = Engine(served, provider="cpu", require_validated=True)
    assert e.validation_report == report_path(served)
    assert e.describe()["validated"] is True
    assert ValidationReport.read(report_path(served)).model_sha256 == e.model_sha256


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # the logits' error raised past the tolerance, the verdict left as it was: the numbers fail
        (lambda o: o["outputs"]["logits"].update(min_atol=0.05), "contradicts itself.*logits: passed is True"),
        # a failure listed under passed: true
        (lambda o: o.update(failures=["argmax agreement 90.00% < 100.00%"]), "contradicts itself"),
        # a report of the same format for another model
        (lambda o: o.update(model_sha256="0" * 64), "validated another model"),
        # the hash spellings the runtime used to guess at, without the format marker
        (lambda o: o.clear() or o.update(passed=True, onnx_sha256="x"), "not a ramanedge validation report"),
        (lambda o: o.update(format_version=2), "format version 2.*newer"),
        (lambda o: o.update(passed=False), "did not pass"),
    ],
)
def test_a_tampered_wrong_model_or_unknown_report_is_refused(served: Path, edit: Any, match: str) -> None:
    sha = sha256_file(served)
    _rewrite(served, edit)
    with pytest.raises(ModelRefusedError, match=match):
        Engine(served, provider="cpu", require_validated=True)
    # without --require-validated the model is served, and /readyz says why it is not validated
    e = Engine(served, provider="cpu")
    assert e.describe()["validated"] is False and e.model_sha256 == sha
    assert e.validation_report is None


def test_a_report_of_another_model_file_is_refused(served: Path, standin_model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    shutil.copy(standin_model, other)
    shutil.copy(report_path(served), report_path(other))  # a genuine passed report, for the tiny model
    with pytest.raises(ModelRefusedError, match="validated another model"):
        Engine(other, provider="cpu", require_validated=True)


def test_infer_raw_gives_every_output_through_the_serving_session(model: Path) -> None:
    e = Engine(model, provider="cpu", max_batch=4)
    x = np.random.default_rng(0).random((10, e.contract.n_points)).astype(np.float32)
    raw = e.infer_raw(x)  # 10 rows in batches of 4
    probs, emb = e.infer(x)
    assert raw.probabilities.shape == (10, len(e.classes)) and raw.logits.shape == (10, len(e.classes))
    assert emb is not None and raw.embedding.shape == emb.shape
    np.testing.assert_allclose(raw.probabilities, probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(raw.embedding, emb, rtol=0, atol=1e-6)
    z = raw.logits - raw.logits.max(axis=1, keepdims=True)
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(raw.probabilities, softmax, rtol=0, atol=1e-5)
    assert raw.probabilities.dtype == raw.logits.dtype == raw.embedding.dtype == np.float32
    with pytest.raises(ContractError, match=r"model input must be \[batch, 300\]"):
        e.infer_raw(x[:, :-1])
    x[3, 5] = np.nan
    with pytest.raises(ContractError, match="NaN"):
        e.infer_raw(x)


def test_infer_raw_refuses_a_model_without_an_output_its_contract_names(standin_model: Path, tmp_path: Path) -> None:
    names = {"probabilities": "probabilities", "logits": "scores", "embedding": "embedding"}
    m = rewrite_contract(standin_model, tmp_path / "no_logits.onnx", {"output_names": names})
    e = Engine(m, provider="cpu")  # serving needs no logits
    with pytest.raises(ContractError, match=r"lacks output.*scores"):
        e.infer_raw(np.ones((1, e.contract.n_points), dtype=np.float32))
