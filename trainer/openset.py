"""Open-set ("unknown") detection in RamanNet's L2-normalised embedding space.

Each class gets a centroid (the L2-normalised mean of its training embeddings) and a threshold on the cosine
distance ``1 - e . c`` (a quantile of its own training spectra's distances, plus a margin). At inference a
spectrum whose distance to the centroid of its predicted class exceeds that class's threshold is "unknown".
Cosine distances lie in [0, 2]. The decision itself (``cosine_distances``, ``flag_unknown``) is
``spectral_core.openset``, shared with validation and the edge runtime; this module only fits it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spectral_core.contract import OpenSet
from spectral_core.errors import DataError
from spectral_core.openset import cosine_distances, flag_unknown

__all__ = ["cosine_distances", "fit_open_set", "flag_unknown"]


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.maximum(n, 1e-12))


def fit_open_set(
    embeddings: NDArray[np.floating], y: NDArray[np.int64], n_classes: int, *, quantile: float = 0.99,
    margin: float = 0.0,
) -> OpenSet:
    """Centroids and per-class cosine-distance thresholds from training embeddings.

    Args:
        embeddings: [N, D] L2-normalised embeddings of the training spectra.
        y: [N] class indices.
        n_classes: number of classes (every class must have at least one spectrum).
        quantile: the fraction of a class's own training spectra that must fall inside its threshold.
        margin: added to each threshold (cosine-distance units), slack for spectra unseen in training.
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
    return OpenSet(centroids=centroids, thresholds=thresholds, quantile=quantile)
