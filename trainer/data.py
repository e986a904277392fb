"""Data checks and splits for training and evaluation (numpy only, no torch).

Every split is a pure function of the labels, the groups and a seed, so the same seed gives the same indices
on any machine, for RamanNet and for the baselines alike.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError
from spectral_core.preprocess import AXIS_TOLERANCE_MIN_CM1, AxisSpec, PreprocessConfig
from spectral_core.spectrum import SpectralDataset

__all__ = [
    "MIN_PER_CLASS",
    "check_labelled",
    "choose_model_axis",
    "holdout_splits",
    "kfold_splits",
    "validation_split",
]

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


def choose_model_axis(
    preprocess: PreprocessConfig, axes: list[NDArray[np.float64]], tolerance: float | None = None
) -> PreprocessConfig:
    """The preprocessing with a model axis that every one of ``axes`` covers with ``tolerance`` to spare.

    A model trained on exactly the measured range refuses the same spectra shifted by a wavenumber; one
    trained on a range ``tolerance`` inside it accepts spectra of any instrument whose range covers that,
    give or take the serving tolerance. The axis chosen is uniform; when the data's axis is uniform it is the
    data's own points inside that range (so the training spectra are not interpolated at all), else as many
    points as the data have there, evenly spaced. An explicit ``target_axis`` is kept as it is.

    Args:
        preprocess: the training preprocessing; its ``crop`` (if any) bounds the range too.
        axes: the source axes (cm^-1) of all the training spectra (training, validation, test sets).
        tolerance: cm^-1 left inside at each end; None: the larger of 2 cm^-1 and one data-axis step; 0:
            no model axis is chosen (the data's own axis, as before this policy).

    Raises:
        DataError: the axes share no range wide enough for a model axis.
    """
    if preprocess.target_axis is not None or not axes or tolerance == 0:
        return preprocess
    lo = max(float(a[0]) for a in axes)
    hi = min(float(a[-1]) for a in axes)
    ref = min(axes, key=lambda a: a.size)
    if tolerance is None:
        inside = ref[(ref >= lo) & (ref <= hi)]
        step = float(np.max(np.diff(inside))) if inside.size > 1 else 0.0
        tolerance = max(AXIS_TOLERANCE_MIN_CM1, step)
    if tolerance < 0:
        raise DataError(f"axis tolerance must be >= 0 cm^-1, got {tolerance}")
    eps = 1e-9 * max(abs(hi), abs(lo), 1.0)
    a0, a1 = lo + tolerance - eps, hi - tolerance + eps
    if preprocess.crop is not None:  # the crop bounds the model axis too (no margin needed inside it)
        a0, a1 = max(a0, preprocess.crop[0] - eps), min(a1, preprocess.crop[1] + eps)
    pts = ref[(ref >= a0) & (ref <= a1)]
    if pts.size < 2:
        raise DataError(
            f"the training spectra share only {lo:g}-{hi:g} cm^-1: too narrow for a model axis with "
            f"{tolerance:g} cm^-1 left inside at each end (set --target-axis or a smaller --axis-tolerance)"
        )
    same = all(a.shape == ref.shape and np.allclose(a, ref, rtol=0, atol=1e-6) for a in axes)
    if same and np.allclose(np.linspace(pts[0], pts[-1], pts.size), pts, rtol=0, atol=1e-6):
        spec = AxisSpec(start=float(pts[0]), stop=float(pts[-1]), points=int(pts.size))
    else:
        spec = AxisSpec(start=a0 + eps, stop=a1 - eps, points=int(pts.size))
    logger.info(
        "model axis %g-%g cm^-1, %d points: inside the %g-%g cm^-1 all training spectra cover, %g cm^-1 to "
        "spare at each end", spec.start, spec.stop, spec.points, lo, hi, tolerance,
    )
    return preprocess.model_copy(update={"target_axis": spec})


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
    # sklearn refuses more folds than the largest class has members: small data get a larger validation share
    k = min(max(2, round(1.0 / fraction)), n_groups, int(np.bincount(y).max()))
    if k < 2:
        raise DataError(f"group-aware validation needs at least 2 groups, got {n_groups}")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
    t, v = next(iter(sgkf.split(np.zeros(y.size), y, groups)))
    logger.debug("group-aware validation split: %d groups, %d folds, %d validation spectra", n_groups, k, v.size)
    return np.sort(t).astype(np.int64), np.sort(v).astype(np.int64)



def _as_list(a: NDArray[np.integer]) -> list[int]:
    return [int(i) for i in np.sort(np.asarray(a))]


def _with_validation(
    name: str, train: NDArray[np.integer], test: NDArray[np.integer], *, y: NDArray[np.int64],
    groups: NDArray[np.str_] | None, val_fraction: float, seed: int,
) -> dict[str, Any]:
    """A split record: the training part is divided again into train and validation (same rule as train())."""
    tr = np.sort(np.asarray(train, dtype=np.int64))
    if val_fraction > 0:
        t, v = validation_split(y[tr], None if groups is None else groups[tr], val_fraction, seed)
        return {"name": name, "train": _as_list(tr[t]), "val": _as_list(tr[v]), "test": _as_list(test)}
    return {"name": name, "train": _as_list(tr), "val": [], "test": _as_list(test)}


def kfold_splits(
    y: NDArray[np.int64], groups: NDArray[np.str_] | None, *, folds: int, val_fraction: float, seed: int
) -> list[dict[str, Any]]:
    """Stratified k-fold (stratified group k-fold when ``groups``); each fold's training part keeps a validation part.

    Raises:
        DataError: fewer spectra (or groups) than folds, or a class with fewer members than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    if folds < 2:
        raise DataError(f"k-fold needs at least 2 folds, got {folds}")
    if y.size < folds:
        raise DataError(f"too few spectra ({y.size}) for {folds} folds")
    counts = np.bincount(y)
    small = [int(c) for c in np.flatnonzero((counts > 0) & (counts < folds))]
    if small:
        raise DataError(
            f"class index(es) {small} have fewer members ({[int(counts[c]) for c in small]}) than folds ({folds}); "
            "use fewer folds or drop those classes with --classes"
        )
    if groups is not None:
        n_groups = np.unique(groups).size
        if n_groups < folds:
            raise DataError(f"too few groups ({n_groups}) for {folds} group-aware folds")
        it = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32)).split(
            np.zeros(y.size), y, groups
        )
    else:
        it = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % (2**32)).split(np.zeros(y.size), y)
    return [
        _with_validation(f"fold{i + 1}", tr, te, y=y, groups=groups, val_fraction=val_fraction, seed=seed + i)
        for i, (tr, te) in enumerate(it)
    ]


