"""The benches' model: RamanNet at a given size with random weights and an open set, saved as a training run.

Inference speed does not depend on what the weights learned, so the benches skip training; the open set (random
unit centroids) makes the exported graph and the runtime do the same work as for a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def random_run(
    workdir: Path, points: int, classes: int, *, spread_batch_norm: bool = False
) -> tuple[Any, Path, NDArray[np.float64]]:
    """Save a random RamanNet run under ``workdir/run``; returns ``(model, run dir, model axis)``.

    Args:
        points: model input length (the axis is 400-1800 cm^-1).
        classes: number of classes (``c0``, ``c1``, ...).
        spread_batch_norm: give the batch norms non-trivial running statistics (for precision comparisons,
            where identity batch norms would hide rounding).
    """
    import torch

    from spectral_core.contract import OpenSet
    from spectral_core.preprocess import PreprocessConfig
    from trainer.checkpoint import RunInfo, save_run
    from trainer.model import RamanNet, RamanNetConfig

    torch.manual_seed(0)
    cfg = RamanNetConfig(input_length=points, n_classes=classes)
    model = RamanNet(cfg).eval()
    if spread_batch_norm:
        with torch.no_grad():
            for bn in (model.window_bn, model.bn2, model.bn3):
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
    axis = np.linspace(400.0, 1800.0, points)
    rng = np.random.default_rng(0)
    cen = rng.normal(size=(classes, cfg.embedding_dim))
    cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    info = RunInfo(
        model=cfg, preprocess=PreprocessConfig(normalise="minmax"), classes=[f"c{i}" for i in range(classes)],
        axis=axis.tolist(), open_set=OpenSet(centroids=cen.tolist(), thresholds=[0.5] * classes),
    )
    run = workdir / "run"
    save_run(run, model, info)
    return model, run, axis
