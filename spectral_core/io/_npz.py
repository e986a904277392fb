"""``.npz`` datasets: arrays X (spectra x points), axis (cm^-1), and optionally y, classes, groups."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from spectral_core.errors import DataError, ReaderError
from spectral_core.io._common import quote_list
from spectral_core.spectrum import SpectralDataset

__all__ = ["META_PREFIX", "read_npz", "write_npz"]

META_PREFIX = "meta_"  # per-spectrum columns (SpectralDataset.meta) are stored as arrays meta_<key>


def read_npz(path: str | Path) -> SpectralDataset:
    """Read a dataset written by :func:`write_npz` (or any npz with X, axis and optional y/classes/groups, and
    per-spectrum ``meta_<key>`` arrays).

    Labels may be integer indices with ``classes`` names, or strings (classes are then sorted names).
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
            if "X" not in files:
                raise ReaderError(p, f"npz has no array 'X' (found {sorted(files)})")
            X = z["X"]
            axis = z["axis"] if "axis" in files else (z["wavenumbers"] if "wavenumbers" in files else None)
            y_raw = z["y"] if "y" in files else None
            classes_raw = z["classes"] if "classes" in files else None
            groups = z["groups"] if "groups" in files else None
            prov_raw = z["provenance"] if "provenance" in files else None
            meta = {name[len(META_PREFIX) :]: z[name] for name in sorted(files) if name.startswith(META_PREFIX)}
    except ReaderError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ReaderError(p, f"not a readable npz file ({str(exc)[:200]})") from None
    if axis is None:
        raise ReaderError(p, "npz has no 'axis' array (wavenumbers in cm^-1)")
    if X.dtype.kind not in "fiu":
        raise ReaderError(p, f"X has non-numeric dtype {X.dtype}")
    y = None
    classes: tuple[str, ...] = ()
    if y_raw is not None:
        if y_raw.dtype.kind in "US":
            names = sorted(set(y_raw.astype(str).tolist()))
            if classes_raw is not None:
                names = [str(c) for c in classes_raw.tolist()]
            lookup = {n: i for i, n in enumerate(names)}
            unknown = sorted(set(y_raw.astype(str).tolist()) - set(lookup))
            if unknown:
                raise ReaderError(p, f"labels {quote_list(unknown)} are not among classes {quote_list(names)}")
            y = np.array([lookup[s] for s in y_raw.astype(str).tolist()], dtype=np.int64)
            classes = tuple(names)
        else:
            if y_raw.dtype.kind not in "iu" and not np.all(np.mod(y_raw, 1) == 0):
                raise ReaderError(p, "y holds non-integer labels")
            y = y_raw.astype(np.int64)
            if classes_raw is not None:
                classes = tuple(str(c) for c in classes_raw.tolist())
            else:
                classes = tuple(str(i) for i in range(int(y.max()) + 1 if y.size else 0))
    provenance: dict[str, object] = {"source": str(p), "reader": "npz"}
    if prov_raw is not None:
        try:
            provenance.update(json.loads(str(prov_raw)))
            provenance["source"] = str(p)
        except ValueError:
            pass
    try:
        return SpectralDataset(
            X=X, axis=axis, y=y, classes=classes, groups=groups, provenance=provenance, meta=meta
        )
    except DataError as exc:
        raise ReaderError(p, str(exc)) from None


def write_npz(ds: SpectralDataset, path: str | Path) -> Path:
    """Write ``ds`` atomically (temporary file + rename), readable by :func:`read_npz`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"X": ds.X, "axis": ds.axis}
    if ds.y is not None:
        arrays["y"] = ds.y
        arrays["classes"] = np.asarray(ds.classes, dtype=str)
    if ds.groups is not None:
        arrays["groups"] = np.asarray(ds.groups, dtype=str)
    arrays["provenance"] = np.asarray(json.dumps(ds.provenance, default=str))
    arrays.update({META_PREFIX + key: column for key, column in ds.meta.items()})
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
