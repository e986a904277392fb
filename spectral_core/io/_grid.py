"""Delimited text as a grid of cells: delimiter sniffing, comment and header lines, and numeric conversion
that names the line and column of any bad cell.

Shared by the two-column spectrum reader and the table reader.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError

__all__ = ["Grid", "parse_grid"]

logger = logging.getLogger(__name__)

_DELIMITERS = (";", "\t", ",")
_META = re.compile(r"^##\s*([^=]+?)\s*=\s*(.*)$")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+([eE][-+]?\d+)?$")


def _name(delimiter: str | None) -> str:
    return {None: "whitespace", ";": "semicolon", "\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))


@dataclass
class Grid:
    """Cells of a delimited text file.

    Attributes:
        header: the first non-comment row when it holds a non-numeric cell, else None.
        rows: data rows as stripped string cells.
        lines: 1-based line number of each data row (for error messages).
        delimiter: the column separator; None means runs of whitespace.
        decimal: "." or "," (decimal comma, only with a semicolon, tab or whitespace delimiter).
        meta: ``##KEY=VALUE`` comment lines (RRUFF, ramanedge writers), keys upper-cased.
    """

    path: Path
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]
    delimiter: str | None
    decimal: str = "."
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n_columns(self) -> int:
        return len(self.rows[0]) if self.rows else (len(self.header) if self.header else 0)

    def numeric(self, columns: list[int] | None = None) -> NDArray[np.float64]:
        """The data rows (optionally only ``columns``) as a float64 array.

        Raises:
            ReaderError: a non-numeric or empty cell, or a NaN/inf value, naming its line and column.
        """
        cols = list(range(self.n_columns)) if columns is None else columns
        cells = self.rows if columns is None else [[r[c] for c in cols] for r in self.rows]
        if self.decimal == ",":
            cells = [[c.replace(",", ".") for c in r] for r in cells]
        try:
            arr = np.array(cells, dtype=np.float64)
        except ValueError:
            for r, row in enumerate(cells):
                for j, cell in enumerate(row):
                    try:
                        float(cell)
                    except ValueError:
                        what = "an empty cell" if cell == "" else f"{cell[:40]!r} is not a number"
                        raise ReaderError(
                            self.path, f"line {self.lines[r]}, column {cols[j] + 1}: {what}"
                        ) from None
            raise ReaderError(self.path, "non-numeric cells") from None
        if arr.ndim != 2:
            arr = arr.reshape(len(cells), len(cols))
        bad = ~np.isfinite(arr)
        if bad.any():
            r, j = (int(v) for v in np.argwhere(bad)[0])
            raise ReaderError(
                self.path,
                f"line {self.lines[r]}, column {cols[j] + 1}: non-finite value {cells[r][j]!r} "
                f"({int(bad.sum())} NaN/inf cell(s) in all)",
            )
        return arr


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        parts = line.split()
    else:
        parts = [c.strip() for c in line.split(delimiter)]
    return [c[1:-1].strip() if len(c) >= 2 and c[0] == c[-1] and c[0] in "\"'" else c for c in parts]


def parse_grid(path: Path, text: str, *, delimiter: str | None = None) -> Grid:
    """Split ``text`` into comment metadata, an optional header row and rectangular data rows.

    Args:
        delimiter: force a separator (``";"``, ``"\\t"``, ``","``, or ``" "`` for whitespace); sniffed when None
            from the first 50 data lines: semicolon, then tab, then comma, else whitespace.

    Raises:
        ReaderError: no data lines, or ragged rows (naming the first line with a different column count).
    """
    meta: dict[str, str] = {}
    body: list[tuple[int, str]] = []
    for no, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _META.match(line)
            if m:
                meta[m.group(1).strip().upper()] = m.group(2).strip()
            continue
        body.append((no, line))
    if not body:
        raise ReaderError(path, "no data lines (the file is empty or holds only comments)")
    if delimiter is None:
        sample = [ln for _, ln in body[:50]]
        delim: str | None = next((d for d in _DELIMITERS if all(d in ln for ln in sample)), None)
    else:
        delim = None if delimiter.strip() == "" else delimiter
    rows = [_split(ln, delim) for _, ln in body]
    if delim is not None and all(r[-1] == "" and len(r) > 1 for r in rows):
        # Some exporters end every line with the separator: that is not an empty last column.
        rows = [r[:-1] for r in rows]
    lines = [no for no, _ in body]
    decimal = "."
    if delim != ",":
        probe = [c for r in rows[1:21] for c in r]
        if probe and any("," in c for c in probe) and all(
            _DECIMAL_COMMA.match(c) or _is_number(c) for c in probe
        ):
            decimal = ","
    first = rows[0] if decimal == "." else [c.replace(",", ".") for c in rows[0]]
    header: list[str] | None = None
    if not all(_is_number(c) for c in first):
        header = rows[0]
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise ReaderError(path, "a header row but no data lines")
    width = len(rows[0])
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ReaderError(
                path,
                f"ragged rows: line {lines[r]} has {len(row)} column(s), line {lines[0]} has {width} "
                f"({_name(delim)}-separated)",
            )
    if header is not None and len(header) != width:
        if delim is None:
            # Whitespace-separated files often have multi-word column titles ("Raman Shift  Intensity"):
            # the titles cannot be split reliably, so the line is kept whole as metadata.
            meta["HEADER"] = " ".join(header)
            header = None
        else:
            raise ReaderError(path, f"the header row has {len(header)} column(s) but the data rows have {width}")
    return Grid(path, header, rows, lines, delim, decimal, meta)
