"""export: a trained run -> one ONNX file carrying its model contract, and proof that it answers as PyTorch.

The heavy modules (torch, onnx, onnxruntime) load on first use of a name, so ``import export`` (and the
``ramanedge`` CLI listing its commands) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_CRITERIA",
    "PINNED_OPSET",
    "PRECISIONS",
    "Criteria",
    "ExportError",
    "OutputTolerance",
    "ValidationReport",
    "export_run",
    "format_report",
    "report_path",
    "validate_model",
]

_WHERE = {
    "PINNED_OPSET": "export.onnx_export",
    "PRECISIONS": "export.onnx_export",
    "ExportError": "export.onnx_export",
    "export_run": "export.onnx_export",
    "DEFAULT_CRITERIA": "export.validate",
    "Criteria": "export.validate",
    "OutputTolerance": "export.validate",
    "ValidationReport": "export.validate",
    "format_report": "export.validate",
    "report_path": "export.validate",
    "validate_model": "export.validate",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
