"""The open-set ("unknown") decision, numpy only: one implementation for validation and for the edge runtime.

A model's contract carries, per class, a centroid in the L2-normalised embedding space and a threshold on the
cosine distance ``1 - e . c``. A spectrum whose distance to the centroid of its *predicted* class exceeds that
class's threshold is "unknown". Cosine distances lie in [0, 2]. The centroids are fitted by the trainer
(``trainer.openset.fit_open_set``); the thresholds are calibrated here (:func:`calibrate_thresholds`), on
held-out known spectra, by the trainer and by ``ramanedge calibrate-unknown`` (new instrument, no retraining).

Calibration. The target is a false-unknown rate ``a`` on known spectra (spectra of a trained class flagged
unknown). Each held-out spectrum's score is its distance to the centroid of its *predicted* class (the
quantity the runtime thresholds). Two rules:

- ``class``: a class with at least :func:`min_class_spectra` calibration spectra gets the conformal
  ``(1 - a)`` quantile of its own scores (rank ``ceil((n + 1)(1 - a))`` of ``n``), which keeps a new
  spectrum of that class inside with probability at least ``1 - a`` when calibration and use are exchangeable;
- ``pooled``: a class with fewer (the usual case: a validation part of a small data set holds a handful per
  class) gets ``f * scale[c]``: ``scale[c]`` is its training-distance quantile (its spread, well estimated from
  the many training spectra) and ``f`` the conformal ``(1 - a)`` quantile of ``score / scale[predicted]``
  pooled over every calibration spectrum. Held-out spectra lie farther out than training ones by a similar
  factor in every class; the factor is what a small calibration set can estimate, one quantile per class is not.
  With fewer than ``1/a`` classes' worth, one class's own ``(1 - a)`` quantile would be its single largest
  distance, decided by one spectrum.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectral_core.contract import OpenSet
from spectral_core.errors import DataError

__all__ = ["calibrate_thresholds", "cosine_distances", "flag_unknown", "min_class_spectra", "own_distances",
           "unknown_scores"]

logger = logging.getLogger(__name__)

_EPS = 1e-12  # as torch.nn.functional.normalize: a zero vector stays zero instead of dividing by zero


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(n, _EPS))


def cosine_distances(embeddings: ArrayLike, open_set: OpenSet) -> NDArray[np.float64]:
    """Cosine distance ``1 - e . c`` of each embedding to each class centroid.

    Args:
        embeddings: [N, D] embeddings (re-normalised here, so fp16/int8 models' slightly off-norm outputs count
            the same as fp32 ones).
        open_set: centroids [C, D] and thresholds [C].

    Returns:
        [N, C] distances in [0, 2].
    """
    e = np.asarray(embeddings, dtype=np.float64)
    cen = np.asarray(open_set.centroids, dtype=np.float64)
    if e.ndim != 2 or cen.ndim != 2 or e.shape[1] != cen.shape[1]:
        raise DataError(f"embeddings of shape {e.shape} do not match centroids of shape {cen.shape}")
    return np.asarray(1.0 - _unit(e) @ _unit(cen).T)


def flag_unknown(embeddings: ArrayLike, predicted: ArrayLike, open_set: OpenSet) -> NDArray[np.bool_]:
    """True where a spectrum lies beyond the threshold of its predicted class.

    Args:
        embeddings: [N, D] embeddings.
        predicted: [N] predicted class indices (argmax of the probabilities).
        open_set: the contract's centroids and thresholds.
    """
    return unknown_scores(embeddings, predicted, open_set)[0]


def unknown_scores(
    embeddings: ArrayLike, predicted: ArrayLike, open_set: OpenSet
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """:func:`flag_unknown` and the distance it compared (to the predicted class's centroid), from one
    distance computation: ``(unknown [N], distance [N])``."""
    own = own_distances(embeddings, predicted, open_set)
    thr = np.asarray(open_set.thresholds, dtype=np.float64)[np.asarray(predicted, dtype=np.int64)]
    return np.asarray(own > thr), own


def own_distances(embeddings: ArrayLike, predicted: ArrayLike, open_set: OpenSet) -> NDArray[np.float64]:
    """Cosine distance of each embedding to the centroid of its predicted class (the score thresholded).

    Args:
        embeddings: [N, D] embeddings.
        predicted: [N] predicted class indices.
        open_set: the centroids.

    Returns:
        [N] distances in [0, 2].
    """
    d = cosine_distances(embeddings, open_set)
    pred = np.asarray(predicted, dtype=np.int64)
    if pred.shape != (d.shape[0],):
        raise DataError(f"predicted has shape {pred.shape}, expected ({d.shape[0]},)")
    if pred.size and (pred.min() < 0 or pred.max() >= d.shape[1]):
        raise DataError(f"predicted class indices {int(pred.min())}..{int(pred.max())} outside 0..{d.shape[1] - 1}")
    return np.asarray(d[np.arange(pred.size), pred])


def min_class_spectra(unknown_rate: float) -> int:
    """The fewest calibration spectra a class needs for its own threshold: ``max(20, ceil(1 / rate))``.

    Below ``1 / rate`` its conformal ``(1 - rate)`` quantile is its largest distance (one spectrum decides);
    20 keeps a looser target from resting on a handful.
    """
    return max(20, math.ceil(1.0 / unknown_rate - 1e-9))


def _conformal_quantile(v: NDArray[np.float64], rate: float) -> float:
    """The ``ceil((n + 1)(1 - rate))``-th smallest of ``v`` (its largest when that rank exceeds ``n``)."""
    s = np.sort(v)
    k = math.ceil((s.size + 1) * (1.0 - rate) - 1e-9)
    return float(s[min(max(k, 1), s.size) - 1])


def calibrate_thresholds(
    open_set: OpenSet,
    embeddings: ArrayLike,
    predicted: ArrayLike,
    *,
    unknown_rate: float,
    scales: Sequence[float] | None = None,
    calibration: str,
    calibration_sha256: str | None = None,
) -> OpenSet:
    """Per-class thresholds fitted on held-out known spectra to a target false-unknown rate.

    Args:
        open_set: the centroids (its thresholds are replaced).
        embeddings: [N, D] embeddings of held-out spectra of the known classes (never the test spectra).
        predicted: [N] their predicted class indices.
        unknown_rate: the target share of known spectra flagged unknown, in (0, 1).
        scales: [C] per-class distance scales for the pooled rule, cosine-distance units (default: the
            open set's ``scales``, else its thresholds: a training-distance quantile in older contracts).
        calibration: what the spectra were, in words (stored in the contract).
        calibration_sha256: fingerprint of the spectra (stored in the contract).

    Returns:
        A new :class:`OpenSet` with the thresholds and how they were fitted.

    Raises:
        DataError: no calibration spectra, a rate outside (0, 1), scales of the wrong length or not finite.
    """
    if not 0.0 < unknown_rate < 1.0:
        raise DataError(f"the target unknown rate must lie in (0, 1), got {unknown_rate}")
    k = len(open_set.centroids)
    pred = np.asarray(predicted, dtype=np.int64)
    d = own_distances(embeddings, pred, open_set)
    if d.size == 0:
        raise DataError("open-set calibration needs at least one held-out known spectrum")
    base = np.asarray(scales if scales is not None else (open_set.scales or open_set.thresholds), dtype=np.float64)
    if base.shape != (k,) or not np.isfinite(base).all() or (base < 0).any():
        raise DataError(f"open-set calibration: scales must be {k} finite non-negative values, got {base.tolist()}")
    # A class whose training spectra collapsed onto its centroid has a scale near 0, and any factor times 0 flags
    # all its new spectra: its scale is kept at least a tenth of the typical class's.
    floor = max(0.1 * float(np.median(base)), 1e-6)
    base = np.maximum(base, floor)
    counts = np.bincount(pred, minlength=k)
    n_min = min_class_spectra(unknown_rate)
    factor = _conformal_quantile(d / base[pred], unknown_rate)
    thresholds: list[float] = []
    rules: list[str] = []
    for c in range(k):
        if counts[c] >= n_min:
            thresholds.append(_conformal_quantile(d[pred == c], unknown_rate))
            rules.append("class")
        else:
            thresholds.append(float(factor * base[c]))
            rules.append("pooled")
    if d.size < n_min:
        logger.warning(
            "open-set calibration on %d spectra only (fewer than %d): the thresholds rest on the largest distances",
            d.size, n_min,
        )
    logger.info("open-set thresholds for a %.3g false-unknown rate from %d spectra (pooled factor %.3g, %d of %d "
                "classes on their own quantile)", unknown_rate, d.size, factor, rules.count("class"), k)
    return open_set.model_copy(update={
        "thresholds": thresholds,
        "quantile": 1.0 - unknown_rate,
        "target_unknown_rate": unknown_rate,
        "calibration_spectra": int(d.size),
        "calibration_counts": [int(v) for v in counts],
        "threshold_rules": rules,
        "scales": [float(v) for v in base],
        "calibration": calibration,
        "calibration_sha256": calibration_sha256,
    })
