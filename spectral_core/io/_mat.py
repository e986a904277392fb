"""MATLAB ``.mat`` files: v7.3 (HDF5, read with h5py from the ``[hdf5]`` extra) and v4-v7 (scipy.io.loadmat).

Variables are found by name (``X``; ``Y``/``y``/``labels``; ``wave_number``/``wavenumber``/``axis``) or given
with ``x_var=``, ``y_var=``, ``axis_var=``. Orientation is decided by the axis length: MATLAB stores arrays
column-major, so a v7.3 file shows them transposed, and authors store spectra as rows or as columns; the
dimension that matches the axis is the points dimension.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import MissingExtraError, ReaderError
from spectral_core.io._common import (
    bad_spectra_policy,
    classes_and_indices,
    make_dataset,
    parse_axis_option,
    quote,
    quote_list,
)
from spectral_core.spectrum import SpectralDataset

__all__ = ["is_mat", "read_mat"]

logger = logging.getLogger(__name__)

X_NAMES = ("X", "x", "spectra", "data", "Spectra")
Y_NAMES = ("Y", "y", "labels", "label", "classes_idx")
AXIS_NAMES = ("wave_number", "wavenumber", "wavenumbers", "wave_numbers", "axis", "wn", "raman_shift", "shift")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_mat(head: bytes) -> bool:
    """Whether the first bytes of a file are a MATLAB 5+ header or HDF5 (v7.3 has a 512-byte user block)."""
    return head.startswith(b"MATLAB ") or head[:8] == HDF5_MAGIC or head[512:520] == HDF5_MAGIC


def _load_v73(path: Path) -> dict[str, NDArray[Any]]:
    try:
        import h5py
    except ImportError:
        raise MissingExtraError("reading .mat v7.3", "hdf5", "h5py") from None
    out: dict[str, NDArray[Any]] = {}
    try:
        with h5py.File(path, "r") as f:
            for name, obj in f.items():
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiub":
                    # h5py shows MATLAB's column-major arrays transposed; undo it so shapes read as in MATLAB.
                    out[name] = np.asarray(obj[()]).T
                elif not name.startswith("#"):
                    # Cell arrays, structs and strings are HDF5 references in v7.3: not decoded here.
                    out[name] = np.asarray(f"<MATLAB {obj.attrs.get('MATLAB_class', b'?')!r} variable>", dtype=object)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReaderError(path, f"not a readable MATLAB v7.3 (HDF5) file ({str(exc)[:200]})") from None
    return out


def _load_v5(path: Path) -> dict[str, NDArray[Any]]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        raw = loadmat(path, squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        return _load_v73(path)
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise ReaderError(path, f"not a readable MATLAB file ({str(exc)[:200]})") from None
    except Exception as exc:  # scipy's parser meets corrupt bytes with assorted errors: wrap them all here
        raise ReaderError(path, f"not a readable MATLAB file ({type(exc).__name__}: {str(exc)[:200]})") from None
    return {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__")}


def _pick(
    found: dict[str, NDArray[Any]], explicit: str | None, names: tuple[str, ...], what: str, path: Path
) -> tuple[str, NDArray[Any]] | None:
    if explicit is not None:
        if explicit not in found:
            raise ReaderError(path, f"no variable {quote(explicit)} ({what}); the file holds {quote_list(sorted(found))}")
        return explicit, found[explicit]
    for n in names:
        if n in found:
            return n, found[n]
    return None


def _numeric(name: str, arr: NDArray[Any], path: Path) -> NDArray[Any]:
    if arr.dtype == object and arr.ndim == 0:
        raise ReaderError(path, f"variable {name!r} is a cell array, struct or string in a v7.3 file (not supported)")
    if arr.dtype.kind not in "fiub":
        raise ReaderError(path, f"variable {name!r} is not a numeric array (MATLAB class {arr.dtype})")
    return arr


def read_mat(
    path: str | Path,
    *,
    x_var: str | None = None,
    y_var: str | None = None,
    axis_var: str | None = None,
    axis: Any = None,
    labels: Any = None,
    class_names: Any = None,
) -> SpectralDataset:
    """Read spectra, labels and axis from a MATLAB file.

    Args:
        x_var, y_var, axis_var: variable names; found by their usual names when None.
        axis: the axis (cm^-1) when the file holds none (``"START:STOP:POINTS"``, file or array).
        labels: labels from elsewhere, overriding ``y_var``.
        class_names: names of class indices 0..k-1, e.g. ``"COVID-19,Suspected,Healthy"``; default "0".."k-1".

    Raises:
        ReaderError: unreadable file, missing variables, shapes that do not fit the axis, NaN/inf.
        MissingExtraError: a v7.3 file without h5py installed.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(1024)
    except OSError as exc:
        raise ReaderError(p, f"cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ReaderError(p, "empty file")
    v73 = head[:8] == HDF5_MAGIC or head[512:520] == HDF5_MAGIC
    found = _load_v73(p) if v73 else _load_v5(p)
    xv = _pick(found, x_var, X_NAMES, "spectra", p)
    if xv is None:
        raise ReaderError(p, f"no spectra variable (tried {list(X_NAMES)}; the file holds {quote_list(sorted(found))}); use x_var=")
    x_name, X = xv[0], _numeric(xv[0], xv[1], p).astype(np.float64)
    provenance: dict[str, Any] = {"source": str(p), "reader": "mat", "format": "v7.3" if v73 else "v5", "x_var": x_name}
    if axis is not None:
        ax = parse_axis_option(axis, p)
    else:
        av = _pick(found, axis_var, AXIS_NAMES, "axis", p)
        if av is None:
            raise ReaderError(p, f"no axis variable (tried {list(AXIS_NAMES)}); use axis_var= or axis=")
        ax = _numeric(av[0], av[1], p).astype(np.float64)
        if ax.ndim == 2 and 1 in ax.shape:
            ax = ax.ravel()
        provenance["axis_var"] = av[0]
    if ax.ndim != 1:
        raise ReaderError(p, f"the axis must be a vector, got shape {ax.shape}")
    if X.ndim != 2:
        raise ReaderError(p, f"variable {x_name!r} must be 2-D, got shape {X.shape}")
    n = ax.size
    if X.shape[1] == n and X.shape[0] != n:
        pass
    elif X.shape[0] == n and X.shape[1] != n:
        X = X.T
        provenance["transposed"] = True
    elif X.shape == (n, n):
        logger.warning("%s: %r is square (%d x %d); taking rows as spectra", p, x_name, n, n)
    else:
        raise ReaderError(p, f"variable {x_name!r} of shape {X.shape} does not match the axis ({n} points)")
    bad = ~np.isfinite(X)
    if bad.any() and bad_spectra_policy() is None:  # else the bad spectra are named (or left out) one by one
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise ReaderError(p, f"{int(bad.sum())} NaN/inf value(s) in {x_name!r}, first in spectrum {r} at point {c}")
    y = None
    classes: tuple[str, ...] = ()
    if labels is not None:
        from spectral_core.io._common import parse_labels_option

        y, classes = parse_labels_option(labels, X.shape[0], p, class_names)
    else:
        yv = _pick(found, y_var, Y_NAMES, "labels", p)
        if yv is not None:
            raw = yv[1]
            if raw.dtype == object and raw.ndim == 0:
                raise ReaderError(
                    p, f"label variable {yv[0]!r} is a cell array or struct in a v7.3 file (not supported); use labels="
                )
            if raw.dtype.kind in "US":
                raw = np.asarray([str(s).strip() for s in raw.ravel()])
            elif raw.dtype == object:
                raw = np.asarray([str(np.asarray(s).ravel()[0]) if np.asarray(s).size else "" for s in raw.ravel()])
            elif raw.ndim == 2 and raw.shape[0] != X.shape[0] and raw.shape[1] == X.shape[0]:
                raw = raw.T
            y, classes = classes_and_indices(raw, X.shape[0], p, class_names, what=f"variable {yv[0]!r}")
            provenance["y_var"] = yv[0]
        elif y_var is None:
            logger.info("%s: no label variable (tried %s); the data are unlabelled", p, list(Y_NAMES))
    if ax[0] > ax[-1]:
        ax, X = ax[::-1].copy(), X[:, ::-1]
    return make_dataset(p, X=X, axis=ax, y=y, classes=classes, provenance=provenance)
