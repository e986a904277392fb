"""Delimited text as a grid of cells: delimiter sniffing, comment and header lines, and numeric conversion
that names the line and column of any bad cell.

Shared by the two-column spectrum reader and the table reader.
"""

from __future__ import annotations

import io
import logging
import re
from itertools import repeat
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._common import bad_spectra_policy, quote

__all__ = ["Grid", "parse_grid"]

logger = logging.getLogger(__name__)

_DELIMITERS = (";", "\t", ",")
_META = re.compile(r"^##\s*([^=]+?)\s*=\s*(.*)$")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+([eE][-+]?\d+)?$")


def _name(delimiter: str | None) -> str:
    return {None: "whitespace", ";": "semicolon", "\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))


class Grid:
    """Cells of a delimited text file.

    Attributes:
        header: the first non-comment row when it holds a non-numeric cell, else None.
        rows: data rows as stripped string cells (split lazily: numeric files never need them).
        lines: 1-based line number of each data row (for error messages).
        delimiter: the column separator; None means runs of whitespace.
        decimal: "." or "," (decimal comma, only with a semicolon, tab or whitespace delimiter).
        meta: ``##KEY=VALUE`` comment lines (RRUFF, ramanedge writers), keys upper-cased.
        ragged: data rows (index -> their column count) of another width than the rest, kept only while a
            bad-spectra policy is active (a table with a spectrum a row may leave them out); every other use
            of the grid refuses them as before.
    """

    def __init__(
        self,
        path: Path,
        header: list[str] | None,
        body: list[str] | None,
        lines: list[int] | None,
        delimiter: str | None,
        *,
        width: int,
        decimal: str = ".",
        meta: dict[str, str] | None = None,
        trailing: bool = False,
        text: str | None = None,
        values: NDArray[np.float64] | None = None,
        ragged: dict[int, int] | None = None,
    ) -> None:
        self.path = path
        self.ragged = ragged if ragged is not None else {}
        self.header = header
        self.delimiter = delimiter
        self.decimal = decimal
        self.meta = meta if meta is not None else {}
        self.n_columns = width
        # body/lines None: built by the whole-text fast path, split into lines only if someone asks
        self._text = text
        self._body_lines = None if body is None or lines is None else (body, lines)
        self._trailing = trailing
        self._rows: list[list[str]] | None = None
        self._values: NDArray[np.float64] | None = values

    @property
    def _body(self) -> list[str]:
        return self._split_lines()[0]

    @property
    def lines(self) -> list[int]:
        """1-based line number of each data row."""
        return self._split_lines()[1]

    def _split_lines(self) -> tuple[list[str], list[int]]:
        if self._body_lines is None:
            if self._text is None:
                raise RuntimeError("a Grid needs its data lines or its text")
            g = _parse_lines(self.path, self._text, " " if self.delimiter is None else self.delimiter)
            self._body_lines = (g._body, g.lines)
        return self._body_lines

    @property
    def rows(self) -> list[list[str]]:
        if self._rows is None:
            rows = [_split(ln, self.delimiter) for ln in self._body]
            self._rows = [r[:-1] for r in rows] if self._trailing else rows
        return self._rows

    def head_rows(self, k: int) -> list[list[str]]:
        """The first ``k`` data rows as cells, without splitting the rest of the file."""
        if self._rows is not None:
            return self._rows[:k]
        rows = [_split(ln, self.delimiter) for ln in self._body[:k]]
        return [r[:-1] for r in rows] if self._trailing else rows

    def first_column(self, k: int) -> list[str]:
        """The first cell of each of the first ``k`` data rows."""
        if self.delimiter is None:
            return [ln.split(None, 1)[0] for ln in self._body[:k]]
        return [_split(ln.split(self.delimiter, 1)[0], self.delimiter)[0] for ln in self._body[:k]]

    def without_first_row(self) -> Grid:
        """The same grid less its first data row (taken as an axis or a header of indices)."""
        g = Grid(
            self.path, self.header, self._body[1:], self.lines[1:], self.delimiter, width=self.n_columns,
            decimal=self.decimal, meta=self.meta, trailing=self._trailing,
            ragged={r - 1: w for r, w in self.ragged.items() if r > 0},
        )
        if self._values is not None:
            g._values = self._values[1:]
        return g

    def _fast_values(self) -> NDArray[np.float64] | None:
        """All cells as floats by numpy's C parser, or None when the slow path must explain why not.

        An empty cell, quotes or a non-number make ``np.loadtxt`` fail; the Python path then finds and names
        the line and column. Both paths accept the same numbers.
        """
        if self._values is not None:
            return self._values
        if self.decimal != "." or not self._body:
            return None
        body = [ln[:-1] for ln in self._body] if self._trailing else self._body
        try:
            values = np.loadtxt(
                io.StringIO("\n".join(body)), delimiter=self.delimiter, dtype=np.float64, comments=None,
                quotechar=None, ndmin=2,
            )
        except ValueError:
            return None
        if values.shape != (len(self._body), self.n_columns):
            return None
        self._values = values
        return self._values

    def ragged_message(self, r: int) -> str:
        """Why data row ``r`` (one of :attr:`ragged`) is refused: its line and column count."""
        # the first data row is never ragged (see _keeps_ragged): it sets the width
        return (f"ragged rows: line {self.lines[r]} has {self.ragged[r]} column(s), line {self.lines[0]} has "
                f"{self.n_columns} ({_name(self.delimiter)}-separated)")

    def cell(self, r: int, column: int) -> str:
        """The text of one cell (row ``r`` of the data rows, 0-based ``column``), "" when the row is short."""
        row = self.rows[r]
        return row[column] if column < len(row) else ""

    def numeric(
        self, columns: list[int] | None = None, *, nonfinite_ok: bool = False, ragged_ok: bool = False
    ) -> NDArray[np.float64]:
        """The data rows (optionally only ``columns``) as a float64 array.

        Args:
            nonfinite_ok: NaN/inf cells come back as they are (the caller names the bad spectra).
            ragged_ok: rows of another width (:attr:`ragged`) come back as rows of NaN.

        Raises:
            ReaderError: a non-numeric or empty cell, or a NaN/inf value, naming its line and column; a row of
                another width than the others.
        """
        if self.ragged and not ragged_ok:
            raise ReaderError(self.path, self.ragged_message(min(self.ragged)))
        cols = list(range(self.n_columns)) if columns is None else columns
        fast = self._fast_values() if (columns is None or len(columns) > 0) and not self.ragged else None
        if fast is not None:
            arr = fast if columns is None else fast[:, cols]
            cells: list[list[str]] | None = None
        else:
            nan_row = ["nan"] * len(cols)
            cells = [
                nan_row if r in self.ragged else (row if columns is None else [row[c] for c in cols])
                for r, row in enumerate(self.rows)
            ]
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
                            what = "an empty cell" if cell == "" else f"{quote(cell)} is not a number"
                            raise ReaderError(
                                self.path, f"line {self.lines[r]}, column {cols[j] + 1}: {what}"
                            ) from None
                raise ReaderError(self.path, "non-numeric cells") from None
            if arr.ndim != 2:
                arr = arr.reshape(len(cells), len(cols))
        bad = ~np.isfinite(arr)
        if bad.any() and not nonfinite_ok:
            r, j = (int(v) for v in np.argwhere(bad)[0])
            cell = self.rows[r][cols[j]] if cells is None else cells[r][j]
            raise ReaderError(
                self.path,
                f"line {self.lines[r]}, column {cols[j] + 1}: non-finite value {quote(cell)} "
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
    fast = _parse_plain(path, text, delimiter)
    return fast if fast is not None else _parse_lines(path, text, delimiter)


# line breaks of str.splitlines() other than \n and \r\n: text holding one goes the line-by-line way
_ODD_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _forced(delimiter: str) -> str | None:
    """A delimiter the caller forced: ``" "`` (or any run of spaces) means whitespace, ``"\\t"`` stays a tab."""
    return None if delimiter != "\t" and delimiter.strip() == "" else delimiter


def _peel_comments(text: str) -> tuple[str, dict[str, str]] | None:
    """``text`` without its comment lines at the top and at the bottom (instrument headers, RRUFF's
    ``##KEY=VALUE`` lines and ``##END=``), and their metadata; None when a ``#`` is anywhere else."""
    meta: dict[str, str] = {}
    if "#" not in text:
        return text, meta
    top: list[str] = []
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = text[start:end].strip()
        if not line.startswith("#"):
            break
        top.append(line)
        start = end
    body = text[start:].rstrip()
    bottom: list[str] = []
    while body:
        cut = body.rfind("\n")
        line = body[cut + 1 :].strip()
        if not line.startswith("#"):
            break
        bottom.append(line)
        body = body[: max(cut, 0)].rstrip()
    if "#" in body:
        return None
    for line in top + bottom[::-1]:  # in file order: a later line wins, as line by line
        m = _META.match(line)
        if m:
            meta[m.group(1).strip().upper()] = m.group(2).strip()
    return body, meta


def _parse_plain(path: Path, text: str, delimiter: str | None) -> Grid | None:
    """The common file (plain ASCII numbers, comment lines only at the top and bottom, an optional header)
    parsed as one block by numpy's C reader; None whenever anything is unusual, so that :func:`_parse_lines`
    decides and explains.

    It takes the same decisions as the line-by-line path (delimiter sniffed from the first 50 data lines,
    header when a first-line cell is not a number, ``##KEY=VALUE`` metadata) and accepts only what that path
    accepts with the same values.
    """
    if any(c in text for c in _ODD_BREAKS) or text.count("\r") != text.count("\r\n"):
        return None
    peeled = _peel_comments(text)
    if peeled is None:
        return None
    body, meta = peeled
    if not body or not body.isascii():
        return None
    head = body.split("\n", 51)
    sample = [ln.strip() for ln in head[:50]]
    if len(head) <= 50 and sample and not sample[-1]:
        sample.pop()  # the text's own final line break
    if not sample or not all(sample):
        return None  # blank lines near the top: the line-by-line path handles them
    if delimiter is None:
        delim: str | None = next((d for d in _DELIMITERS if all(d in ln for ln in sample)), None)
    else:
        delim = _forced(delimiter)
    if delim != "," and "," in body:
        return None  # maybe a decimal comma
    if delim is not None and sample[0].endswith(delim):
        return None  # a trailing delimiter
    first = _split(sample[0], delim)
    header = None if all(_is_number(c) for c in first) else first
    if header is not None and len(sample) == 1:
        return None  # a header and no data
    try:
        values = np.loadtxt(
            io.StringIO(body), delimiter=delim, dtype=np.float64, comments=None, quotechar=None, ndmin=2,
            skiprows=0 if header is None else 1,
        )
    except ValueError:
        return None
    if values.shape[0] == 0 or values.shape[1] != len(first) or not np.isfinite(values).all():
        return None
    return Grid(path, header, None, None, delim, width=len(first), meta=meta, text=text, values=values)


_CELL_BREAK = re.compile(r"[;\t,\s]+")
_KEY_VALUE = re.compile(r"^\s*([^:=;\t,]*?)\s*[:=;\t,]\s*(.*?)\s*$")
_AXIS_NAME = re.compile(r"^\W*(wn\b|x\b|wave|raman|shift|cm|1/cm|pixel|nm\b|lambda|frequency)", re.IGNORECASE)
_MAX_PREAMBLE = 2000  # header lines kept as metadata (B&W Tek writes ~90); the rest are counted, not kept


def _numeric_line(line: str) -> bool:
    """Whether a line holds two or more numbers and nothing else, whatever the separator or decimal mark."""
    cells = [c.strip("\"'") for c in _CELL_BREAK.split(line) if c]
    return len(cells) >= 2 and all(_is_number(c) for c in cells)


def _data_line(line: str) -> bool:
    """Whether a line is a row of data: all numbers, or a table row with a text label or group cell or two
    (``A,0.1,0.2,...``) among many numbers. Instrument header lines hold one number or two at most."""
    if _numeric_line(line):
        return True
    cells = [c.strip("\"'") for c in _CELL_BREAK.split(line) if c]
    text = sum(1 for c in cells if not _is_number(c))
    numbers = len(cells) - text
    return text <= 2 and numbers >= 3 and numbers >= 3 * text


def _preamble_end(texts: list[str], forced: str | None) -> int:
    """Index of the first header or data line after instrument header lines (``Laser (nm): 785``,
    ``Integration;100``); 0 when the file starts with its header row or its data.

    Only a file with two or more non-numeric lines before its first numeric line has a preamble, so that a
    single header row keeps its own checks. The line just above the data is the column header when it splits
    into as many cells as the data (with a real separator) and is not itself ``key: value``.
    """
    if len(texts) < 3 or _data_line(texts[0]) or _data_line(texts[1]):
        return 0
    k = next((i for i, t in enumerate(texts) if _data_line(t)), None)
    if k is None:
        return 0
    data = texts[k : k + 50]
    delim = forced if forced is not None else next((d for d in _DELIMITERS if all(d in ln for ln in data)), None)
    cand = texts[k - 1]
    cells = _split(cand, delim)
    width = len(_split(texts[k], delim))
    # Two cells are a column header only when the first names an axis ("Raman shift;Intensity"); otherwise
    # "Sample;PS bead" is a key and its value. Mistaking one for the other changes metadata, never the data.
    kv_like = (len(cells) == 2 and not _AXIS_NAME.match(cells[0])) or (
        delim not in (":", "=") and bool(re.match(r"^[^:=]{1,80}[:=](\s|$)", cand))
    )
    header = not kv_like and (delim is None or (delim in cand and len(cells) in (width, width - 1, width + 1)))
    return k - 1 if header else k


def _preamble_meta(path: Path, texts: list[str], lines: list[int]) -> dict[str, str]:
    """``key<sep>value`` header lines as metadata (keys as written, values bounded to 1,000 characters);
    a line without a separator is kept under its own text."""
    meta: dict[str, str] = {}
    for line in texts[:_MAX_PREAMBLE]:
        m = _KEY_VALUE.match(line)
        key, value = (m.group(1), m.group(2)) if m and m.group(1) else (line, "")
        meta[key[:80]] = value[:1000]
    if len(texts) > _MAX_PREAMBLE:
        logger.info("%s: %d header lines before line %d; the first %d kept as metadata", path, len(texts),
                    lines[-1] + 1, _MAX_PREAMBLE)
    logger.debug("%s: %d header line(s) before the data, kept as metadata", path, len(texts))
    return meta


def _keeps_ragged(ragged: dict[int, int], n_rows: int, header: list[str] | None, width: int) -> bool:
    """Whether rows of another width may stay in the grid as bad rows (a truncated row in a table of spectra):
    only while a bad-spectra policy is active, with a first row of the header's width and most rows like it
    (otherwise the file's layout itself is in doubt and it is refused whole)."""
    return (
        bad_spectra_policy() is not None
        and n_rows >= 3
        and 0 not in ragged
        and 2 * len(ragged) < n_rows
        and (header is None or len(header) == width)
    )


def _parse_lines(path: Path, text: str, delimiter: str | None) -> Grid:
    """:func:`parse_grid` line by line: comments, metadata, blank lines, decimal commas, exact messages."""
    meta: dict[str, str] = {}
    stripped = [ln.strip() for ln in text.splitlines()]
    if "#" not in text and all(stripped):
        # the common case (no comment or blank lines): no per-line Python work beyond the strip
        texts, lines = stripped, list(range(1, len(stripped) + 1))
    else:
        texts, lines = [], []
        for no, line in enumerate(stripped, start=1):
            if not line:
                continue
            if line.startswith("#"):
                m = _META.match(line)
                if m:
                    meta[m.group(1).strip().upper()] = m.group(2).strip()
                continue
            texts.append(line)
            lines.append(no)
    if not texts:
        raise ReaderError(path, "no data lines (the file is empty or holds only comments)")
    start = _preamble_end(texts, None if delimiter is None else _forced(delimiter))
    if start:
        meta.update(_preamble_meta(path, texts[:start], lines[:start]))
        texts, lines = texts[start:], lines[start:]
    if delimiter is None:
        sample = texts[:50]
        delim: str | None = next((d for d in _DELIMITERS if all(d in ln for ln in sample)), None)
    else:
        delim = _forced(delimiter)
    trailing = delim is not None and all(ln.endswith(delim) for ln in texts) and all(
        len(ln) > 1 for ln in texts
    )
    first_cells = _split(texts[0], delim)
    if trailing:
        first_cells = first_cells[:-1]
    decimal = "."
    if delim != ",":
        probe = [c for ln in texts[1:21] for c in _split(ln, delim)]
        if probe and any("," in c for c in probe) and all(
            _DECIMAL_COMMA.match(c) or _is_number(c) for c in probe
        ):
            decimal = ","
    first = first_cells if decimal == "." else [c.replace(",", ".") for c in first_cells]
    header: list[str] | None = None
    if not all(_is_number(c) for c in first):
        header = first_cells
        texts, lines = texts[1:], lines[1:]
        if not texts:
            raise ReaderError(path, "a header row but no data lines")
    # Column counts per line: cheap string counts first; the exact split only to explain a mismatch.
    ragged: dict[int, int] = {}
    extra = 1 if trailing else 0
    if delim is None:
        counts = [len(ln.split()) for ln in texts]
    else:
        counts = [c + 1 - extra for c in map(str.count, texts, repeat(delim))]
    width = counts[0]
    if counts.count(width) != len(counts) or '"' in texts[0]:
        rows = [_split(ln, delim) for ln in texts]
        if trailing:
            rows = [r[:-1] for r in rows]
        width = len(rows[0])
        ragged = {r: len(row) for r, row in enumerate(rows) if len(row) != width}
        if ragged and not _keeps_ragged(ragged, len(rows), header, width):
            r = min(ragged)
            raise ReaderError(
                path,
                f"ragged rows: line {lines[r]} has {ragged[r]} column(s), line {lines[0]} has {width} "
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
    return Grid(path, header, texts, lines, delim, width=width, decimal=decimal, meta=meta, trailing=trailing,
                ragged=ragged)
