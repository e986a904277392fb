"""Figures written beside runs and evaluations (matplotlib's Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["plot_confusion", "plot_curves"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Loss and accuracy per epoch (training and validation) as a PNG."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    for key, style in (("loss", "-"), ("val_loss", "--"), ("ce", ":"), ("triplet", "-.")):
        vals = [h.get(key, float("nan")) for h in history]
        if not all(np.isnan(vals)):
            ax_loss.plot(ep, vals, style, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, style in (("acc", "-"), ("val_acc", "--")):
        vals = [h.get(key, float("nan")) for h in history]
        if not all(np.isnan(vals)):
            ax_acc.plot(ep, vals, style, label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend()
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    return p


def plot_confusion(cm: NDArray[np.integer], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG."""
    k = len(classes)
    size = min(4 + 0.35 * k, 16)
    fig = _figure(size, size)
    ax = fig.subplots()
    m = np.asarray(cm, dtype=np.float64)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        top = m.max() if m.size else 0.0
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] > top / 2 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    return p
