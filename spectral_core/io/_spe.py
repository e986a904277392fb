"""Princeton Instruments ``.spe`` files: WinSpec/WinView 2.x and LightField 3.0.

Written from the published layout (Princeton Instruments, "SPE 3.0 File Format Specification", which also
documents the 2.x header it keeps): a 4100-byte little-endian header (``xdim`` at byte 42, ``datatype`` at 108,
``ydim`` at 656, ``NumFrames`` at 1446, ``file_header_ver`` at 1992, the X calibration structure at 3000,
``lastvalue`` 0x5555 at 4098), then the frames. Version 3.0 adds an XML footer (its offset, uint64, at byte 678)
that describes the data blocks and holds the wavelength of every pixel.

Every row of every frame is one spectrum (a binned CCD has one row a frame; several rows are several tracks).
The X axis is a wavelength (nm): from the 2.x calibration polynomial (in nm, pixel numbers from 1) or the 3.0
``WavelengthMapping``, converted to Raman shift with the laser wavelength from the file (2.x
``laser_position``, 3.0 ``laserWavelength``) or ``excitation_nm=``. No library is used: spe2py (last release
2018) reads 3.0 only and needs untangle and xmltodict; the layout is simple enough to read with struct.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._binary import ByteView, build_dataset, load_binary, raman_shift
from spectral_core.spectrum import SpectralDataset

__all__ = ["SPE_HEADER", "is_spe", "read_spe"]

logger = logging.getLogger(__name__)

SPE_HEADER = 4100
_LASTVALUE = 0x5555
_DTYPES = {0: "<f4", 1: "<i4", 2: "<i2", 3: "<u2", 8: "<u4"}  # the datatype codes of the 3.0 specification
_PIXEL_FORMATS = {"MonochromeUnsigned16": "<u2", "MonochromeUnsigned32": "<u4", "MonochromeFloating32": "<f4"}
_CALIB = 3000
_MAX_XML = 16 * 1024 * 1024


def is_spe(head: bytes) -> bool:
    """Whether ``head`` (at least the first 4100 bytes) holds the SPE header's ``lastvalue`` 0x5555 at byte 4098."""
    return len(head) >= SPE_HEADER and head[4098:4100] == b"\x55\x55" and b"\x00" in head[:SPE_HEADER]


def _laser_from_xml(xml: str) -> float | None:
    m = re.search(r'laserWavelength\s*=\s*"([0-9.eE+-]+)"', xml) or re.search(
        r"<(?:\w+:)?LaserWavelength[^>]*>\s*([0-9.eE+-]+)\s*<", xml
    )
    return float(m.group(1)) if m else None


def _v2_axis(v: ByteView, xdim: int) -> tuple[NDArray[np.float64] | None, float | None, dict[str, Any]]:
    """The 2.x calibration: (wavelengths in nm or None, laser nm or None, facts for metadata)."""
    valid = v.data[_CALIB + 98]
    order = v.data[_CALIB + 101]
    coeffs = v.array("<f8", 6, _CALIB + 263, "the X calibration polynomial (6 float64)")
    laser = float(v.one("<d", _CALIB + 311, "laser_position"))
    meta: dict[str, Any] = {"calibration_valid": bool(valid), "polynomial_order": int(order)}
    if not valid or order > 5 or not np.any(coeffs[1:]):
        return None, None, meta
    pixels = np.arange(1, xdim + 1, dtype=np.float64)
    wl = np.polynomial.polynomial.polyval(pixels, coeffs[: order + 1])
    meta["polynomial_nm"] = coeffs[: order + 1].tolist()
    # WinSpec documents laser_position as the laser line for relative wavenumbers without fixing its unit:
    # files hold either nm or cm^-1. No Raman laser lies beyond 2000 nm, none below 5000 cm^-1: tell them apart.
    if laser > 2000.0:
        meta["laser_position_cm1"] = laser
        laser = 1e7 / laser
    return wl, (laser if laser > 0 else None), meta


def _v3_layout(
    v: ByteView, xdim: int, ydim: int
) -> tuple[str, NDArray[np.float64] | None, float | None, int, int, int]:
    """The 3.0 XML footer: (pixel dtype, wavelengths nm or None, laser nm or None, frame stride, width, height);
    the region's width and height replace the legacy header's ``xdim``/``ydim`` when the XML gives them."""
    p = v.path
    off = int(v.one("<Q", 678, "the XML footer offset (uint64 at byte 678)"))
    if off < SPE_HEADER or off >= len(v):
        raise ReaderError(p, f"SPE 3.0 header at byte 678: XML footer offset {off} lies outside the file ({len(v)} bytes)")
    raw = v.data[off : off + _MAX_XML]
    try:
        xml = raw.decode("utf-8")
        root = ET.fromstring(xml)
    except (UnicodeDecodeError, ET.ParseError) as exc:
        raise ReaderError(p, f"SPE 3.0 XML footer at byte {off} is not well-formed XML ({exc})") from None
    try:
        return _v3_interpret(p, root, off=off, xdim=xdim, ydim=ydim, xml=xml)
    except ValueError as exc:  # a number attribute or wavelength that is not a number
        raise ReaderError(p, f"SPE 3.0 XML footer at byte {off}: {exc}") from None


