"""``.npy`` spectra: Bacteria-ID pairs (``X_<name>.npy`` + ``y_<name>.npy``) and a generic spectra matrix
with labels in another file (e.g. RRUFF/RaMin ``obs.npy`` + one-hot ``array_labels.npy``).

``.npy`` files carry no axis, so ``axis=`` (``"START:STOP:POINTS"``, a .npy file or an array) is required.
Pickled (object) arrays are refused: loading them could run code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._common import (
    bad_spectra_policy,
    classes_and_indices,
    make_dataset,
    parse_axis_option,
    parse_labels_option,
)
from spectral_core.spectrum import SpectralDataset

__all__ = ["load_npy", "read_npy"]

logger = logging.getLogger(__name__)

_PAIR = re.compile(r"^X_(.+)\.npy$", re.IGNORECASE)


def load_npy(path: Path, what: str = "array") -> NDArray[Any]:
    """``np.load`` without pickles, errors as :class:`ReaderError`."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ReaderError(path, f"{what} is a pickled object array; refusing to unpickle it") from None
        raise ReaderError(path, f"not a readable .npy file ({str(exc)[:200]})") from None
    except (OSError, EOFError) as exc:
        raise ReaderError(path, f"not a readable .npy file ({str(exc)[:200]})") from None
    if not isinstance(arr, np.ndarray):
        raise ReaderError(path, "not a .npy array (an .npz archive? use the .npz reader)")
    return arr


def _pair_labels(path: Path) -> Path | None:
    m = _PAIR.match(path.name)
    if not m:
        return None
    cand = path.with_name(f"y_{m.group(1)}.npy")
    return cand if cand.exists() else None


def read_npy(
    path: str | Path,
    *,
    axis: Any = None,
    labels: Any = None,
    class_names: Any = None,
) -> SpectralDataset:
    """Read a spectra matrix (spectra x points, or one 1-D spectrum) from a ``.npy`` file.

    Args:
        axis: required, the wavenumbers in cm^-1 (``"START:STOP:POINTS"``, .npy/.txt file or array). A matrix
            stored points x spectra (its first dimension matching the axis) is transposed.
        labels: .npy/.json/.txt file or array of class indices, one-hot rows or names. For ``X_<name>.npy``
            the sibling ``y_<name>.npy`` (Bacteria-ID layout) is used when no labels are given.
        class_names: names for class indices 0..k-1 (list, ``"a,b,c"`` or a .json/.txt file); default "0".."k-1".

    Raises:
        ReaderError: no axis, non-numeric/pickled data, NaN/inf, shape or label count mismatch.
    """
    p = Path(path)
    if re.match(r"^y_.+\.npy$", p.name, re.IGNORECASE) and p.with_name("X_" + p.name[2:]).exists():
        raise ReaderError(p, f"this is the label file of a Bacteria-ID pair; read {p.with_name('X_' + p.name[2:])}")
    X = load_npy(p, "spectra")
    if X.dtype.kind not in "fiu":
        raise ReaderError(p, f"spectra have non-numeric dtype {X.dtype}")
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise ReaderError(p, f"spectra must be 2-D (spectra x points), got shape {X.shape}")
    if X.size == 0:
        raise ReaderError(p, f"empty array of shape {X.shape}")
    if axis is None:
        raise ReaderError(
            p, f".npy holds no axis: give it with axis=START:STOP:POINTS (cm^-1) or an axis .npy ({X.shape[1]} points?)"
        )
    ax = parse_axis_option(axis, p)
    provenance: dict[str, Any] = {"source": str(p), "reader": "npy"}
    if X.shape[1] != ax.size and X.shape[0] == ax.size:
        X = X.T
        provenance["transposed"] = True
    if X.shape[1] != ax.size:
        raise ReaderError(p, f"spectra have {X.shape[1]} points but the axis has {ax.size}")
    bad = ~np.isfinite(X)
    if bad.any() and bad_spectra_policy() is None:  # else the bad spectra are named (or left out) one by one
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise ReaderError(p, f"{int(bad.sum())} NaN/inf value(s), first in spectrum {r} at point {c}")
    y = None
    classes: tuple[str, ...] = ()
    pair = _pair_labels(p) if labels is None else None
    if labels is not None:
        y, classes = parse_labels_option(labels, X.shape[0], p, class_names)
        provenance["labels"] = labels if isinstance(labels, (str, Path)) else "array"
    elif pair is not None:
        y, classes = classes_and_indices(load_npy(pair, "labels"), X.shape[0], pair, class_names)
        provenance["labels"] = str(pair)
        provenance["layout"] = "bacteria-id pair"
    if ax[0] > ax[-1]:
        ax, X = ax[::-1].copy(), X[:, ::-1]
    provenance["labels"] = str(provenance.get("labels", ""))
    return make_dataset(p, X=X, axis=ax, y=y, classes=classes, provenance=provenance)
