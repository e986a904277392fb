"""Tables of spectra in delimited text, in both orientations.

* rows layout: one spectrum per row. The axis is the header row (wavenumbers, cm^-1) or the ``axis=``
  option; optional ``label``/``group`` columns. A header of column indices (``0,1,...,N-1``, as the melanoma
  CSVs have) is refused as an axis: pass ``axis=START:STOP:POINTS``.
* columns layout: the first column is the axis (``WN``, ``wavenumber``, ``Raman shift`` ...), one column per
  spectrum, as the microplastics ``;``-separated CSVs. ``label_from_column=REGEX`` takes the class from each
  column name (the first group of the match, e.g. ``^(\\S+)`` gives ``PS`` for ``PS V1``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._common import (
    bad_spectra_policy,
    classes_and_indices,
    decode_text,
    make_dataset,
    parse_axis_option,
    parse_class_names,
    parse_labels_option,
    quote,
    quote_list,
    read_bytes,
)
from spectral_core.io._grid import Grid, parse_grid
from spectral_core.spectrum import SpectralDataset

__all__ = ["AXIS_COLUMN", "read_table", "table_from_grid"]

logger = logging.getLogger(__name__)

Layout = Literal["auto", "rows", "columns"]
AXIS_COLUMN = re.compile(
    r"^\s*(wn|x|wave\s*_?numbers?|raman\s*_?shift|shift|cm-1|cm\^-1|1/cm)\b.*$", re.IGNORECASE
)
_LABEL_NAMES = ("label", "class", "labels", "classes")
_GROUP_NAMES = ("group", "groups", "sample", "sample_id")


def _column_index(grid: Grid, spec: int | str, what: str) -> int:
    if isinstance(spec, int) or (isinstance(spec, str) and spec.lstrip("-").isdigit()):
        i = int(spec)
        if i < 0:
            i += grid.n_columns
        if not 0 <= i < grid.n_columns:
            raise ReaderError(grid.path, f"{what} {spec} is outside the {grid.n_columns} columns")
        return i
    if grid.header is None or spec not in grid.header:
        raise ReaderError(grid.path, f"{what} {quote(str(spec))} is not a column name (header: {quote_list(grid.header or [])})")
    return grid.header.index(spec)


def _monotonic(a: NDArray[np.float64]) -> bool:
    d = np.diff(a)
    return a.size >= 3 and bool(np.all(d > 0) or np.all(d < 0))


def _is_index_header(a: NDArray[np.float64]) -> bool:
    return bool(np.array_equal(a, np.arange(a.size)) or np.array_equal(a, np.arange(1, a.size + 1)))


def _sorted_axis(
    grid: Grid, axis: NDArray[np.float64], X: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if axis.size >= 2 and axis[0] > axis[-1]:
        return axis[::-1].copy(), X[:, ::-1]
    return axis, X


def _rows_layout(
    grid: Grid,
    *,
    axis: Any,
    label_column: int | str | None,
    group_column: int | str | None,
    labels: Any,
    class_names: Any,
) -> SpectralDataset:
    p = grid.path
    lab_i = gr_i = None
    if label_column is not None:
        lab_i = _column_index(grid, label_column, "label_column")
    elif grid.header is not None:
        lab_i = next((i for i, h in enumerate(grid.header) if h.lower() in _LABEL_NAMES), None)
    if group_column is not None:
        gr_i = _column_index(grid, group_column, "group_column")
    elif grid.header is not None:
        gr_i = next((i for i, h in enumerate(grid.header) if h.lower() in _GROUP_NAMES), None)
    num_cols = [i for i in range(grid.n_columns) if i not in (lab_i, gr_i)]
    header_axis: NDArray[np.float64] | None = None
    header_text = None
    if grid.header is not None:
        cells = [grid.header[i] for i in num_cols]
        try:
            header_axis = np.array([float(c.replace(",", ".") if grid.decimal == "," else c) for c in cells])
        except ValueError:
            header_text = cells
    partial = bad_spectra_policy() is not None  # bad rows are named (or left out) one by one
    values = grid.numeric(num_cols, nonfinite_ok=partial, ragged_ok=partial)
    provenance: dict[str, Any] = {"layout": "rows"}
    given = None if axis is None else parse_axis_option(axis, p)
    if header_axis is None and header_text is None and values.shape[0] > 1 and _monotonic(values[0]) and (
        given is None
        or _is_index_header(values[0])
        or (given.shape == values[0].shape and np.allclose(given, values[0], rtol=1e-6))
    ):
        # A numeric first row running monotonically is a header of wavenumbers (or of column indices, as in
        # the melanoma CSVs), not a spectrum. With an explicit axis only those two cases count as a header.
        header_axis, values = values[0], values[1:]
        provenance["axis_from"] = f"line {grid.lines[0]}"
        grid = grid.without_first_row()
    if given is not None:
        ax = given
        if header_axis is not None and not _is_index_header(header_axis) and (
            header_axis.shape != ax.shape or not np.allclose(header_axis, ax, rtol=1e-6)
        ):
            logger.warning("%s: the header row holds wavenumbers that differ from the given axis; using axis=", p)
            provenance["header_axis_ignored"] = True
    elif header_axis is not None:
        if _is_index_header(header_axis):
            raise ReaderError(
                p,
                f"the header row holds column indices {int(header_axis[0])}..{int(header_axis[-1])}, "
                "not wavenumbers: give the axis with axis=START:STOP:POINTS",
            )
        ax = header_axis
    else:
        why = "the header row holds names" if header_text is not None else "there is no header row of wavenumbers"
        raise ReaderError(p, f"no spectral axis: {why}; give it with axis=START:STOP:POINTS or a .npy file")
    if ax.shape != (values.shape[1],):
        raise ReaderError(p, f"the axis has {ax.size} points but the rows hold {values.shape[1]} values")
    bad_rows = _row_problems(grid, values, num_cols)
    ax, values = _sorted_axis(grid, ax, values)
    n = values.shape[0]
    y = None
    classes: tuple[str, ...] = ()
    if labels is not None:
        y, classes = parse_labels_option(labels, n, p, class_names)
    elif lab_i is not None:
        names = class_names
        if names is None and "CLASSES" in grid.meta:
            try:
                names = json.loads(grid.meta["CLASSES"])
            except ValueError:
                raise ReaderError(p, f"##CLASSES= is not a JSON list: {grid.meta['CLASSES'][:60]!r}") from None
        cells = [grid.cell(r, lab_i) for r in range(n)]
        good = next((cells[r] for r in range(n) if r not in grid.ragged), "")
        raw = np.array([good if r in grid.ragged else c for r, c in enumerate(cells)])  # ragged rows are left out
        if raw.dtype.kind in "US" and names is None and all(s.lstrip("-").isdigit() for s in raw.tolist()):
            raw = raw.astype(np.int64)
        y, classes = classes_and_indices(raw, n, p, names, what=f"label column {lab_i + 1}")
    groups = None if gr_i is None else np.array([grid.cell(r, gr_i) for r in range(n)], dtype=str)
    provenance.update({"source": str(p), "reader": "table"})
    return make_dataset(p, X=values, axis=ax, y=y, classes=classes, groups=groups, provenance=provenance,
                        bad_reasons=bad_rows)


def _row_problems(grid: Grid, values: NDArray[np.float64], num_cols: list[int]) -> dict[int, str]:
    """Why each bad row (spectrum) of a rows-layout table is bad: its length, or its first NaN/inf cell."""
    why: dict[int, str] = {}
    for r in np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist():
        if r in grid.ragged:
            why[r] = grid.ragged_message(r)
            continue
        bad = np.flatnonzero(~np.isfinite(values[r]))
        col = num_cols[int(bad[0])]
        why[r] = (f"line {grid.lines[r]}, column {col + 1}: non-finite value {quote(grid.cell(r, col))} "
                  f"({bad.size} NaN/inf cell(s) in the row)")
    return why


def _columns_layout(
    grid: Grid, *, axis: Any, label_from_column: str | None, labels: Any, class_names: Any
) -> SpectralDataset:
    p = grid.path
    values = grid.numeric(nonfinite_ok=bad_spectra_policy() is not None)
    if axis is not None:
        ax = parse_axis_option(axis, p)
        spec_cols = list(range(grid.n_columns))
    else:
        ax = values[:, 0]
        spec_cols = list(range(1, grid.n_columns))
    X = values[:, spec_cols].T
    why: dict[int, str] = {}
    for k in np.flatnonzero(~np.isfinite(X).all(axis=1)).tolist():
        r = int(np.flatnonzero(~np.isfinite(X[k]))[0])
        col = spec_cols[k]
        name = f" ({quote(grid.header[col])})" if grid.header is not None else ""
        why[k] = (f"column {col + 1}{name}, line {grid.lines[r]}: non-finite value {quote(grid.cell(r, col))} "
                  f"({int((~np.isfinite(X[k])).sum())} NaN/inf cell(s) in the column)")
    if ax.shape != (X.shape[1],):
        raise ReaderError(p, f"the axis has {ax.size} points but the columns hold {X.shape[1]} values")
    ax, X = _sorted_axis(grid, ax, X)
    names_in_file = [grid.header[i] for i in spec_cols] if grid.header is not None else None
    n = X.shape[0]
    y = None
    classes: tuple[str, ...] = ()
    if labels is not None:
        y, classes = parse_labels_option(labels, n, p, class_names)
    elif label_from_column is not None:
        if names_in_file is None:
            raise ReaderError(p, "label_from_column needs a header row of column names")
        try:
            rx = re.compile(label_from_column)
        except re.error as exc:
            raise ReaderError(p, f"label_from_column {label_from_column!r} is not a valid regex: {exc}") from None
        found: list[str] = []
        for name in names_in_file:
            m = rx.search(name)
            if m is None:
                raise ReaderError(p, f"column {quote(name)} does not match label_from_column {quote(label_from_column)}")
            found.append(m.group(1) if rx.groups else m.group(0))
        order = parse_class_names(class_names, p) if class_names is not None else list(dict.fromkeys(found))
        y, classes = classes_and_indices(np.array(found), n, p, order, what="column-name labels")
    provenance: dict[str, Any] = {"source": str(p), "reader": "table", "layout": "columns"}
    if names_in_file is not None:
        provenance["columns"] = names_in_file
    return make_dataset(p, X=X, axis=ax, y=y, classes=classes, provenance=provenance, bad_reasons=why)


def choose_layout(
    grid: Grid, layout: Layout, label_from_column: str | None, axis_given: bool = False
) -> Literal["rows", "columns"]:
    """The table orientation: explicit, or columns when the first header cell names an axis (``WN`` ...) or,
    without a header or a given axis, when the first column runs monotonically and the first row does not."""
    if layout != "auto":
        return layout
    if label_from_column is not None:
        return "columns"
    if grid.header is not None:
        return "columns" if AXIS_COLUMN.match(grid.header[0]) else "rows"
    if not axis_given and len(grid.lines) > 2 and grid.n_columns > 2:
        first_col = np.array([_safe_float(c) for c in grid.first_column(200)])
        first_row = np.array([_safe_float(c) for c in grid.head_rows(1)[0]])
        if _monotonic(first_col) and not _monotonic(first_row):
            return "columns"
    return "rows"


def _safe_float(cell: str) -> float:
    try:
        return float(cell.replace(",", "."))
    except ValueError:
        return float("nan")


def table_from_grid(
    grid: Grid,
    *,
    axis: Any = None,
    layout: Layout = "auto",
    label_column: int | str | None = None,
    group_column: int | str | None = None,
    label_from_column: str | None = None,
    labels: Any = None,
    class_names: Any = None,
) -> SpectralDataset:
    """A dataset from a parsed grid; see :func:`read_table`."""
    if layout not in ("auto", "rows", "columns"):
        raise ReaderError(grid.path, f"layout must be auto, rows or columns, got {layout!r}")
    if choose_layout(grid, layout, label_from_column, axis is not None) == "columns":
        return _columns_layout(
            grid, axis=axis, label_from_column=label_from_column, labels=labels, class_names=class_names
        )
    return _rows_layout(
        grid, axis=axis, label_column=label_column, group_column=group_column, labels=labels,
        class_names=class_names,
    )


def read_table(
    path: str | Path,
    *,
    axis: Any = None,
    layout: Layout = "auto",
    label_column: int | str | None = None,
    group_column: int | str | None = None,
    label_from_column: str | None = None,
    labels: Any = None,
    class_names: Any = None,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> SpectralDataset:
    """Read a table of spectra (delimited text).

    Args:
        axis: the axis (cm^-1) when the file's header does not give it: ``"START:STOP:POINTS"``, a .npy file
            or an array.
        layout: ``"rows"`` (one spectrum per row), ``"columns"`` (first column the axis, one spectrum per
            column) or ``"auto"`` (columns when the first header cell is ``WN``/``wavenumber``/...).
        label_column: rows layout: name or 0-based index of the class column (a column named ``label`` or
            ``class`` is used by default).
        group_column: rows layout: name or index of a group id column (``group``/``sample`` by default).
        label_from_column: columns layout: regex applied to each column name; its first group is the class.
        labels: labels given separately (file or array), one per spectrum.
        class_names: class order (a list or ``"a,b,c"``); default sorted label values (rows layout) or order
            of first appearance (column names).
        delimiter, encoding: forced instead of sniffed.

    Raises:
        ReaderError: with the file name and the reason (ragged rows, non-numeric cell at line N, NaN/inf,
            bad axis, header of indices without ``axis=``, labels that do not fit).
    """
    p = Path(path)
    text, enc = decode_text(read_bytes(p), p, encoding)
    grid = parse_grid(p, text, delimiter=delimiter)
    ds = table_from_grid(
        grid, axis=axis, layout=layout, label_column=label_column, group_column=group_column,
        label_from_column=label_from_column, labels=labels, class_names=class_names,
    )
    ds.provenance["encoding"] = enc
    return ds
