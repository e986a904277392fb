"""Single-spectrum two-column text (csv/tsv/txt, as RRUFF and most vendor software export) and the csv writer.

Reading: delimiter sniffed (semicolon, tab, comma, whitespace), ``#``/``##`` comment lines anywhere (RRUFF's
``##NAMES=...`` lines become metadata), one optional non-numeric header row, an axis running high-to-low is
reversed together with its intensities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from spectral_core.atomic import write_text_atomic
from spectral_core.errors import DataError, ReaderError
from spectral_core.io._common import decode_text, read_bytes
from spectral_core.io._grid import Grid, parse_grid
from spectral_core.spectrum import SpectralDataset, Spectrum

__all__ = ["read_text_spectrum", "spectrum_from_grid", "write_csv"]

logger = logging.getLogger(__name__)


def spectrum_from_grid(grid: Grid, *, encoding: str = "utf-8") -> Spectrum:
    """The spectrum of a two-column grid (wavenumber in cm^-1, intensity)."""
    p = grid.path
    if grid.n_columns != 2:
        raise ReaderError(
            p, f"{grid.n_columns} column(s): a single spectrum needs exactly 2 (wavenumber, intensity)"
        )
    xy = grid.numeric()
    meta: dict[str, Any] = {"source": str(p), "reader": "text", "encoding": encoding}
    if grid.header is not None:
        meta["columns"] = grid.header
    if grid.meta:
        meta["header"] = dict(grid.meta)
    try:
        return Spectrum.from_unsorted(xy[:, 0], xy[:, 1], meta)
    except DataError as exc:
        raise ReaderError(p, str(exc)) from None


def read_text_spectrum(
    path: str | Path, *, delimiter: str | None = None, encoding: str | None = None
) -> Spectrum:
    """Read one spectrum from a two-column text file (wavenumber in cm^-1, intensity).

    Args:
        delimiter: force the separator; sniffed when None.
        encoding: force the text encoding; UTF-8 then Latin-1 (textual content only) when None.

    Raises:
        ReaderError: empty, binary or undecodable file, ragged rows, non-numeric cells (line named), NaN/inf,
            non-monotonic or duplicate wavenumbers, or not exactly two columns.
    """
    p = Path(path)
    text, enc = decode_text(read_bytes(p), p, encoding)
    return spectrum_from_grid(parse_grid(p, text, delimiter=delimiter), encoding=enc)


def _check_name(name: str, what: str) -> str:
    if any(ch in name for ch in ",\"'\n\r#") or name != name.strip() or not name:
        raise DataError(f"{what} {name!r} cannot be written to csv (empty, or holds a comma, quote, # or newline)")
    return name


def write_csv(data: Spectrum | SpectralDataset, path: str | Path) -> Path:
    """Write a spectrum or a dataset as comma-separated text, atomically; :func:`read_dataset` reads it back.

    * a :class:`Spectrum`: two columns ``wavenumber_cm-1,intensity`` under a header row.
    * a :class:`SpectralDataset`: a table with one spectrum per row; the header row holds the wavenumbers
      (cm^-1), preceded by ``label`` and ``group`` columns when the dataset has them, and a ``##CLASSES=``
      comment line keeps the class order (and classes without spectra).

    Axis values are written with 17 significant digits (exact float64) and intensities with 9 (exact float32),
    so a round trip reproduces the data bit for bit.
    """
    p = Path(path)
    if isinstance(data, Spectrum):
        lines = ["wavenumber_cm-1,intensity"]
        lines += [f"{x:.17g},{v:.9g}" for x, v in zip(data.axis.tolist(), data.intensities.tolist(), strict=True)]
        return write_text_atomic(p, "\n".join(lines) + "\n")
    lead: list[str] = []
    cols: list[list[str]] = []
    out: list[str] = []
    if data.y is not None:
        names = [_check_name(c, "class name") for c in data.classes]
        out.append("##CLASSES=" + json.dumps(names))
        lead.append("label")
        cols.append([names[int(i)] for i in data.y])
    if data.groups is not None:
        lead.append("group")
        cols.append([_check_name(str(g), "group") for g in data.groups])
    out.append(",".join([*lead, *(f"{x:.17g}" for x in data.axis.tolist())]))
    for i, row in enumerate(data.X.tolist()):
        out.append(",".join([*(c[i] for c in cols), *(f"{v:.9g}" for v in row)]))
    return write_text_atomic(p, "\n".join(out) + "\n")
