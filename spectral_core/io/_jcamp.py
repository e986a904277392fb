"""JCAMP-DX (``.jdx``, ``.dx``) single spectra, JCAMP-DX 4.24/5.01.

Supported: ``##XYDATA=(X++(Y..Y))`` in AFFN form (plain numbers separated by blanks, commas or signs) with
``FIRSTX``/``LASTX``/``NPOINTS``/``XFACTOR``/``YFACTOR`` (each line's X value is checked against the
computed abscissa), and ``##XYPOINTS=(XY..XY)``. ``##XUNITS`` must be 1/CM (Raman shift); NANOMETERS or
MICROMETERS (absolute wavelength) are converted to Raman shift only with ``excitation_nm=``.

Refused with a clear :class:`ReaderError`: the compressed ASDF forms (SQZ, DIF, DUP characters), compound
files (``##BLOCKS``), peak tables, ``?`` missing values, a wrong point count.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError, ReaderError
from spectral_core.io._common import decode_text, quote, read_bytes
from spectral_core.spectrum import Spectrum

__all__ = ["is_jcamp", "jcamp_spectrum", "parse_jcamp", "read_jcamp"]

logger = logging.getLogger(__name__)

_LDR = re.compile(r"^##\s*([^=]*?)\s*=(.*)$")
_AFFN = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[\s,;]+")
_ASDF = set("@ABCDEFGHIabcdefghi%JKLMNOPQRjklmnopqrSTUVWXYZs")
_CM1 = {"1/CM", "CM-1", "CM^-1", "1/CENTIMETERS", "WAVENUMBERS", "WAVENUMBER", "RAMANSHIFT", "CM**-1"}
_NM = {"NANOMETERS": 1.0, "NM": 1.0, "MICROMETERS": 1000.0, "UM": 1000.0, "MICRONS": 1000.0}


def _label(raw: str) -> str:
    return re.sub(r"[\s\-/_]", "", raw).upper()


def is_jcamp(text_head: str) -> bool:
    """Whether the beginning of a text file looks like JCAMP-DX."""
    head = text_head.lstrip("\ufeff \t\r\n")
    return head.startswith("##") and bool(re.search(r"##\s*JCAMP[-_ ]?DX\s*=", head[:4000], re.IGNORECASE))


def parse_jcamp(path: Path, text: str) -> tuple[dict[str, str], dict[str, list[tuple[int, str]]]]:
    """Split JCAMP text into labelled data records; returns (scalar values, data lines with line numbers)."""
    ldrs: dict[str, str] = {}
    data: dict[str, list[tuple[int, str]]] = {}
    current: str | None = None
    ends = 0
    for no, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("$$", 1)[0].rstrip()
        if not line.strip():
            continue
        m = _LDR.match(line.lstrip())
        if m:
            key = _label(m.group(1))
            value = m.group(2).strip()
            if key == "END":
                ends += 1
                current = None
                continue
            if key in ldrs and key not in ("TITLE",):
                logger.debug("%s: label ##%s repeated at line %d; the last one wins", path, key, no)
            if key == "TITLE" and "TITLE" in ldrs:
                raise ReaderError(path, f"line {no}: a second ##TITLE (compound JCAMP-DX file, not supported)")
            ldrs[key] = value
            current = key
            if key in ("XYDATA", "XYPOINTS", "PEAKTABLE", "DATATABLE"):
                data[key] = []
            continue
        if current in data:
            data[current].append((no, line.strip()))
        elif current is not None:
            ldrs[current] = (ldrs[current] + " " + line.strip()).strip()
    if "TITLE" not in ldrs:
        raise ReaderError(path, "not a JCAMP-DX file (no ##TITLE= record)")
    if "BLOCKS" in ldrs or ends > 1:
        raise ReaderError(path, "a compound JCAMP-DX file with several blocks (only single spectra are supported)")
    return ldrs, data


def _number(ldrs: dict[str, str], key: str, path: Path, default: float | None = None) -> float:
    if key not in ldrs or ldrs[key] == "":
        if default is None:
            raise ReaderError(path, f"missing ##{key}= (needed to decode the data)")
        return default
    try:
        v = float(ldrs[key])
    except ValueError:
        raise ReaderError(path, f"##{key}={quote(ldrs[key])} is not a number") from None
    if not np.isfinite(v):
        raise ReaderError(path, f"##{key}={quote(ldrs[key])} is not finite")
    return v


def _numbers(line: str, no: int, path: Path) -> list[float]:
    tokens = _AFFN.findall(line)
    residue = _SEPARATORS.sub("", _AFFN.sub("", line))
    if residue:
        if "?" in residue:
            raise ReaderError(path, f"line {no}: '?' (missing value) in the data; a spectrum must be complete")
        if set(residue) & _ASDF:
            raise ReaderError(
                path,
                f"line {no}: compressed ASDF data (SQZ/DIF/DUP characters such as {residue[:8]!r}); "
                "only the AFFN form (plain numbers) is supported - re-export the file uncompressed",
            )
        raise ReaderError(path, f"line {no}: unexpected characters {residue[:20]!r} in the data")
    return [float(t) for t in tokens]


def _xydata(
    ldrs: dict[str, str], lines: list[tuple[int, str]], path: Path
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    form = re.sub(r"\s", "", ldrs["XYDATA"]).upper()
    if form not in ("(X++(Y..Y))", "(X++(R..R))", "(X++(I..I))"):
        raise ReaderError(path, f"##XYDATA={ldrs['XYDATA']} is not supported (only (X++(Y..Y)))")
    first_x = _number(ldrs, "FIRSTX", path)
    last_x = _number(ldrs, "LASTX", path)
    xf = _number(ldrs, "XFACTOR", path, 1.0)
    yf = _number(ldrs, "YFACTOR", path, 1.0)
    ys: list[float] = []
    starts: list[tuple[int, float, int]] = []
    for no, line in lines:
        vals = _numbers(line, no, path)
        if len(vals) < 2:
            raise ReaderError(path, f"line {no}: an X value with no Y values")
        starts.append((no, vals[0] * xf, len(ys)))
        ys.extend(vals[1:])
    n = len(ys)
    if n == 0:
        raise ReaderError(path, "##XYDATA holds no values")
    npoints = int(_number(ldrs, "NPOINTS", path, float(n)))
    if npoints != n:
        raise ReaderError(path, f"##NPOINTS={npoints} but the data hold {n} Y values")
    if n < 2:
        raise ReaderError(path, "a spectrum needs at least 2 points")
    x = np.linspace(first_x, last_x, n)
    delta = (last_x - first_x) / (n - 1)
    if "DELTAX" in ldrs:
        dx = _number(ldrs, "DELTAX", path)
        if abs(dx - delta) > 1e-3 * abs(delta) + 1e-12:
            raise ReaderError(path, f"##DELTAX={dx:g} disagrees with (LASTX-FIRSTX)/(NPOINTS-1)={delta:g}")
    for no, xv, k in starts:
        if abs(xv - x[k]) > 0.5 * abs(delta) + 1e-9 * abs(x[k]):
            raise ReaderError(
                path, f"line {no}: X check failed (line starts at {xv:g}, point {k} should be at {x[k]:g})"
            )
    return x, np.asarray(ys) * yf


def _xypoints(
    ldrs: dict[str, str], lines: list[tuple[int, str]], path: Path
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    form = re.sub(r"\s", "", ldrs["XYPOINTS"]).upper()
    if form not in ("(XY..XY)", "(XY...XY)"):
        raise ReaderError(path, f"##XYPOINTS={ldrs['XYPOINTS']} is not supported (only (XY..XY))")
    xf = _number(ldrs, "XFACTOR", path, 1.0)
    yf = _number(ldrs, "YFACTOR", path, 1.0)
    vals: list[float] = []
    for no, line in lines:
        vals.extend(_numbers(line, no, path))
    if len(vals) % 2:
        raise ReaderError(path, f"##XYPOINTS holds {len(vals)} numbers, not (x, y) pairs")
    xy = np.asarray(vals, dtype=np.float64).reshape(-1, 2)
    if "NPOINTS" in ldrs and int(_number(ldrs, "NPOINTS", path)) != xy.shape[0]:
        raise ReaderError(path, f"##NPOINTS={ldrs['NPOINTS']} but the data hold {xy.shape[0]} points")
    return xy[:, 0] * xf, xy[:, 1] * yf


def read_jcamp(
    path: str | Path, *, excitation_nm: float | None = None, encoding: str | None = None
) -> Spectrum:
    """Read one spectrum from a JCAMP-DX file; the axis is returned in cm^-1 (Raman shift), increasing.

    Args:
        excitation_nm: laser wavelength in nm, needed only when ``##XUNITS`` is a wavelength.
        encoding: forced text encoding (JCAMP-DX is ASCII; UTF-8/Latin-1 are accepted by default).

    Raises:
        ReaderError: the file name and what is wrong.
    """
    p = Path(path)
    text, _ = decode_text(read_bytes(p), p, encoding)
    return jcamp_spectrum(p, text, excitation_nm=excitation_nm)


def jcamp_spectrum(p: Path, text: str, *, excitation_nm: float | None = None) -> Spectrum:
    """The spectrum of JCAMP-DX ``text`` already decoded (``p`` names it in errors); see :func:`read_jcamp`."""
    ldrs, data = parse_jcamp(p, text)
    if "PEAKTABLE" in data:
        raise ReaderError(p, "holds a ##PEAK TABLE (a stick spectrum), not a continuous spectrum")
    if "XYDATA" in data:
        x, y = _xydata(ldrs, data["XYDATA"], p)
    elif "XYPOINTS" in data:
        x, y = _xypoints(ldrs, data["XYPOINTS"], p)
    else:
        raise ReaderError(p, "no ##XYDATA= or ##XYPOINTS= record")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ReaderError(p, f"{int(bad.sum())} non-finite Y value(s)")
    meta: dict[str, Any] = {"source": str(p), "reader": "jcamp", "title": ldrs.get("TITLE", "")}
    units = re.sub(r"\s", "", ldrs.get("XUNITS", "")).upper()
    if not units:
        logger.warning("%s: no ##XUNITS; assuming 1/CM (Raman shift)", p)
        meta["xunits_assumed"] = "1/CM"
    elif units in _NM:
        if excitation_nm is None:
            raise ReaderError(
                p,
                f"##XUNITS={ldrs['XUNITS']}: the axis is an absolute wavelength, not a Raman shift; "
                "pass excitation_nm= (laser wavelength in nm) to convert it to cm^-1",
            )
        if not excitation_nm > 0:
            raise ReaderError(p, f"excitation_nm must be positive, got {excitation_nm}")
        lam = x * _NM[units]
        if np.any(lam <= 0):
            raise ReaderError(p, "non-positive wavelengths on the axis")
        x = 1e7 / float(excitation_nm) - 1e7 / lam
        meta["converted_from"] = f"{ldrs['XUNITS']} with excitation {excitation_nm} nm"
    elif units not in _CM1:
        raise ReaderError(p, f"##XUNITS={ldrs['XUNITS']} is not a Raman shift (1/CM expected)")
    for key in ("YUNITS", "DATATYPE", "ORIGIN", "OWNER", "DATE", "SPECTROMETERDATASYSTEM", "SAMPLEDESCRIPTION"):
        if key in ldrs:
            meta[key.lower()] = ldrs[key]
    try:
        return Spectrum.from_unsorted(x, y, meta)
    except DataError as exc:
        raise ReaderError(p, str(exc)) from None
