"""Open-set ("unknown") detection in RamanNet's L2-normalised embedding space.

Each class gets a centroid (the L2-normalised mean of its training embeddings) and a threshold on the cosine
distance ``1 - e . c``. The thresholds are calibrated on HELD-OUT known spectra (the run's group-aware
validation part) to a target false-unknown rate (``TrainConfig.unknown_rate``, ``--unknown-rate``) by
``spectral_core.openset.calibrate_thresholds``; without held-out spectra they fall back to a quantile of the
class's own training distances (plus a margin), which flags far more than the target on new spectra: training
embeddings sit closer to their centroids than any unseen spectrum does.
At inference a spectrum whose distance to the centroid of its predicted class exceeds that class's threshold is
"unknown". Cosine distances lie in [0, 2]. The decision itself (``cosine_distances``, ``flag_unknown``) is
``spectral_core.openset``, shared with validation and the edge runtime; this module only fits it.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from spectral_core.contract import OpenSet
from spectral_core.errors import DataError
from spectral_core.openset import calibrate_thresholds, cosine_distances, flag_unknown

__all__ = ["cosine_distances", "fit_open_set", "flag_unknown"]

logger = logging.getLogger(__name__)


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(n, 1e-12))


def fit_open_set(
    embeddings: NDArray[np.floating], y: NDArray[np.int64], n_classes: int, *, quantile: float = 0.99,
    margin: float = 0.0, unknown_rate: float | None = None, cal_embeddings: NDArray[np.floating] | None = None,
    cal_predicted: NDArray[np.int64] | None = None, calibration: str = "held-out known spectra",
) -> OpenSet:
    """Centroids from training embeddings; thresholds calibrated on held-out spectra when given.

    Args:
        embeddings: [N, D] L2-normalised embeddings of the training spectra.
        y: [N] class indices.
        n_classes: number of classes (every class must have at least one spectrum).
        quantile: the fraction of a class's own training spectra inside its training-distance threshold (the
            thresholds without calibration spectra; with them, the per-class scale of the pooled rule).
        margin: added to each training-distance threshold (cosine-distance units).
        unknown_rate: the target false-unknown rate on known spectra; None: training-distance thresholds.
        cal_embeddings: [M, D] embeddings of held-out known spectra (never the test spectra).
        cal_predicted: [M] their predicted class indices.
        calibration: what the held-out spectra are, in words (stored in the contract).
    """
    e = _unit(np.asarray(embeddings, dtype=np.float64))
    y = np.asarray(y)
    centroids: list[list[float]] = []
    thresholds: list[float] = []
    for c in range(n_classes):
        members = e[y == c]
        if members.shape[0] == 0:
            raise DataError(f"open-set fit: class {c} has no training embedding")
        cen = _unit(members.mean(axis=0))
        d = 1.0 - members @ cen
        thresholds.append(float(np.quantile(d, quantile)) + margin)
        centroids.append([float(v) for v in cen])
    trained = OpenSet(centroids=centroids, thresholds=thresholds, quantile=quantile)
    if unknown_rate is None:
        return trained
    if cal_embeddings is None or cal_predicted is None or len(cal_predicted) == 0:
        logger.warning(
            "no held-out spectra to calibrate the unknown thresholds on (validation part empty): they are the "
            "%.3g quantile of the training distances and will flag more than %.3g of new known spectra",
            quantile, unknown_rate,
        )
        return trained
    return calibrate_thresholds(trained, cal_embeddings, cal_predicted, unknown_rate=unknown_rate,
                                scales=thresholds, calibration=calibration)
