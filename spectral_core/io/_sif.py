"""Andor Solis ``.sif`` files (single spectra, kinetic series, images: every row of every frame is a spectrum).

Andor publishes no layout; the one used by every open reader (Marcel Leutenegger's MATLAB script, sif_parser,
sifreader) is followed here: a text magic line ``Andor Technology Multi-Channel File``, header lines whose count
depends on the SIF version (65548-65567), the calibration line (polynomial coefficients c0..c3, pixel numbers
from 1, giving wavelengths in nm), the Raman excitation wavelength line, three length-prefixed labels (the X axis
as Solis shows it, "Wavelength" or "Raman shift"; the data type; "Pixel number"), the image area and frame count
(``65541 x0 y1 x1 y0 frames subimages total_length image_length``), one line per subimage
(``65538 x0 y1 x1 y0 ybin xbin``), one timestamp line per frame, then float32 little-endian pixel data.

The wavelength axis becomes a Raman shift with ``excitation_nm=``, or with the file's Raman excitation field when
Solis shows a Raman-shift axis (only then is that field set by the user; real files saved in wavelength mode hold
422 or 433 there). Checked on real Solis files: docs/formats_binary.md.

sif_parser 0.3.6 (BSD-3-Clause, 2025) was tried: it reads the test files of tests/spectral_core/test_sc_binary_formats.py
identically (pixels, calibration, Raman excitation, spectrograph), but a file truncated inside its header makes
it loop forever (its word reader appends the empty string read at the end of the file, waiting for a separator
that never comes; files cut at bytes 60, 90 and 140 all hung until killed), which would stall the daemon. This reader walks the same layout with a cursor whose every read is bounded and names the byte
offset and the field expected.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._binary import ByteView, build_dataset, load_binary, raman_shift
from spectral_core.spectrum import SpectralDataset

__all__ = ["SIF_MAGIC", "is_sif", "read_sif"]

logger = logging.getLogger(__name__)

SIF_MAGIC = b"Andor Technology Multi-Channel File\n"
_SEP = b" \n\r"
_MAX_LINE = 1 << 20


def is_sif(head: bytes) -> bool:
    """Whether ``head`` starts with the SIF magic line."""
    return head.startswith(SIF_MAGIC.rstrip(b"\n"))


class _Cursor:
    """A read position in a SIF file: words, lines and raw bytes, each bounded by the end of the file."""

    def __init__(self, v: ByteView, pos: int) -> None:
        self.v = v
        self.pos = pos

    def _fail(self, what: str) -> ReaderError:
        return ReaderError(
            self.v.path, f"truncated or malformed SIF file: expected {what} at byte {self.pos} (file size {len(self.v)})"
        )

    def line(self, what: str) -> bytes:
        end = self.v.data.find(b"\n", self.pos, self.pos + _MAX_LINE)
        if end < 0:
            raise self._fail(f"{what} ending in a newline")
        out = self.v.data[self.pos : end]
        self.pos = end + 1
        return out.rstrip(b"\r")

    def word(self, what: str) -> bytes:
        d = self.v.data
        while self.pos < len(d) and d[self.pos] in _SEP:
            self.pos += 1
        start = self.pos
        while self.pos < len(d) and d[self.pos] not in _SEP:
            self.pos += 1
        if self.pos == start or self.pos >= len(d):
            self.pos = start
            raise self._fail(what)
        out = d[start : self.pos]
        self.pos += 1  # the separator
        return out

    def integer(self, what: str) -> int:
        start = self.pos
        raw = self.word(what)
        try:
            return int(raw)
        except ValueError:
            self.pos = start
            raise self._fail(f"{what} (an integer, found {raw[:20]!r})") from None

    def raw(self, n: int, what: str) -> bytes:
        self.v.need(self.pos, n, what)
        out = self.v.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def counted(self, what: str) -> str:
        """A string whose length is the rest of the current line: ``<len>\\n<bytes>``."""
        line = self.line(f"the length of {what}")
        try:
            n = int(line.strip() or b"0")
        except ValueError:
            raise self._fail(f"the length of {what} (an integer, found {line[:20]!r})") from None
        if n < 0 or n > _MAX_LINE:
            raise self._fail(f"the length of {what} (0..{_MAX_LINE}, found {n})")
        return self.raw(n, what).decode("latin-1")


def _skip_version_lines(c: _Cursor, version: int) -> str | None:
    """Skip the version-dependent block after the shutter line; returns the spectrograph name when present."""
    if 65548 <= version <= 65557:
        for _ in range(2):
            c.line("a version-specific header line")
        return None
    if version == 65558:
        for _ in range(5):
            c.line("a version-specific header line")
        return None
    if version in (65559, 65564) or version > 65565:
        for _ in range(8):
            c.line("a version-specific header line")
        parts = c.line("the spectrograph line").split()
        name = parts[1].decode("latin-1") if len(parts) > 1 else ""
        if version > 65565:
            for _ in range(9):
                c.line("a version-specific header line")
        return name
    if version == 65565:
        for _ in range(15):
            c.line("a version-specific header line")
        return None
    raise ReaderError(c.v.path, f"SIF version {version} is not supported (known: 65548-65567)")


def read_sif(path: str | Path, *, excitation_nm: float | None = None) -> SpectralDataset:
    """Read every row of every frame of an Andor SIF file as one spectrum; the axis in cm^-1, increasing.

    Args:
        excitation_nm: laser wavelength in nm; overrides the Raman excitation wavelength recorded in the file.

    Returns:
        A dataset with ``frames x rows`` spectra; frame, row and timestamp of each in
        ``provenance["spectrum_metadata"]``.

    Raises:
        ReaderError: the file name, the byte offset and what was expected there.
    """
    p = Path(path)
    v = load_binary(p, "SIF")
    if not v.data.startswith(SIF_MAGIC):
        raise ReaderError(p, f"not a SIF file: byte 0 starts with {v.data[:36]!r}, expected {SIF_MAGIC!r}")
    c = _Cursor(v, len(SIF_MAGIC))
    c.line("the second header line (65538 1)")
    version = c.integer("the SIF version")
    c.line("the rest of the acquisition line")
    meta: dict[str, Any] = {"format": f"SIF {version}", "detector": c.line("the detector type").decode("latin-1")}
    meta["detector_dimensions"] = [c.integer("the detector width"), c.integer("the detector height")]
    c.pos -= 1  # the original file name's length is the rest of this line
    c.counted("the original file name")
    c.line("the end of the file-name line")
    c.integer("the user-text tag (65538)")
    c.pos -= 1
    user = c.counted("the user text")
    c.line("the end of the user text")
    c.integer("the shutter tag (65538)")
    c.raw(8, "8 bytes of shutter flags")
    c.line("the shutter times")
    spectrograph = _skip_version_lines(c, version)
    if spectrograph:
        meta["spectrograph"] = spectrograph
    if c.integer("the calibration version") == 65540:
        c.line("the calibration version 65540 line")
    calib_line = c.line("the calibration coefficients")
    c.line("a calibration line")
    c.line("a calibration line")
    raman_line = c.line("the Raman excitation wavelength")
    for _ in range(3):
        c.line("a calibration line")
    # The three labels as Solis shows them: the X axis ("Wavelength" or "Raman shift"), the data ("Counts"),
    # the detector axis ("Pixel number"). Real files checked: tests/spectral_core/test_sc_vendor_real_files.py
    x_label, data_type, pixel_axis = (c.counted(w) for w in ("the X axis label", "the data type", "the pixel axis"))
    meta.update(x_axis_label=x_label, data_type=data_type, pixel_axis=pixel_axis)
    c.integer("the image-area tag (65541 or 65539)")
    for w in ("x0", "y1", "x1", "y0"):
        c.integer(f"image area {w}")
    n_frames, n_sub = c.integer("the number of frames"), c.integer("the number of subimages")
    c.integer("the total length")
    c.integer("the image length")
    if n_frames < 1 or n_sub < 1:
        raise ReaderError(p, f"SIF header at byte {c.pos}: {n_frames} frames, {n_sub} subimages; expected at least 1")
    width = height = 0
    for i in range(n_sub):
        c.integer(f"the tag of subimage {i + 1}")
        area = c.line(f"the area of subimage {i + 1}").split()
        try:
            x0, y1, x1, y0, ybin, xbin = (int(a) for a in area[:6])
            width, height = (1 + x1 - x0) // xbin, (1 + y1 - y0) // ybin
        except (ValueError, ZeroDivisionError):
            raise ReaderError(p, f"SIF subimage {i + 1} area {area[:6]!r} is not x0 y1 x1 y0 ybin xbin") from None
    if width < 2 or height < 1:
        raise ReaderError(p, f"SIF subimage of {width} x {height} pixels; expected at least 2 x 1")
    stamps = [c.integer(f"the timestamp of frame {f + 1}") for f in range(n_frames)]
    c.pos -= 1
    c.line("the end of the last timestamp")
    # Some versions add a 0 line, 65567 a 1 line and one more line a frame, before the pixels.
    nl = v.data.find(b"\n", c.pos, c.pos + 32)
    flag = v.data[c.pos : nl].strip() if nl >= 0 else b""
    if flag == b"0":
        c.pos = nl + 1
    elif flag == b"1" and version == 65567:
        c.pos = nl + 1
        for f in range(n_frames):
            c.line(f"the extra line of frame {f + 1}")
    rows_per_frame = height * n_sub
    n = n_frames * rows_per_frame * width
    pixels = v.array("<f4", n, c.pos, f"{n_frames} frame(s) of {rows_per_frame} x {width} float32 pixels")
    X = pixels.reshape(n_frames * rows_per_frame, width)
    per = [{"frame": f, "row": r, "timestamp_us": stamps[f]} for f in range(n_frames) for r in range(rows_per_frame)]
    try:
        coeffs = [float(t) for t in calib_line.split()]
    except ValueError:
        coeffs = []
    if len(coeffs) < 2 or not any(coeffs[1:]) or (coeffs[:2] == [0.0, 1.0] and not any(coeffs[2:])):
        raise ReaderError(p, "SIF file has no X calibration (pixels only); calibrate it in Solis first")
    pix = np.arange(1, width + 1, dtype=np.float64)
    x: NDArray[np.float64] = np.asarray(np.polynomial.polynomial.polyval(pix, coeffs), dtype=np.float64)
    meta["calibration"] = coeffs
    if user.strip():
        meta["user_text"] = user.strip()[:1000]
    try:
        laser_file: float | None = float(raman_line)
    except ValueError:
        laser_file = None
    if laser_file is not None and not (math.isfinite(laser_file) and laser_file > 0):
        laser_file = None
    # The calibration polynomial gives wavelengths (nm) whatever Solis displays. Its Raman excitation field is
    # meaningful only when Solis shows a Raman-shift axis: real files saved in wavelength mode carry 422 or
    # 433 there whatever the laser (e.g. a 405 nm measurement), so it is not trusted then.
    raman_mode = "raman" in x_label.lower()
    if excitation_nm is not None:
        laser, source = excitation_nm, "excitation_nm="
    elif raman_mode and laser_file is not None:
        laser, source = laser_file, "the file"
    else:
        if laser_file is not None:
            raise ReaderError(
                p, f"the SIF axis is a wavelength (Solis shows {x_label!r}, not a Raman shift), so its Raman excitation "
                f"field ({laser_file:g}) is not used; pass excitation_nm= (--excitation-nm, the laser wavelength in "
                "nm) to convert it to cm^-1",
            )
        laser, source = None, "the file"
    axis = raman_shift(x, laser, p, source)
    meta["converted_from"] = f"nm with excitation {laser} nm (from {source})"
    return build_dataset(p, X, axis, reader="sif", metadata=meta, spectrum_metadata=per)
