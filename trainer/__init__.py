"""trainer: RamanNet in PyTorch, training, evaluation protocols, baselines and explanations (workstation side).

The public names are imported lazily (PEP 562), so ``import trainer.cli`` (the ``ramanedge`` parser) does not
import torch; ``from trainer import TrainConfig`` does. The training function is ``trainer.train.train``
(not re-exported: the package attribute ``train`` is the submodule).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.checkpoint import RunInfo, load_run, save_run
    from trainer.model import RamanNet, RamanNetConfig, window_starts
    from trainer.train import EpochStats, RunExistsError, TrainConfig, predict

__all__ = [
    "EpochStats",
    "RamanNet",
    "RamanNetConfig",
    "RunExistsError",
    "RunInfo",
    "TrainConfig",
    "load_run",
    "predict",
    "save_run",
    "window_starts",
]

_WHERE = {
    "RunInfo": "trainer.checkpoint",
    "load_run": "trainer.checkpoint",
    "save_run": "trainer.checkpoint",
    "RamanNet": "trainer.model",
    "RamanNetConfig": "trainer.model",
    "window_starts": "trainer.model",
    "EpochStats": "trainer.train",
    "RunExistsError": "trainer.train",
    "TrainConfig": "trainer.train",
    "predict": "trainer.train",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
