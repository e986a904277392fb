"""Data checks and splits for training and evaluation (numpy only, no torch).

Every split is a pure function of the labels, the groups and a seed, so the same seed gives the same indices
on any machine, for RamanNet and for the baselines alike.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError
from spectral_core.spectrum import SpectralDataset

__all__ = ["MIN_PER_CLASS", "check_labelled", "validation_split"]

logger = logging.getLogger(__name__)

# Triplet mining needs two spectra of a class in the training part (an anchor and a positive).
MIN_PER_CLASS = 2

IntArray = NDArray[np.int64]


def check_labelled(ds: SpectralDataset, *, min_per_class: int = MIN_PER_CLASS, what: str = "training data") -> None:
    """Raise :class:`DataError` unless ``ds`` can be trained on: labelled, >= 2 classes, each with enough spectra.

    Args:
        min_per_class: the fewest spectra any class may have.
    """
    if ds.y is None:
        raise DataError(f"{what} is unlabelled: training needs class labels (y)")
    counts = ds.class_counts()
    present = [c for c, n in counts.items() if n > 0]
    if len(present) < 2:
        only = present[0] if present else "none"
        raise DataError(f"{what} holds one class only ({only}); a classifier needs at least 2")
    if ds.n_spectra < 2 * min_per_class:
        raise DataError(f"{what}: too few spectra ({ds.n_spectra}); at least {2 * min_per_class} are needed")
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DataError(
            f"{what}: class(es) {empty} have no spectra; keep only the present classes "
            f"(e.g. --classes {','.join(present)})"
        )
    small = {c: n for c, n in counts.items() if n < min_per_class}
    if small:
        raise DataError(
            f"{what}: class(es) {small} have fewer than {min_per_class} spectra "
            f"(needed for a validation split and for triplet positives)"
        )


def validation_split(
    y: NDArray[np.int64], groups: NDArray[np.str_] | None, fraction: float, seed: int
) -> tuple[IntArray, IntArray]:
    """Split indices into (train, validation), stratified by class and group-aware when ``groups`` is given.

    Without groups, each class gives ``round(fraction * n_c)`` spectra to validation, at least 1 when the
    class has 3 or more, and always leaves at least 2 in training (triplet positives). With groups, whole
    groups go to validation (``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds, first fold) so no
    patient or sample is on both sides.

    Returns:
        Sorted int64 index arrays. Validation is empty when ``fraction`` is 0.
    """
    y = np.asarray(y, dtype=np.int64)
    n = y.size
    if fraction <= 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not fraction < 1:
        raise DataError(f"validation fraction must be below 1, got {fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31337]))
    if groups is not None and np.unique(groups).size > 1:
        return _group_split(y, np.asarray(groups).astype(str), fraction, seed)
    val: list[NDArray[np.int64]] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = round(fraction * members.size)
        if members.size >= 3:
            k = max(k, 1)
        k = min(k, members.size - MIN_PER_CLASS)
        if k > 0:
            val.append(rng.permutation(members)[:k])
    v = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    t = np.setdiff1d(np.arange(n), v)
    if v.size == 0:
        raise DataError(f"a validation fraction of {fraction} leaves no validation spectra out of {n}")
    return t.astype(np.int64), v.astype(np.int64)


def _group_split(
    y: NDArray[np.int64], groups: NDArray[np.str_], fraction: float, seed: int
) -> tuple[IntArray, IntArray]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = np.unique(groups).size
    k = min(max(2, round(1.0 / fraction)), n_groups)
    if k < 2:
        raise DataError(f"group-aware validation needs at least 2 groups, got {n_groups}")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
    t, v = next(iter(sgkf.split(np.zeros(y.size), y, groups)))
    logger.debug("group-aware validation split: %d groups, %d folds, %d validation spectra", n_groups, k, v.size)
    return np.sort(t).astype(np.int64), np.sort(v).astype(np.int64)
