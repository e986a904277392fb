"""The data model shared by every package: one :class:`Spectrum`, many in a :class:`SpectralDataset`.

Axes are wavenumbers in cm^-1 stored as float64 (calibration needs the precision); intensities are float32
(what the model consumes). Constructors validate: an invalid object never exists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spectral_core.errors import AxisError, DataError

__all__ = ["SpectralDataset", "Spectrum", "check_axis"]


def check_axis(axis: ArrayLike, *, what: str = "axis") -> NDArray[np.float64]:
    """Return ``axis`` as a 1-D float64 array after checking it is finite and strictly increasing.

    Raises:
        AxisError: empty, not 1-D, non-finite, or not strictly increasing (duplicates included).
    """
    a = np.asarray(axis, dtype=np.float64)
    if a.ndim != 1:
        raise AxisError(f"{what} must be 1-D, got shape {a.shape}")
    if a.size < 2:
        raise AxisError(f"{what} needs at least 2 points, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise AxisError(f"{what} has {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
    d = np.diff(a)
    if np.any(d == 0):
        i = int(np.flatnonzero(d == 0)[0])
        raise AxisError(f"{what} has a duplicate value {a[i]:g} at index {i}")
    if not (np.all(d > 0) or np.all(d < 0)):
        i = int(np.flatnonzero(np.sign(d) != np.sign(d[0]))[0])
        raise AxisError(f"{what} is not monotonic (direction changes at index {i + 1}, value {a[i + 1]:g})")
    if d[0] < 0:
        raise AxisError(f"{what} is decreasing; call Spectrum/SpectralDataset.sorted() or reverse it first")
    return a


def _as_intensities(values: ArrayLike, n: int, *, what: str) -> NDArray[np.float32]:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: intensities are not numeric ({exc})") from None
    if x.shape[-1:] != (n,):
        raise DataError(f"{what}: {x.shape[-1] if x.ndim else 0} intensity points but the axis has {n}")
    bad = ~np.isfinite(x)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise DataError(f"{what}: {int(bad.sum())} NaN/inf value(s), first at index {where}")
    return x.astype(np.float32)


def _check_meta(meta: dict[str, Any], n: int) -> dict[str, NDArray[Any]]:
    """Per-spectrum columns as 1-D arrays of length ``n``: numbers, booleans or strings, never objects."""
    if not isinstance(meta, dict):
        raise DataError(f"meta must be a dict of per-spectrum columns, got {type(meta).__name__}")
    out: dict[str, NDArray[Any]] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise DataError(f"meta keys must be non-empty strings, got {key!r:.40}")
        col = np.asarray(value)
        if col.dtype.kind == "O" and all(isinstance(v, str) for v in col.ravel().tolist()):
            col = col.astype(str)
        if col.dtype.kind not in "biufU":
            raise DataError(f"meta column {key!r:.40} has dtype {col.dtype}; numbers or strings only")
        if col.shape != (n,):
            raise DataError(f"meta column {key!r:.40} has shape {col.shape}, expected ({n},)")
        out[key] = col
    return out


@dataclass(frozen=True)
class Spectrum:
    """One measured spectrum.

    Attributes:
        axis: wavenumbers in cm^-1, float64, strictly increasing.
        intensities: float32 counts (or arbitrary units), same length as ``axis``, all finite.
        metadata: free-form facts (source file, device serial, integration time in us, sequence number,
            acquisition timestamp, saturation flag, ...). JSON-serialisable values only.
    """

    axis: NDArray[np.float64]
    intensities: NDArray[np.float32]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        axis = check_axis(self.axis)
        object.__setattr__(self, "axis", axis)
        vals = _as_intensities(self.intensities, axis.size, what=str(self.metadata.get("source", "spectrum")))
        if vals.ndim != 1:
            raise DataError(f"a Spectrum holds one spectrum, got intensities of shape {vals.shape}")
        object.__setattr__(self, "intensities", vals)

    @classmethod
    def from_unsorted(
        cls, axis: ArrayLike, intensities: ArrayLike, metadata: dict[str, Any] | None = None
    ) -> Spectrum:
        """Build a spectrum from an axis that may run high-to-low (many instruments write it so)."""
        a = np.asarray(axis, dtype=np.float64)
        y = np.asarray(intensities)
        if a.ndim == 1 and a.size >= 2 and a[0] > a[-1]:
            a, y = a[::-1], y[::-1]
        return cls(a, y, dict(metadata or {}))

    def __len__(self) -> int:
        return int(self.axis.size)


@dataclass(frozen=True)
class SpectralDataset:
    """Spectra on one common axis, with optional labels and groups.

    Attributes:
        X: float32 array of shape (n_spectra, n_points).
        axis: float64 wavenumbers in cm^-1, shape (n_points,).
        y: int64 class indices into ``classes`` (shape (n_spectra,)), or None for unlabelled data.
        classes: class names; ``y == i`` means ``classes[i]``.
        groups: optional per-spectrum group ids (patient, sample, specimen) for group-aware splits.
        provenance: where the data came from (files, reader, options), JSON-serialisable.
        meta: optional per-spectrum columns, each a 1-D array of length ``n_spectra`` (numbers or strings),
            e.g. map coordinates ``x_um``/``y_um`` (micrometres), ``acquisition`` (index within its file),
            ``file``. Kept by :meth:`subset`, :meth:`select_classes` and concatenation.
    """

    X: NDArray[np.float32]
    axis: NDArray[np.float64]
    y: NDArray[np.int64] | None = None
    classes: tuple[str, ...] = ()
    groups: NDArray[np.str_] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        axis = check_axis(self.axis)
        object.__setattr__(self, "axis", axis)
        X = np.asarray(self.X)
        if X.ndim != 2:
            raise DataError(f"X must be 2-D (spectra x points), got shape {X.shape}")
        X = _as_intensities(X, axis.size, what=str(self.provenance.get("source", "dataset")))
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.y is not None:
            y = np.asarray(self.y)
            if y.shape != (X.shape[0],):
                raise DataError(f"y has shape {y.shape}, expected ({X.shape[0]},)")
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"y must hold integer class indices, got dtype {y.dtype}")
            y = y.astype(np.int64)
            if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
                raise DataError(
                    f"y holds indices {int(y.min())}..{int(y.max())} but there are {len(self.classes)} classes"
                )
            object.__setattr__(self, "y", y)
        if self.groups is not None:
            g = np.asarray(self.groups).astype(str)
            if g.shape != (X.shape[0],):
                raise DataError(f"groups has shape {g.shape}, expected ({X.shape[0]},)")
            object.__setattr__(self, "groups", g)
        object.__setattr__(self, "meta", _check_meta(self.meta, X.shape[0]))

    @property
    def n_spectra(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.X.shape[1])

    def __len__(self) -> int:
        return self.n_spectra

    def spectrum(self, i: int) -> Spectrum:
        """Return spectrum ``i`` as a :class:`Spectrum` (label in its metadata when known)."""
        meta: dict[str, Any] = {"index": int(i)}
        if self.y is not None:
            meta["label"] = self.classes[int(self.y[i])]
        if self.groups is not None:
            meta["group"] = str(self.groups[i])
        for key, column in self.meta.items():
            meta[key] = column[i].item()
        return Spectrum(self.axis, self.X[i], meta)

    def subset(self, index: ArrayLike) -> SpectralDataset:
        """Rows ``index`` (an integer or boolean array) as a new dataset with the same classes."""
        idx = np.asarray(index)
        return SpectralDataset(
            X=self.X[idx],
            axis=self.axis,
            y=None if self.y is None else self.y[idx],
            classes=self.classes,
            groups=None if self.groups is None else self.groups[idx],
            provenance=dict(self.provenance),
            meta={k: v[idx] for k, v in self.meta.items()},
        )

    def select_classes(self, names: list[str] | tuple[str, ...]) -> SpectralDataset:
        """Keep only the named classes, re-indexed in the given order (e.g. a binary task from a multi-class set)."""
        if self.y is None:
            raise DataError("cannot select classes of an unlabelled dataset")
        missing = [n for n in names if n not in self.classes]
        if missing:
            raise DataError(f"unknown class(es) {missing}; the data has {list(self.classes)}")
        old = [self.classes.index(n) for n in names]
        keep = np.isin(self.y, old)
        remap = np.full(len(self.classes), -1, dtype=np.int64)
        remap[old] = np.arange(len(old))
        return SpectralDataset(
            X=self.X[keep],
            axis=self.axis,
            y=remap[self.y[keep]],
            classes=tuple(names),
            groups=None if self.groups is None else self.groups[keep],
            provenance={**self.provenance, "selected_classes": list(names)},
            meta={k: v[keep] for k, v in self.meta.items()},
        )

    def class_counts(self) -> dict[str, int]:
        if self.y is None:
            return {}
        c = Counter(self.y.tolist())
        return {name: int(c.get(i, 0)) for i, name in enumerate(self.classes)}

    def fingerprint(self) -> str:
        """SHA-256 of axis, spectra, labels and class names: identifies the exact data a model saw."""
        from spectral_core.hashing import sha256_arrays

        parts: list[Any] = [self.axis, self.X]
        if self.y is not None:
            parts.append(self.y)
        parts.append(np.asarray(self.classes, dtype=str))
        return sha256_arrays(*parts)
