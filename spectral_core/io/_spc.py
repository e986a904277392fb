"""Galactic / Thermo GRAMS ``.spc`` files (the "new" 0x4B little-endian and 0x4C big-endian layouts).

Written from the published SPC layout (Galactic Industries, "SPC file format", 1996): a 512-byte main header,
an optional global X array (``TXVALS``), then one subfile (a 32-byte subheader and its Y values, preceded by its
own X values with ``TXYXYS``) per spectrum; ``TMULTI`` marks several subfiles. Y values are float32 when the
exponent is -128 (0x80), otherwise int32 (int16 with ``TSPREC``) scaled by ``2**(exp - 32)`` (``2**(exp - 16)``).

The pre-1996 0x4D layout is refused with a clear message. Libraries tried: spc-io 0.2.1 (MIT, 2025) reads the
test files of tests/spectral_core/test_sc_binary_formats.py identically, but a truncated file gives only
"Buffer size too small (188 instead of at least 200 bytes)", naming neither the file nor the field;
spc-spectra 0.4.0 (2018) does not install on Python 3.11. The layout is short, so it is read here with bounded
reads and no optional dependency.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._binary import ByteView, build_dataset, load_binary, raman_shift
from spectral_core.spectrum import SpectralDataset

__all__ = ["SPC_VERSIONS", "is_spc", "read_spc"]

logger = logging.getLogger(__name__)

SPC_VERSIONS = {0x4B: "<", 0x4C: ">"}
_OLD_VERSION = 0x4D
_HEADER = 512
_SUBHEADER = 32
_LOG_HEADER = 64
_MAX_LOG_TEXT = 64 * 1024

TSPREC, TCGRAM, TMULTI, TRANDM, TORDRD, TALABS, TXYXYS, TXVALS = (1 << i for i in range(8))
_FLOAT_EXP = -128

# fxtype codes (the published table); the ones this reader accepts as a Raman shift axis
_X_CM1 = {1: "wavenumber (cm^-1)", 13: "Raman shift (cm^-1)"}
_X_NM = {2: ("micrometers", 1000.0), 3: ("nanometers", 1.0)}
_X_NAMES = {
    0: "arbitrary", 4: "seconds", 5: "minutes", 6: "Hz", 7: "kHz", 8: "MHz", 9: "mass (m/z)", 10: "ppm",
    11: "days", 12: "years", 14: "eV", 15: "XYZ text labels", 16: "diode number", 17: "channel",
    18: "degrees", 19: "degrees F", 20: "degrees C", 21: "kelvin", 22: "data points", 23: "ms", 24: "us",
    25: "ns", 26: "GHz", 27: "cm", 28: "m", 29: "mm", 30: "hours",
}
_LASER_KEY = re.compile(r"(laser|excitation)[^=:]*?(wave\s*length|nm|\b)", re.IGNORECASE)


def is_spc(head: bytes) -> bool:
    """Whether ``head`` (the first bytes) looks like an SPC main header: version byte 0x4B/0x4C/0x4D and
    binary content (a text file never holds NUL bytes)."""
    return len(head) >= 32 and head[1] in (*SPC_VERSIONS, _OLD_VERSION) and b"\x00" in head[:_HEADER]


def _log_text(v: ByteView, e: str, logoff: int) -> dict[str, str]:
    """``key=value`` lines of the log block's text part (bounded to 64 KiB), or {} when there is none."""
    if logoff <= 0:
        return {}
    _sizd, _sizm, txto = v.unpack(e + "III", logoff, "the log block header")
    start = logoff + txto
    v.need(start, 1, "the log text")
    raw = v.data[start : start + _MAX_LOG_TEXT].split(b"\x00", 1)[0].decode("latin-1")
    out: dict[str, str] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _excitation_from_log(log: dict[str, str]) -> float | None:
    for key, value in log.items():
        if _LASER_KEY.search(key):
            m = re.search(r"[-+]?\d+(\.\d*)?", value)
            if m:
                return float(m.group(0))
    return None


def _y_values(v: ByteView, e: str, exp: int, flags: int, *, n: int, pos: int, what: str) -> tuple[NDArray[Any], int]:
    if exp == _FLOAT_EXP:
        return v.array(e + "f4", n, pos, what).astype(np.float64), pos + 4 * n
    if flags & TSPREC:
        return v.array(e + "i2", n, pos, what).astype(np.float64) * 2.0 ** (exp - 16), pos + 2 * n
    return v.array(e + "i4", n, pos, what).astype(np.float64) * 2.0 ** (exp - 32), pos + 4 * n


def _date(d: int) -> str | None:
    if d == 0:
        return None
    year, month, day, hour, minute = d >> 20, (d >> 16) & 0xF, (d >> 11) & 0x1F, (d >> 6) & 0x1F, d & 0x3F
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}"


