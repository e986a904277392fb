"""A run's data for offline analysis (explain, embed): spectra preprocessed onto a run's model axis.

Shared by ``ramanedge explain`` and ``ramanedge embed``; nothing here imports torch at module level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError, MissingExtraError, PreprocessError

if TYPE_CHECKING:
    from spectral_core.spectrum import SpectralDataset
    from trainer.checkpoint import RunInfo

__all__ = ["RunData", "draw_background", "load_for_run", "require_train_extra", "stratified_pick"]

logger = logging.getLogger(__name__)

Int = NDArray[np.int64]


def require_train_extra(feature: str, modules: tuple[str, ...] = ("torch", "shap", "matplotlib", "sklearn")) -> None:
    """Import the heavy dependencies of ``feature`` or raise :class:`MissingExtraError` naming ``[train]``."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingExtraError(feature, "train", name) from None


@dataclass(frozen=True)
class RunData:
    """Spectra of a file preprocessed onto a run's model axis.

    Attributes:
        X: float32 (n, L) preprocessed spectra, only the usable rows.
        y: int64 labels in the run's class order, or None when the file is unlabelled.
        rows: index of each kept row in the file.
        skipped: file row -> reason, for rows that could not be preprocessed.
        fingerprint: SHA-256 of the file's data (as the trainer records it).
        source: the file.
    """

    X: NDArray[np.float32]
    y: Int | None
    rows: Int
    skipped: dict[int, str]
    fingerprint: str
    source: str


def _remap_classes(ds: SpectralDataset, info: RunInfo, source: str) -> Int | None:
    """Labels of ``ds`` in the run's class order. The data may hold a subset of the run's classes, in any
    order; a class the run does not know is an error (ModelContract-style check, by name)."""
    from spectral_core.contract import ModelContract

    if ds.y is None:
        return None
    if list(ds.classes) == list(info.classes):
        return ds.y
    unknown = [c for c in ds.classes if c not in info.classes]
    if unknown:
        contract = ModelContract(
            classes=info.classes, axis=info.axis, preprocess=info.preprocess, preprocess_hash=info.preprocess.hash()
        )
        contract.check_classes_match(list(ds.classes), what=source)  # raises ContractError naming both lists
    lookup = np.array([info.classes.index(c) for c in ds.classes], dtype=np.int64)
    logger.info("%s: classes %s mapped onto the run's order %s", source, list(ds.classes), info.classes)
    return lookup[ds.y]


def load_for_run(path: str | Path | SpectralDataset, info: RunInfo, *, require_labels: bool = True) -> RunData:
    """Read ``path`` (or take a dataset already read with the CLI's reading options), preprocess it with the
    run's own preprocessing and check it fits the run.

    Raises:
        ContractError: the spectra do not land on the run's axis after preprocessing, or carry classes the
            run does not know.
        PreprocessError: the run's preprocessing cannot be applied (e.g. the measured range is too short).
        DataError: unlabelled data where labels are needed, or no usable spectrum left.
    """
    from spectral_core.contract import ModelContract
    from spectral_core.io import read_dataset
    from spectral_core.preprocess import Preprocessor
    from spectral_core.spectrum import SpectralDataset

    if isinstance(path, SpectralDataset):
        ds, source = path, str(path.provenance.get("source", "<dataset>"))
    else:
        ds, source = read_dataset(path), str(path)
    contract = ModelContract(
        classes=info.classes, axis=info.axis, preprocess=info.preprocess, preprocess_hash=info.preprocess.hash()
    )
    pre = Preprocessor(info.preprocess)
    try:
        out_axis = pre.output_axis(ds.axis)
    except PreprocessError as exc:
        raise PreprocessError(f"{source}: {exc}") from None
    contract.check_axis_matches(out_axis, what=f"{source} (after the run's preprocessing)")
    if ds.y is None and require_labels:
        raise DataError(f"{source} is unlabelled; this needs class labels (y)")
    y = _remap_classes(ds, info, source)
    X, bad = pre.transform_rows(ds.X, ds.axis)
    for i, reason in sorted(bad.items()):
        logger.warning("%s: spectrum %d skipped: %s", source, i, reason)
    keep = np.setdiff1d(np.arange(ds.n_spectra), np.fromiter(bad, dtype=np.int64, count=len(bad)))
    if keep.size == 0:
        raise DataError(f"{source}: none of its {ds.n_spectra} spectra can be preprocessed")
    return RunData(
        X=np.ascontiguousarray(X[keep]),
        y=None if y is None else y[keep],
        rows=keep.astype(np.int64),
        skipped=bad,
        fingerprint=ds.fingerprint(),
        source=source,
    )


def stratified_pick(n: int, y: Int | None, k: int, seed: int) -> Int:
    """``k`` distinct indices out of ``n``, spread over the classes in proportion (sorted)."""
    if k > n:
        raise DataError(f"cannot pick {k} spectra out of {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4099]))
    if y is None or k == n:
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    # Largest-remainder quotas so every class is represented in proportion.
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * k / n
    take = np.floor(quota).astype(np.int64)
    for j in np.argsort(-(quota - take))[: k - int(take.sum())]:
        take[j] += 1
    picked = [rng.choice(np.flatnonzero(y == c), size=int(t), replace=False) for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def draw_background(data: RunData, size: int, seed: int = 0) -> NDArray[np.float32]:
    """The SHAP background set: ``size`` spectra of the training data, stratified by class.

    Raises:
        DataError: ``size`` is below 1 or larger than the data.
    """
    n = data.X.shape[0]
    if size < 1:
        raise DataError(f"the background set needs at least 1 spectrum, got {size}")
    if size > n:
        raise DataError(
            f"a background set of {size} spectra was asked for, but {data.source} holds only {n} usable "
            f"spectra; pass --background {n} or fewer"
        )
    return data.X[stratified_pick(n, data.y, size, seed)]
