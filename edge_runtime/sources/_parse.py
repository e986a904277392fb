"""The spectra of a dropped file's bytes, read with the shared readers of :mod:`spectral_core.io`."""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError

__all__ = ["check_npz", "parse_file"]

#: what read_spectrum says of a file holding several spectra: such a file is read whole (read_dataset)
_MULTI = re.compile(r"holds \d+ spectra")
_KEPT_METADATA = ("device_serial", "integration_time_us")


def parse_file(
    path: Path, data: bytes, *, max_values: int, max_spectra: int
) -> tuple[NDArray[np.float64], NDArray[np.float32], list[dict[str, Any]], dict[int, str]]:
    """The spectra of a dropped file, with the shared readers: (axis in cm^-1, intensities (n, points) of the
    readable spectra, one metadata dict each, and the unreadable ones of a partly bad table or map: index in
    the file -> reason). A single spectrum takes the fast path; a table, map or series is read whole.

    Raises:
        DataError: empty, a bare .npy, an .npz declaring more than ``max_values`` values, more than
            ``max_spectra`` spectra, or NaN/inf intensities; ReaderError: what the reader found wrong.
    """
    if not data:
        raise DataError(f"{path.name}: empty file")
    if path.suffix.lower() == ".npy":
        raise DataError(f"{path.name}: a bare .npy holds no wavenumber axis; drop two-column text or JCAMP-DX")
    if data[:4] == b"PK\x03\x04":
        check_npz(path, data, max_values)
    from spectral_core.errors import ReaderError
    from spectral_core.io import BadSpectraError, read_dataset, read_spectrum

    try:
        spec = read_spectrum(path, data=data)
    except ReaderError as exc:
        partly = isinstance(exc, BadSpectraError) and exc.partly
        if _MULTI.search(str(exc)) is None and not partly:
            raise
        # the bytes in hand: the file is not read again from disk; a partly bad file gives its good spectra
        # and the index and reason of each bad one
        ds = read_dataset(path, data=data, bad_spectra="skip")
    else:
        if not np.all(np.isfinite(spec.intensities)):
            raise DataError(f"{path.name}: NaN/inf intensities")
        meta = {k: v for k, v in spec.metadata.items() if k in _KEPT_METADATA}
        return np.asarray(spec.axis, dtype=np.float64), np.asarray(spec.intensities)[None, :], [meta], {}
    bad = {int(e["index"]): str(e["reason"]) for e in ds.provenance.get("skipped_spectra") or ()}
    n = ds.n_spectra + len(bad)
    if n > max_spectra:
        raise DataError(f"{path.name}: holds {n} spectra, more than max_spectra_per_file={max_spectra}")
    if n == 0:
        raise DataError(f"{path.name}: holds no spectrum")
    n = ds.n_spectra
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    if ds.y is not None and ds.classes:
        for k in range(n):
            metas[k]["label_in_file"] = ds.classes[int(ds.y[k])]
    if ds.groups is not None:
        for k in range(n):
            metas[k]["group"] = str(ds.groups[k])
    for key, column in (ds.meta or {}).items():  # each spectrum's own facts: map x/y, acquisition, time
        for k, value in enumerate(np.asarray(column).tolist()):
            if value is not None and value != "" and not (isinstance(value, float) and not math.isfinite(value)):
                metas[k][str(key)] = value
    return np.asarray(ds.axis, dtype=np.float64), ds.X, metas, bad


def check_npz(path: Path, data: bytes, max_values: int) -> None:
    """Refuse a zip (.npz) whose arrays declare more than ``max_values`` values in all (or more than 16 bytes a
    value allowed), from the member headers alone: a small file declaring 1e9 values is never allocated."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        return  # the reader says what is wrong with it
    total = nbytes = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                raise DataError(f"{path.name}: member {info.filename[:80]!r} has no readable .npy header "
                                f"({type(exc).__name__})") from None
            values = math.prod(int(d) for d in shape)
            total += values
            nbytes += values * max(1, dtype.itemsize)
            if total > max_values or nbytes > 4 * max_values * 4:
                raise DataError(f"{path.name}: its arrays declare {total} values ({nbytes} bytes) so far, more "
                                f"than the {max_values} values that max_file_bytes allows (max_file_bytes / 4); "
                                "refused before reading them")