def holdout_splits(
    y: NDArray[np.int64], groups: NDArray[np.str_] | None, *, repeats: int, test_fraction: float,
    val_fraction: float, seed: int,
) -> list[dict[str, Any]]:
    """Repeated random stratified hold-out (group-wise when ``groups``), e.g. 50 x 70/30 with 10% validation.

    Raises:
        DataError: a class too small to appear in both the training and the test part.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    y = np.asarray(y, dtype=np.int64)
    if repeats < 1:
        raise DataError(f"hold-out needs at least 1 repeat, got {repeats}")
    if not 0 < test_fraction < 1:
        raise DataError(f"test fraction must lie in (0, 1), got {test_fraction}")
    counts = np.bincount(y)
    small = [int(c) for c in np.flatnonzero((counts > 0) & (counts < 2))]
    if small:
        raise DataError(f"class index(es) {small} have a single spectrum: it cannot be in training and test")
    rs = seed % (2**32)
    if groups is not None:
        it = GroupShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=rs).split(
            np.zeros(y.size), y, groups
        )
    else:
        try:
            it = StratifiedShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=rs).split(
                np.zeros(y.size), y
            )
            it = iter(list(it))
        except ValueError as exc:
            raise DataError(f"cannot make stratified {1 - test_fraction:.0%}/{test_fraction:.0%} splits: {exc}") from None
    return [
        _with_validation(
            f"repeat{i + 1}", tr, te, y=y, groups=groups, val_fraction=val_fraction, seed=seed + i
        )
        for i, (tr, te) in enumerate(it)
    ]
