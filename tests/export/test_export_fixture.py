"""The tiny_onnx session fixture other packages' tests use."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort

from export.validate import report_path
from spectral_core.contract import ModelContract
from spectral_core.hashing import sha256_file


def test_tiny_onnx_has_contract_and_passed_report(tiny_onnx: Path) -> None:
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map)
    assert contract.precision == "fp32" and contract.in_graph_steps == ["normalise"]
    report = json.loads(report_path(tiny_onnx).read_text())
    assert report["passed"] is True
    assert report["model_sha256"] == sha256_file(tiny_onnx)
    # readable by a runtime running as another user (temporary files are created 0600)
    assert tiny_onnx.stat().st_mode & 0o044 == 0o044
    assert report_path(tiny_onnx).stat().st_mode & 0o044 == 0o044