def read_spc(path: str | Path, *, excitation_nm: float | None = None) -> SpectralDataset:
    """Read every subfile of an SPC file as one spectrum; the axis in cm^-1, increasing.

    Args:
        excitation_nm: laser wavelength in nm, used when the X axis is a wavelength (fxtype nanometers or
            micrometers) and overriding a laser wavelength found in the log block.

    Returns:
        A dataset with one row per subfile; per-subfile z (``subtime``) and w (``subwlevel``) values go to
        ``provenance["spectrum_metadata"]``.

    Raises:
        ReaderError: the file name, the byte offset and what was expected there.
    """
    p = Path(path)
    v = load_binary(p, "SPC")
    v.need(0, _HEADER, "the 512-byte SPC main header")
    flags, version = v.data[0], v.data[1]
    if version == _OLD_VERSION:
        raise ReaderError(p, "old-format SPC (version byte 0x4D, before 1996) is not supported; re-save it in GRAMS")
    if version not in SPC_VERSIONS:
        raise ReaderError(
            p, f"not an SPC file: byte 1 (version) is 0x{version:02x}, expected 0x4b or 0x4c (new-format SPC)"
        )
    e = SPC_VERSIONS[version]
    fexp = v.one("b", 3, "fexp")
    fnpts, ffirst, flast, fnsub = v.unpack(e + "IddI", 4, "fnpts, ffirst, flast, fnsub")
    fxtype, fytype, fztype = v.data[28], v.data[29], v.data[30]
    multi = bool(flags & TMULTI)
    n_sub = fnsub if multi else 1
    if n_sub < 1:
        raise ReaderError(p, "SPC header at byte 24: fnsub is 0 in a multi-subfile (TMULTI) file; no spectra")
    if not flags & TXYXYS and fnpts < 2:
        raise ReaderError(p, f"SPC header at byte 4: fnpts is {fnpts}, expected at least 2 points")
    if not flags & TXYXYS and 2 * fnpts > len(v):  # bound the axis before building it: >= 2 bytes a point
        raise ReaderError(p, f"SPC header at byte 4: fnpts {fnpts} points cannot fit in a file of {len(v)} bytes")
    meta: dict[str, Any] = {
        "format": f"SPC 0x{version:02x}",
        "comment": v.text(88, 130, "fcmnt"),
        "source_instrument": v.text(45, 9, "fsource"),
        "resolution": v.text(36, 9, "fres"),
        "x_type": _X_CM1.get(fxtype) or _X_NM.get(fxtype, (_X_NAMES.get(fxtype, f"code {fxtype}"),))[0],
        "y_type": int(fytype),
        "z_type": int(fztype),
    }
    date = _date(v.one(e + "I", 32, "fdate"))
    if date:
        meta["date"] = date
    log = _log_text(v, e, v.one(e + "I", 248, "flogoff"))
    if log:
        meta["log"] = log
    pos = _HEADER
    x_global: NDArray[np.float64] | None = None
    if flags & TXYXYS:
        pass  # every subfile carries its own X values
    elif flags & TXVALS:
        x_global = v.array(e + "f4", fnpts, pos, f"the global X array ({fnpts} float32)").astype(np.float64)
        pos += 4 * fnpts
    else:
        x_global = np.linspace(ffirst, flast, fnpts)
    rows: list[NDArray[np.float64]] = []
    per: list[dict[str, Any]] = []
    x_first: NDArray[np.float64] | None = None
    for i in range(n_sub):
        what = f"subfile {i + 1} of {n_sub}"
        _flags, subexp, subindx, subtime, _next, _noise, subnpts, _scan, subw = v.unpack(
            e + "BbHfffIIf", pos, f"the 32-byte subheader of {what}"
        )
        pos += _SUBHEADER
        exp = subexp if multi else fexp
        if flags & TXYXYS:
            if subnpts < 2:
                raise ReaderError(p, f"{what}: subheader at byte {pos - _SUBHEADER} gives {subnpts} points")
            # X values are 4 bytes each even in a 16-bit (TSPREC) file: float32, or int32 scaled like Y
            x, pos = _y_values(v, e, exp, flags & ~TSPREC, n=subnpts, pos=pos, what=f"the X values of {what}")
            if x_first is None:
                x_first = x
            elif x.shape != x_first.shape or not np.allclose(x, x_first, rtol=0, atol=1e-6):
                raise ReaderError(
                    p, f"{what} has its own X axis that differs from subfile 1; read it with resample= per subfile"
                )
            n = subnpts
        else:
            n = fnpts
        y, pos = _y_values(v, e, exp, flags, n=n, pos=pos, what=f"the Y values of {what} ({n} points)")
        rows.append(y)
        per.append({"subfile": i, "z": float(subtime), "w": float(subw), "index": int(subindx)})
    axis = x_global if x_global is not None else x_first
    if axis is None:  # unreachable: n_sub >= 1 fills x_first
        raise ReaderError(p, "no X axis")
    if fxtype in _X_NM:
        unit, scale = _X_NM[fxtype]
        laser = excitation_nm if excitation_nm is not None else _excitation_from_log(log)
        source = "excitation_nm=" if excitation_nm is not None else "the log block"
        axis = raman_shift(axis * scale, laser, p, source)
        meta["converted_from"] = f"{unit} with excitation {laser} nm (from {source})"
    elif fxtype not in _X_CM1:
        if fxtype != 0:
            raise ReaderError(p, f"SPC header at byte 28: X units are {meta['x_type']}, expected cm^-1 or nm")
        logger.warning("%s: SPC X units are 'arbitrary'; taking them as cm^-1", p)
        meta["x_units_assumed"] = "cm^-1"
    return build_dataset(p, np.stack(rows), axis, reader="spc", metadata=meta, spectrum_metadata=per)
