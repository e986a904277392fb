"""Renishaw WiRE ``.wdf`` files: single spectra, series and maps (every spectrum with its stage coordinates).

A WDF file is a chain of blocks, each a 16-byte header (4-character name, uint32 uid, uint64 size including the
header) and a body. Read here, following the layout documented by Renishaw's own header and by the open readers
(renishawWiRE, Gwyddion's renishaw module, Henderson's Renishaw File Reader):

* ``WDF1`` (512 bytes): points per spectrum (uint32 at 0x3C), capacity and count (uint64 at 0x40, 0x48),
  list lengths (0x54, 0x58), origin-list count (0x5C), application name (0x60), scan and measurement type
  (0x80, 0x84: 1 single, 2 series, 3 map), spectral units (0x98), laser wavenumber (float32 cm^-1 at 0x9C),
  user (0xD0) and title (0xF0).
* ``DATA``: ``count x points`` float32 intensities; ``XLST``: axis type, units (1 Raman shift, 2 absolute
  wavenumber, 3 nm) and the axis values; ``ORGN``: per-spectrum origin lists (X, Y, Z stage position in um,
  time, ...), each a type/units/label header and ``capacity`` float64 values; ``WMAP``: the map grid.

renishawWiRE 0.1.16 (MIT, last release 2023) was tried: it reads the test files of
tests/spectral_core/test_sc_binary_formats.py identically (spectra, axis, X/Y origins, laser), but a truncated
file ends in a bare numpy "cannot reshape array of size 43 into shape (6,40)" that names neither file nor
block, and its file handle stays open when parsing fails. The layout is a few fixed offsets, so it is read here
with bounded reads and no optional dependency.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._binary import ByteView, build_dataset, load_binary, raman_shift
from spectral_core.spectrum import SpectralDataset

__all__ = ["WDF_MAGIC", "is_wdf", "read_wdf"]

logger = logging.getLogger(__name__)

WDF_MAGIC = b"WDF1"
_BLOCK_HEADER = 16
_FILE_HEADER = 512
_MEASUREMENT = {0: "unspecified", 1: "single", 2: "series", 3: "map"}
_UNITS = {0: "arbitrary", 1: "Raman shift (cm^-1)", 2: "wavenumber (cm^-1)", 3: "nm", 5: "um", 8: "mm", 9: "m",
          12: "s", 13: "ms", 14: "h", 16: "pixels", 24: "file time"}
_ORIGIN_TYPES = {3: "x", 4: "y", 5: "z", 6: "r", 7: "theta", 8: "phi", 9: "temperature", 10: "pressure",
                 11: "time", 13: "polarization", 18: "elapsed_time"}
_SKIPPED_ORIGINS = {16, 17}  # checksum, flags


def is_wdf(head: bytes) -> bool:
    """Whether ``head`` starts with the WDF1 block (name and its 512-byte size)."""
    return head[:4] == WDF_MAGIC and len(head) >= 16 and int.from_bytes(head[8:16], "little") == _FILE_HEADER


def _blocks(v: ByteView) -> dict[str, tuple[int, int]]:
    """Name -> (offset, size) of every block, the first of each name; a block running past the end is an error."""
    out: dict[str, tuple[int, int]] = {}
    pos = 0
    while pos + _BLOCK_HEADER <= len(v):
        name_raw, _uid, size = v.unpack("<4sIQ", pos, "a block header")
        name = name_raw.decode("latin-1")
        if size < _BLOCK_HEADER:
            raise ReaderError(v.path, f"WDF block {name!r} at byte {pos} declares size {size}, less than its header")
        v.need(pos, size, f"block {name!r}")
        out.setdefault(name, (pos, size))
        pos += size
    if pos < len(v):
        v.need(pos, _BLOCK_HEADER, "a block header")
    return out


def _origins(v: ByteView, at: int, capacity: int, count: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    n_lists = v.one("<I", at + 16, "the ORGN list count")
    per: list[dict[str, Any]] = [{} for _ in range(count)]
    units: dict[str, str] = {}
    pos = at + 20
    for i in range(n_lists):
        kind, unit, label_raw = v.unpack("<II16s", pos, f"origin list {i + 1} header")
        values = v.array("<f8", count, pos + 24, f"origin list {i + 1} values ({count} float64)")
        pos += 24 + 8 * capacity
        code = kind & 0x7FFFFFFF
        if code in _SKIPPED_ORIGINS:
            continue
        label = label_raw.split(b"\x00", 1)[0].decode("latin-1").strip()
        key = _ORIGIN_TYPES.get(code) or label or f"origin_{code}"
        units[key] = _UNITS.get(unit, f"code {unit}")
        for k in range(count):
            per[k][key] = float(values[k])
    return per, units


def read_wdf(path: str | Path, *, excitation_nm: float | None = None) -> SpectralDataset:
    """Read every spectrum of a WDF file (single, series or map); the axis in cm^-1, increasing.

    Args:
        excitation_nm: laser wavelength in nm, used for a wavelength or absolute-wavenumber axis instead of the
            laser wavenumber the file records.

    Returns:
        A dataset with ``count`` spectra; each spectrum's origin values (x, y, z in um, time, ...) in
        ``provenance["spectrum_metadata"]``, their units in ``provenance["coordinate_units"]``, a map's grid
        (columns, rows) in ``provenance["map_shape"]``.

    Raises:
        ReaderError: the file name, the byte offset and what was expected there.
    """
    p = Path(path)
    v = load_binary(p, "WDF")
    v.need(0, _FILE_HEADER, "the 512-byte WDF1 file header")
    if not is_wdf(v.data[:16]):
        raise ReaderError(p, f"not a WDF file: bytes 0-3 are {v.data[:4]!r}, expected b'WDF1' with block size 512")
    npoints, capacity, count = v.unpack("<IQQ", 0x3C, "points, capacity, count")
    _acc, _ylen, xlen, _norigins = v.unpack("<IIII", 0x50, "list lengths")
    scan_type, mtype = v.unpack("<II", 0x80, "scan and measurement type")
    laser_wn = float(v.one("<f", 0x9C, "laser wavenumber"))
    if npoints < 2 or count < 1 or count > capacity:
        raise ReaderError(p, f"WDF1 header at byte 0x3C: {npoints} points, count {count}, capacity {capacity}; "
                             "expected at least 2 points and 1 <= count <= capacity")
    meta: dict[str, Any] = {
        "format": "WDF",
        "application": v.text(0x60, 24, "application name"),
        "measurement": _MEASUREMENT.get(mtype, f"code {mtype}"),
        "scan_type": int(scan_type),
        "user": v.text(0xD0, 32, "user name"),
        "title": v.text(0xF0, 0x110, "title"),
    }
    if laser_wn > 0:
        meta["laser_nm"] = 1e7 / laser_wn
    blocks = _blocks(v)
    for need in ("DATA", "XLST"):
        if need not in blocks:
            raise ReaderError(p, f"WDF file has no {need} block (found {sorted(blocks)})")
    at, _size = blocks["XLST"]
    _xtype, xunits = v.unpack("<II", at + 16, "the XLST type and units")
    if xlen != npoints:
        raise ReaderError(p, f"WDF1 header: the X list has {xlen} values but spectra have {npoints} points")
    x = v.array("<f4", npoints, at + 24, f"the X list ({npoints} float32)").astype(np.float64)
    at, _size = blocks["DATA"]
    X = v.array("<f4", count * npoints, at + 16, f"the DATA block ({count} spectra x {npoints} float32)")
    X2: NDArray[np.float32] = X.reshape(count, npoints)
    laser = excitation_nm if excitation_nm is not None else meta.get("laser_nm")
    source = "excitation_nm=" if excitation_nm is not None else "the file"
    if xunits == 1:
        axis = x
    elif xunits == 3:
        axis = raman_shift(x, laser, p, source)
        meta["converted_from"] = f"nm with excitation {laser} nm (from {source})"
    elif xunits == 2:
        axis = raman_shift(1e7 / np.where(x > 0, x, np.nan), laser, p, source)
        meta["converted_from"] = f"absolute wavenumber with excitation {laser} nm (from {source})"
    else:
        raise ReaderError(p, f"XLST block at byte {at}: X units are {_UNITS.get(xunits, xunits)}, "
                             "expected Raman shift, wavenumber or nm")
    per: list[dict[str, Any]] | None = None
    if "ORGN" in blocks:
        per, units = _origins(v, blocks["ORGN"][0], capacity, count)
        meta["coordinate_units"] = units
    if "WMAP" in blocks:
        cols, rows = v.unpack("<II", blocks["WMAP"][0] + 0x30, "the WMAP grid size")
        meta["map_shape"] = [int(cols), int(rows)]
    if count < capacity:
        logger.info("%s: measurement incomplete (%d of %d spectra); reading the %d taken", p, count, capacity, count)
        meta["incomplete"] = {"count": int(count), "capacity": int(capacity)}
    return build_dataset(p, X2, axis, reader="wdf", metadata=meta, spectrum_metadata=per)
