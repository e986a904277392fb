"""The open-set ("unknown") decision, numpy only: one implementation for validation and for the edge runtime.

A model's contract carries, per class, a centroid in the L2-normalised embedding space and a threshold on the
cosine distance ``1 - e . c``. A spectrum whose distance to the centroid of its *predicted* class exceeds that
class's threshold is "unknown". Cosine distances lie in [0, 2]. The centroids and thresholds are fitted by the
trainer (``trainer.openset.fit_open_set``) with the same definition.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectral_core.contract import OpenSet
from spectral_core.errors import DataError

__all__ = ["cosine_distances", "flag_unknown"]

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
    d = cosine_distances(embeddings, open_set)
    pred = np.asarray(predicted, dtype=np.int64)
    if pred.shape != (d.shape[0],):
        raise DataError(f"predicted has shape {pred.shape}, expected ({d.shape[0]},)")
    if pred.size and (pred.min() < 0 or pred.max() >= d.shape[1]):
        raise DataError(f"predicted class indices {int(pred.min())}..{int(pred.max())} outside 0..{d.shape[1] - 1}")
    own = d[np.arange(pred.size), pred]
    thr = np.asarray(open_set.thresholds, dtype=np.float64)[pred]
    return np.asarray(own > thr)
