"""Classification metrics of one split and their aggregation across splits (numpy only).

Sensitivity of class c = recall (TP / (TP + FN)); specificity of class c = TN / (TN + FP), one-vs-rest.
Top-k accuracy counts a spectrum as correct when its true class is among the k highest scores; it is
reported only for k < number of classes (for k >= C it is trivially 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TOP_K", "aggregate", "classification_metrics", "confusion_matrix"]

TOP_K = (1, 5, 10)


def confusion_matrix(y_true: NDArray[np.integer], y_pred: NDArray[np.integer], n_classes: int) -> NDArray[np.int64]:
    """Counts [C, C]: rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(
    y_true: NDArray[np.integer], scores: NDArray[np.floating], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class sensitivity/specificity, top-k accuracy and the confusion matrix.

    Args:
        y_true: [N] true class indices.
        scores: [N, C] class scores (logits, probabilities or decision values; higher is more likely).
        classes: the C class names.
    """
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    k = len(classes)
    pred = s.argmax(axis=1)
    cm = confusion_matrix(y, pred, k)
    tp = np.diag(cm).astype(np.float64)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = tp / (tp + fn)
        spec = tn / (tn + fp)
        prec = tp / (tp + fp)
        f1 = np.where(tp > 0, 2 * prec * sens / (prec + sens), 0.0)
    present = (tp + fn) > 0
    out: dict[str, Any] = {
        "n": int(y.size),
        "accuracy": float((pred == y).mean()) if y.size else float("nan"),
        # Macro-F1 over the classes present in this split's test part (absent classes have no defined F1).
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "sensitivity": {c: _num(v) for c, v in zip(classes, sens, strict=True)},
        "specificity": {c: _num(v) for c, v in zip(classes, spec, strict=True)},
        "confusion": cm.tolist(),
    }
    order = np.argsort(-s, axis=1, kind="stable")
    for kk in TOP_K:
        if kk < k or kk == 1:
            hit = (order[:, :kk] == y[:, None]).any(axis=1)
            out[f"top{kk}"] = float(hit.mean()) if y.size else float("nan")
    return out


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def aggregate(per_split: list[dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """Mean and sample standard deviation across splits; per-class numbers too; the summed confusion matrix."""
    out: dict[str, Any] = {"splits": len(per_split)}
    for key in ("accuracy", "group_accuracy", "macro_f1", *(f"top{k}" for k in TOP_K)):
        if all(key in m for m in per_split):
            out[key] = _mean_std([m[key] for m in per_split])
    for key in ("sensitivity", "specificity"):
        out[key] = {c: _mean_std([m[key].get(c) for m in per_split]) for c in classes}
    out["confusion"] = np.sum([np.asarray(m["confusion"]) for m in per_split], axis=0).tolist()
    return out


def group_accuracy(
    y: NDArray[np.int64], scores: NDArray[np.floating], groups: NDArray[np.str_]
) -> tuple[float, int]:
    """Accuracy over groups (samples, patients): each group's prediction is the argmax of its spectra's mean
    softmax of the scores, its label the label its spectra share (the most common one if they differ).

    Returns:
        (accuracy, number of groups).
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s - np.max(np.where(np.isfinite(s), s, -np.inf), axis=1, keepdims=True)
    p = np.where(np.isfinite(s), np.exp(s), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    right = 0
    for g in range(names.size):
        rows = np.flatnonzero(inverse == g)
        label = int(np.bincount(np.asarray(y)[rows]).argmax())
        right += int(int(p[rows].mean(axis=0).argmax()) == label)
    return right / max(1, names.size), int(names.size)
