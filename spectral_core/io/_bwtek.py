"""B&W Tek BWSpec / BWRam text exports (``.txt``/``.csv``).

Layout: about 90 ``key;value`` header lines (``File Version;BWSpec4.11``, ``laser_wavelength;785,12``,
``intigration times(ms);1000`` [sic], ``model;...``), then a column header line starting with ``Pixel``
(``Pixel;Wavelength;Wavenumber;Raman Shift;Dark;Reference;Raw data #1;Dark Subtracted #1;...``) and one row a
detector pixel. Semicolon exports use decimal commas; comma exports use points. ``Raman Shift`` is empty for the
first pixels (below the laser line filter): those rows are dropped and counted in the provenance.

One spectrum per acquisition ``#N``: the ``Dark Subtracted #N`` columns by default, ``Raw data #N`` with
``intensity_column="raw"``, or any column name (``intensity_column="Reference"``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from spectral_core.errors import ReaderError
from spectral_core.io._common import (
    bounded_header,
    cell_float,
    decode_text,
    header_number,
    make_dataset,
    quote,
    quote_list,
    read_bytes,
    starts_with_number,
)
from spectral_core.spectrum import SpectralDataset

__all__ = ["is_bwtek", "read_bwtek"]

logger = logging.getLogger(__name__)

_COLUMN_HEADER = re.compile(r"^\s*Pixel\s*([;,\t])", re.IGNORECASE)
_SNIFF = re.compile(rb"^\s*Pixel\s*[;,\t]\s*Wavelength\s*[;,\t]\s*Wavenumber", re.IGNORECASE | re.MULTILINE)
_NAMED = {"dark_subtracted": "Dark Subtracted", "dark subtracted": "Dark Subtracted", "raw": "Raw data"}
_ACQ = re.compile(r"^(.*?)\s*#\s*(\d+)$")
MAX_HEADER_LINES = 1000


def is_bwtek(head: bytes) -> bool:
    """Whether the first bytes of a file look like a B&W Tek export (its ``Pixel;Wavelength;Wavenumber`` header,
    a ``BWSpec`` file version, or its ``laser_wavelength`` and ``intigration times`` header keys)."""
    if starts_with_number(head):
        return False
    low = head.lower()
    if b"bwspec" in low[:512] or (b"laser_wavelength" in low and b"intigration times" in low):
        return True
    # plain substring tests first: every file is sniffed, most are plain numbers
    return b"pixel" in low and _SNIFF.search(head) is not None


def read_bwtek(
    path: str | Path,
    data: bytes | None = None,
    *,
    intensity_column: str | None = None,
    encoding: str | None = None,
) -> SpectralDataset:
    """Read a B&W Tek text export: one spectrum per acquisition, on the ``Raman Shift`` axis (cm^-1).

    Args:
        path: the file (named in errors).
        data: its bytes when already read.
        intensity_column: ``"dark_subtracted"`` (default), ``"raw"``, or a column name as in the file
            (``"Raw data #2"`` for one acquisition, ``"Raw data"`` for all of them).
        encoding: forced text encoding.

    Returns:
        A dataset with ``meta["acquisition"]`` (the ``#N`` of each spectrum) and the header in
        ``provenance["header"]``, plus ``excitation_nm``, ``integration_time_ms``, ``model`` and ``serial``
        when the header has them.

    Raises:
        ReaderError: no ``Pixel`` column header, no ``Raman Shift`` column, an unknown intensity column, a row
            with the wrong number of cells, or a bad cell (line and column named).
    """
    p = Path(path)
    text, enc = decode_text(read_bytes(p) if data is None else data, p, encoding)
    lines = text.splitlines()
    head_at = next((i for i, ln in enumerate(lines[: MAX_HEADER_LINES + 1]) if _COLUMN_HEADER.match(ln)), None)
    if head_at is None:
        raise ReaderError(
            p,
            f"no column header line starting with 'Pixel' in the first {MAX_HEADER_LINES} lines "
            "(expected a B&W Tek export: key;value lines, then Pixel;Wavelength;...;Raman Shift;...)",
        )
    m = _COLUMN_HEADER.match(lines[head_at])
    delim = m.group(1) if m else ";"
    decimal_comma = delim != ","
    pairs = [tuple(ln.split(delim, 1)) for ln in lines[:head_at] if delim in ln]
    header = bounded_header([(k, v) for k, v in pairs])
    names = [c.strip() for c in lines[head_at].split(delim)]
    if names and names[-1] == "":
        names.pop()  # a trailing separator
    where = f"line {head_at + 1}"
    lower = [n.lower() for n in names]
    if "raman shift" not in lower:
        raise ReaderError(p, f"{where}: no 'Raman Shift' column among {quote_list(names)}")
    x_col = lower.index("raman shift")
    y_cols = _intensity_columns(p, names, intensity_column, where)
    axis: list[float] = []
    rows: list[list[float]] = []
    dropped = 0
    for no, line in enumerate(lines[head_at + 1 :], start=head_at + 2):
        if not line.strip():
            continue
        cells = line.split(delim)
        if len(cells) == len(names) + 1 and not cells[-1].strip():
            cells.pop()
        if len(cells) != len(names):
            raise ReaderError(
                p,
                f"line {no}: {len(cells)} cell(s) where the column header ({where}) has {len(names)}; "
                "truncated or not a B&W Tek export",
            )
        if not cells[x_col].strip():
            if rows:
                raise ReaderError(p, f"line {no}, column {x_col + 1}: an empty Raman Shift after the first pixels")
            dropped += 1
            continue
        axis.append(cell_float(cells[x_col], p, no, x_col + 1, decimal_comma=decimal_comma))
        rows.append([cell_float(cells[j], p, no, j + 1, decimal_comma=decimal_comma) for j in y_cols])
    if len(rows) < 2:
        raise ReaderError(p, f"{len(rows)} data row(s) with a Raman Shift after {where}; a spectrum needs 2 or more")
    ax = np.asarray(axis, dtype=np.float64)
    X = np.asarray(rows, dtype=np.float64).T
    if ax[0] > ax[-1]:
        ax, X = ax[::-1].copy(), X[:, ::-1]
    acq = [_ACQ.match(names[j]) for j in y_cols]
    provenance: dict[str, Any] = {
        "source": str(p),
        "reader": "bwtek",
        "encoding": enc,
        "columns": [names[j] for j in y_cols],
        "header": header,
        "rows_without_shift": dropped,
    }
    for key, rx in (
        ("excitation_nm", r"^laser_wavelength"),
        ("integration_time_ms", r"^intigration time|^integration time"),
    ):
        value = header_number(header, rx)
        if value is not None:
            provenance[key] = value
    for key, rx in (("model", r"^model$"), ("serial", r"^(c code|serial|serial ?number|s_code)$")):
        found = next((v for k, v in header.items() if re.match(rx, k.strip(), re.IGNORECASE) and v), None)
        if found is not None:
            provenance[key] = found
    if dropped:
        logger.debug("%s: %d pixel row(s) without a Raman shift dropped", p, dropped)
    meta = {"acquisition": np.array([int(a.group(2)) if a else 0 for a in acq], dtype=np.int64)}
    return make_dataset(p, X=X, axis=ax, provenance=provenance, meta=meta)


def _intensity_columns(p: Path, names: list[str], choice: str | None, where: str) -> list[int]:
    """Indices of the intensity columns chosen by ``intensity_column`` (see :func:`read_bwtek`)."""
    wanted = _NAMED.get((choice or "dark_subtracted").strip().lower(), (choice or "").strip())
    exact = [j for j, n in enumerate(names) if n.lower() == wanted.lower()]
    if exact:
        return exact
    series = [j for j, n in enumerate(names) if (m := _ACQ.match(n)) and m.group(1).lower() == wanted.lower()]
    if not series:
        raise ReaderError(
            p,
            f"{where}: no intensity column {quote(wanted)} (intensity_column option); the columns are "
            f"{quote_list(names, limit=16)}",
        )
    return series
