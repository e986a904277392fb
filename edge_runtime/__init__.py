"""edge_runtime: the daemon beside the instrument. onnxruntime, numpy and the standard library only.

Never imports torch, onnx or shap. Names are resolved lazily so that ``ramanedge --help`` does not load
onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_runtime.daemon import Daemon
    from edge_runtime.engine import Engine
    from edge_runtime.errors import ModelRefusedError, ProviderError, SelfTestError, SettingsError
    from edge_runtime.ledger import Ledger
    from edge_runtime.records import Frame, Outcome
    from edge_runtime.settings import ServeSettings

__all__ = [
    "Daemon",
    "Engine",
    "Frame",
    "Ledger",
    "ModelRefusedError",
    "Outcome",
    "ProviderError",
    "SelfTestError",
    "ServeSettings",
    "SettingsError",
]

_WHERE = {
    "Daemon": "edge_runtime.daemon",
    "Engine": "edge_runtime.engine",
    "Frame": "edge_runtime.records",
    "Outcome": "edge_runtime.records",
    "Ledger": "edge_runtime.ledger",
    "ServeSettings": "edge_runtime.settings",
    "ModelRefusedError": "edge_runtime.errors",
    "ProviderError": "edge_runtime.errors",
    "SelfTestError": "edge_runtime.errors",
    "SettingsError": "edge_runtime.errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
