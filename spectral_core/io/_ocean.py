"""Ocean Insight (Ocean Optics) OceanView and SpectraSuite text files.

Layout: ``Key: value`` header lines (``Spectrometer: QEP01234``, ``Integration Time (sec): 1.0E-1`` or
``Integration Time (usec): 100000 (QE65000)``, ``XAxis mode: Wavelengths``, ``Number of Pixels in Spectrum:
1044``), a ``>>>>>Begin Spectral Data<<<<<`` (or ``>>>>>Begin Processed Spectral Data<<<<<``) line, then one
``x<TAB>intensity`` row a pixel (decimal point or comma, after the locale), ended by an optional
``>>>>>End ... Spectral Data<<<<<`` line.

The x column is a wavelength in nm unless ``XAxis mode`` says Raman shift; a wavelength axis is converted to
Raman shift (cm^-1) as 1e7/excitation - 1e7/wavelength, with the excitation from the ``excitation_nm`` option or
a laser/excitation wavelength header line, and refused when neither gives it.
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
    read_bytes,
    starts_with_number,
    wavelength_to_shift,
)
from spectral_core.spectrum import SpectralDataset

__all__ = ["is_ocean", "read_ocean"]

logger = logging.getLogger(__name__)

_BEGIN = re.compile(r"^\s*>{3,}\s*Begin\b.*Spectral Data\s*<{3,}\s*$", re.IGNORECASE)
_END = re.compile(r"^\s*>{3,}\s*End\b.*<{3,}\s*$", re.IGNORECASE)
_SNIFF = re.compile(rb">{3,}\s*Begin\b[^\n]*Spectral Data\s*<{3,}", re.IGNORECASE)
_EXCITATION = r"(laser|excitation).*(wavelength|nm)"
MAX_HEADER_LINES = 1000


def is_ocean(head: bytes) -> bool:
    """Whether the first bytes of a file hold the OceanView/SpectraSuite ``>>>>>Begin ... Spectral Data<<<<<``
    line."""
    return not starts_with_number(head) and b">>>" in head and _SNIFF.search(head) is not None


def read_ocean(
    path: str | Path, data: bytes | None = None, *, excitation_nm: float | None = None, encoding: str | None = None
) -> SpectralDataset:
    """Read one OceanView/SpectraSuite spectrum; the axis in Raman shift (cm^-1), increasing.

    Args:
        path: the file (named in errors).
        data: its bytes when already read.
        excitation_nm: laser wavelength (nm) for a wavelength axis; overrides the header's.
        encoding: forced text encoding.

    Raises:
        ReaderError: no begin line, a wavelength axis without a known excitation, a pixel axis, a row that is
            not two numbers (line named), or fewer rows than the header's pixel count (truncated file).
    """
    p = Path(path)
    text, enc = decode_text(read_bytes(p) if data is None else data, p, encoding)
    lines = text.splitlines()
    begin = next((i for i, ln in enumerate(lines[: MAX_HEADER_LINES + 1]) if _BEGIN.match(ln)), None)
    if begin is None:
        raise ReaderError(
            p,
            f"no '>>>>>Begin Spectral Data<<<<<' line in the first {MAX_HEADER_LINES} lines "
            "(expected an OceanView or SpectraSuite text file)",
        )
    header = bounded_header([tuple(ln.split(":", 1)) for ln in lines[:begin] if ":" in ln])  # type: ignore[misc]
    xs: list[float] = []
    ys: list[float] = []
    ended = False
    for no, line in enumerate(lines[begin + 1 :], start=begin + 2):
        if _END.match(line):
            ended = True
            break
        if not line.strip():
            continue
        cells = [c for c in re.split(r"[\t;]|\s+", line.strip()) if c]
        if len(cells) != 2:
            raise ReaderError(p, f"line {no}: {len(cells)} cell(s) ({quote(line)}) where x<TAB>intensity was expected")
        # cells are split on tabs, semicolons and blanks, so a comma inside one is a decimal comma
        xs.append(cell_float(cells[0], p, no, 1, decimal_comma=True))
        ys.append(cell_float(cells[1], p, no, 2, decimal_comma=True))
    expected = header_number(header, r"^number of pixels")
    if expected is not None and len(xs) != int(expected):
        raise ReaderError(
            p,
            f"{len(xs)} data row(s) after line {begin + 1} but the header says {int(expected)} pixels "
            f"({'truncated file' if len(xs) < expected else 'extra rows'})",
        )
    if len(xs) < 2:
        raise ReaderError(p, f"{len(xs)} data row(s) after line {begin + 1}; a spectrum needs 2 or more")
    x = np.asarray(xs, dtype=np.float64)
    mode = next((v for k, v in header.items() if k.lower().startswith("xaxis mode")), "Wavelengths")
    provenance: dict[str, Any] = {
        "source": str(p),
        "reader": "oceanview",
        "encoding": enc,
        "header": header,
        "x_axis_mode": mode,
        "end_line": ended,
    }
    ex_header = header_number(header, _EXCITATION)
    if "raman" in mode.lower():
        shift = x
    elif "wavelength" in mode.lower() or "nm" in mode.lower():
        ex = excitation_nm if excitation_nm is not None else ex_header
        if ex is None:
            raise ReaderError(
                p,
                "the x axis is a wavelength (nm) and no excitation wavelength is known: the header names no "
                "laser wavelength; pass excitation_nm= (--excitation-nm) to convert it to Raman shift",
            )
        if excitation_nm is not None and ex_header is not None and abs(excitation_nm - ex_header) > 1e-6:
            logger.warning("%s: excitation_nm=%g overrides the header's %g nm", p, excitation_nm, ex_header)
        shift = wavelength_to_shift(x, float(ex), p)
        provenance["excitation_nm"] = float(ex)
        provenance["converted_from"] = "wavelength (nm)"
    else:
        raise ReaderError(p, f"XAxis mode {quote(mode)}: only wavelengths (nm) or Raman shifts can be read")
    integration = header_number(header, r"^integration time")
    if integration is not None:
        key = next(k for k in header if k.lower().startswith("integration time"))
        scale = 1e-3 if "usec" in key.lower() or "(us" in key.lower() else (1.0 if "ms" in key.lower() else 1e3)
        provenance["integration_time_ms"] = integration * scale
    serial = next((v for k, v in header.items() if k.lower().startswith("spectrometer") and v), None)
    if serial is not None:
        provenance["serial"] = serial
    y = np.asarray(ys, dtype=np.float64)
    if shift[0] > shift[-1]:
        shift, y = shift[::-1].copy(), y[::-1]
    return make_dataset(p, X=y[None, :], axis=shift, provenance=provenance)