def _v3_interpret(
    p: Path, root: ET.Element, *, off: int, xdim: int, ydim: int, xml: str
) -> tuple[str, NDArray[np.float64] | None, float | None, int, int, int]:
    frame = root.find(".//{*}DataFormat/{*}DataBlock[@type='Frame']")
    if frame is None:
        raise ReaderError(p, f"SPE 3.0 XML footer at byte {off} has no DataFormat/DataBlock type='Frame'")
    fmt = frame.get("pixelFormat", "")
    if fmt not in _PIXEL_FORMATS:
        raise ReaderError(p, f"SPE 3.0 pixelFormat {fmt!r} is not one of {sorted(_PIXEL_FORMATS)}")
    regions = frame.findall("{*}DataBlock[@type='Region']")
    if len(regions) > 1:
        raise ReaderError(p, f"SPE 3.0 frames hold {len(regions)} regions of interest; only one is supported")
    stride = int(frame.get("stride") or frame.get("size") or 0)
    if regions:
        xdim = int(regions[0].get("width") or xdim)
        ydim = int(regions[0].get("height") or ydim)
    wl = None
    node = root.find(".//{*}Calibrations/{*}WavelengthMapping/{*}Wavelength")
    if node is not None and node.text:
        wl = np.array([float(t) for t in node.text.replace(";", ",").split(",") if t.strip()], dtype=np.float64)
    else:
        node = root.find(".//{*}Calibrations/{*}WavelengthMapping/{*}WavelengthError")
        if node is not None and node.text:
            wl = np.array([float(t.split(",")[0]) for t in node.text.split() if t.strip()], dtype=np.float64)
    if wl is not None and wl.size != xdim:
        sensor = root.find(".//{*}Calibrations/{*}SensorMapping")
        if sensor is not None and wl.size > xdim:
            x0, binning = int(sensor.get("x", 0)), max(1, int(sensor.get("xBinning", 1)))
            wl = wl[x0 : x0 + xdim * binning].reshape(xdim, binning).mean(axis=1) if wl.size >= x0 + xdim * binning else wl
        if wl.size != xdim:
            raise ReaderError(p, f"SPE 3.0 XML footer gives {wl.size} wavelengths for {xdim} pixels")
    return _PIXEL_FORMATS[fmt], wl, _laser_from_xml(xml), stride, xdim, ydim


def read_spe(path: str | Path, *, excitation_nm: float | None = None) -> SpectralDataset:
    """Read every row of every frame of an SPE 2.x or 3.0 file as one spectrum (axis cm^-1, increasing).

    Args:
        excitation_nm: laser wavelength in nm; overrides the one in the file.

    Returns:
        A dataset with ``NumFrames * ydim`` spectra; frame and row of each in ``provenance["spectrum_metadata"]``.

    Raises:
        ReaderError: the file name, the byte offset and what was expected there.
    """
    p = Path(path)
    v = load_binary(p, "SPE")
    v.need(0, SPE_HEADER, "the 4100-byte SPE header")
    last = v.one("<H", 4098, "lastvalue")
    if last != _LASTVALUE:
        raise ReaderError(p, f"not an SPE file: bytes 4098-4099 (lastvalue) are 0x{last:04x}, expected 0x5555")
    xdim = v.one("<H", 42, "xdim")
    ydim = v.one("<H", 656, "ydim")
    frames = v.one("<i", 1446, "NumFrames")
    version = float(v.one("<f", 1992, "file_header_ver"))
    meta: dict[str, Any] = {"format": f"SPE {version:g}", "exposure_s": float(v.one("<f", 10, "exp_sec"))}
    if version >= 3.0:
        dtype, wl, laser_file, stride, xdim, ydim = _v3_layout(v, xdim, ydim)
        if xdim < 2 or ydim < 1 or frames < 1:
            raise ReaderError(p, f"SPE 3.0 region of {xdim} x {ydim} pixels, {frames} frames (NumFrames at byte "
                                 "1446); expected at least 2 x 1 pixels and one frame")
    else:
        if xdim < 2 or ydim < 1 or frames < 1:
            raise ReaderError(p, f"SPE header: xdim={xdim} (byte 42), ydim={ydim} (byte 656), NumFrames={frames} "
                                 "(byte 1446); expected xdim >= 2 and at least one row and frame")
        code = v.one("<h", 108, "datatype")
        if code not in _DTYPES:
            raise ReaderError(p, f"SPE header at byte 108: datatype {code} is not one of {sorted(_DTYPES)}")
        dtype, stride = _DTYPES[code], 0
        wl, laser_file, calib_meta = _v2_axis(v, xdim)
        meta.update(calib_meta)
    item = np.dtype(dtype).itemsize
    frame_size = xdim * ydim * item
    stride = max(stride, frame_size)
    blocks: list[NDArray[Any]] = []
    for f in range(frames):
        what = f"frame {f + 1} of {frames} ({frame_size} bytes)"
        blocks.append(v.array(dtype, xdim * ydim, SPE_HEADER + f * stride, what).reshape(ydim, xdim))
    per = [{"frame": f, "row": r} for f in range(frames) for r in range(ydim)]
    if wl is None:
        raise ReaderError(p, "SPE file has no wavelength calibration (pixels only); calibrate it in WinSpec/LightField")
    laser = excitation_nm if excitation_nm is not None else laser_file
    source = "excitation_nm=" if excitation_nm is not None else "the file"
    axis = raman_shift(wl, laser, p, source)
    meta["converted_from"] = f"nm with excitation {laser} nm (from {source})"
    X = np.concatenate(blocks, axis=0)
    return build_dataset(p, X, axis, reader="spe", metadata=meta, spectrum_metadata=per)
