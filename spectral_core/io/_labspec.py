"""Horiba LabSpec text exports (``.txt``), single spectra, line scans / time series, and maps.

Layout: optional ``#Key=<TAB>value`` header lines (``#Acq. time (s)=	10``, ``#Laser=	785``,
``#Instrument=	LabRAM HR``), then tab-separated numbers.

* single spectrum: two columns, Raman shift (cm^-1) and intensity.
* map: a first row holding two empty cells then the Raman shifts; every other row ``X<TAB>Y<TAB>`` intensities.
  N spectra with their coordinates in ``meta["x"]`` and ``meta["y"]`` (as written, usually micrometres).
* line scan or time series: the same with one leading cell (``meta["t"]``).

Cells are tab-separated, so a comma inside one is a decimal comma (a European locale).
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
    bounded_header,
    cell_float,
    decode_text,
    header_number,
    make_dataset,
    read_bytes,
    starts_with_number,
)
from spectral_core.spectrum import SpectralDataset

__all__ = ["is_labspec", "read_labspec"]

logger = logging.getLogger(__name__)

_HEADER_LINE = re.compile(rb"^#[^=\n]{1,80}=\t", re.MULTILINE)
_MAP_FIRST_ROW = re.compile(rb"^\t\t?[-+]?\d")
_COORDS = {1: ("t",), 2: ("x", "y")}


def is_labspec(head: bytes) -> bool:
    """Whether the first bytes look like a LabSpec export: ``#Key=<TAB>value`` header lines, or a first data
    row of empty cells then numbers (a map's axis row)."""
    if starts_with_number(head):
        return False
    if b"=\t" in head and _HEADER_LINE.search(head):
        return True
    if b"\t" not in head:
        return False
    pos = 0
    while pos < len(head):  # the first line that is neither blank nor a comment
        end = head.find(b"\n", pos)
        end = len(head) if end < 0 else end
        line = head[pos:end]
        if line.strip() and not line.startswith(b"#"):
            return bool(_MAP_FIRST_ROW.match(line))
        pos = end + 1
    return False


def read_labspec(path: str | Path, data: bytes | None = None, *, encoding: str | None = None) -> SpectralDataset:
    """Read a LabSpec text export: one spectrum, or one per map point / time step with its coordinates.

    Raises:
        ReaderError: no data rows, a row with a different number of cells than the axis row (line named),
            a bad cell, or an axis that is not strictly monotonic.
    """
    p = Path(path)
    text, enc = decode_text(read_bytes(p) if data is None else data, p, encoding)
    pairs: list[tuple[str, str]] = []
    rows: list[tuple[int, list[str]]] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            name, _, text_value = line[1:].partition("=")
            pairs.append((name, text_value))
        elif line.strip():
            rows.append((no, line.rstrip("\r\n").split("\t")))
    if not rows:
        raise ReaderError(p, "no data rows after the #key= header lines")
    header = bounded_header(pairs)
    first_no, first = rows[0]
    if len(first) > 2 and not first[-1].strip():
        first = first[:-1]
    lead = next((i for i, c in enumerate(first) if c.strip()), len(first))
    provenance: dict[str, Any] = {"source": str(p), "reader": "labspec", "encoding": enc, "header": header}
    for key, rx in (("excitation_nm", r"^laser"), ("integration_time_s", r"^acq\.? ?time")):
        value = header_number(header, rx)
        if value is not None:
            provenance[key] = value
    meta: dict[str, NDArray[Any]] = {}
    why: dict[int, str] = {}
    if lead == 0:
        width = len(first)
        if width != 2:
            raise ReaderError(
                p,
                f"line {first_no}: {width} cells; a LabSpec spectrum has 2 (shift, intensity) and a map's "
                "first row starts with empty X and Y cells",
            )
        values, _ = _numbers(p, rows, width)
        axis, X = values[:, 0], values[:, 1][None, :]
        provenance["layout"] = "spectrum"
    elif lead in _COORDS:
        names = _COORDS[lead]
        axis = np.array(
            [cell_float(c, p, first_no, j + 1, decimal_comma=True) for j, c in enumerate(first) if j >= lead]
        )
        if len(rows) < 2:
            raise ReaderError(p, f"line {first_no}: an axis row and no spectra after it")
        # a map's rows are its spectra: under a bad-spectra policy a bad row is named (or left out) alone
        values, why = _numbers(p, rows[1:], len(first), partial=bad_spectra_policy() is not None)
        for j, name in enumerate(names):
            meta[name] = values[:, j]
        X = values[:, lead:]
        provenance["layout"] = "map" if lead == 2 else "series"
    else:
        raise ReaderError(p, f"line {first_no}: {lead} empty leading cells; a LabSpec map row has 2 (X, Y)")
    if axis.size >= 2 and axis[0] > axis[-1]:
        axis, X = axis[::-1].copy(), X[:, ::-1]
    return make_dataset(p, X=X, axis=axis, provenance=provenance, meta=meta, bad_reasons=why)


def _numbers(
    p: Path, rows: list[tuple[int, list[str]]], width: int, *, partial: bool = False
) -> tuple[NDArray[np.float64], dict[int, str]]:
    """The rows as a float array; a row of another width or a bad cell is named by its line. Cells are
    tab-separated, so a comma inside one is a decimal comma.

    Args:
        partial: a bad row becomes a row of NaN and its reason is returned (index -> why) instead of raised.
    """
    out = np.empty((len(rows), width), dtype=np.float64)
    why: dict[int, str] = {}
    for r, (no, row) in enumerate(rows):
        try:
            out[r] = _row(p, no, row, width)
        except ReaderError as exc:
            if not partial:
                raise
            out[r] = np.nan
            why[r] = exc.reason
    return out, why


def _row(p: Path, no: int, row: list[str], width: int) -> list[float]:
    cells = row[:-1] if len(row) == width + 1 and not row[-1].strip() else row
    if len(cells) != width:
        raise ReaderError(p, f"line {no}: {len(cells)} cell(s) where {width} were expected (truncated row?)")
    try:
        values = [float(c.replace(",", ".")) for c in cells]
    except ValueError:
        values = [cell_float(c, p, no, j + 1, decimal_comma=True) for j, c in enumerate(cells)]
    for j, v in enumerate(values):
        if not np.isfinite(v):
            cell_float(cells[j], p, no, j + 1, decimal_comma=True)  # raises, naming the cell
    return values
