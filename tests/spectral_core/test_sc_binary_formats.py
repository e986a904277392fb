"""Binary vendor formats (WDF, SPC, SPE, SIF, OPUS): files written here byte by byte to each format's published layout,
read back through spectral_core.io, values and axis checked against what was written; bad input (empty,
truncated, wrong magic) raises ReaderError naming the file, the byte position and what was expected."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from spectral_core.errors import MissingExtraError, ReaderError
from spectral_core.io import read_dataset, read_spectrum, sniff_format
from spectral_core.io._opus import read_opus
from spectral_core.io._sif import read_sif
from spectral_core.io._spc import read_spc
from spectral_core.io._spe import read_spe
from spectral_core.io._wdf import read_wdf

RNG = np.random.default_rng(14)


# ----------------------------------------------------------------------------------------------------- writers
def _pad(b: bytes, n: int) -> bytes:
    return b[:n].ljust(n, b"\x00")


def write_spc(
    path: Path,
    ys: list[np.ndarray],
    *,
    first: float = 0.0,
    last: float = 0.0,
    x: np.ndarray | None = None,
    xyxy: bool = False,
    xtype: int = 13,
    exp: int = -128,
    prec16: bool = False,
    log: str = "",
    version: int = 0x4B,
) -> Path:
    """An SPC file (new format) to the Galactic layout: 512-byte header, optional global X, subfiles."""
    e = "<" if version == 0x4B else ">"
    multi = len(ys) > 1
    flags = (0x04 if multi else 0) | (0x80 if x is not None else 0) | (0x40 | 0x80 if xyxy else 0) | (1 if prec16 else 0)
    npts = len(ys[0])
    body = b""
    if x is not None and not xyxy:
        body += np.asarray(x, dtype=e + "f4").tobytes()
    for i, y in enumerate(ys):
        body += struct.pack(e + "BbHfffIIf4s", 0, exp, i, float(10 * i), 0.0, 0.0, npts if xyxy else 0, 0, float(i), b"")
        if xyxy:  # X values are 4 bytes: float32, or int32 scaled like Y (whatever TSPREC says of Y)
            xs = np.asarray(x, dtype=np.float64)
            body += (xs.astype(e + "f4") if exp == -128 else np.round(xs / 2.0 ** (exp - 32)).astype(e + "i4")).tobytes()
        if exp == -128:
            body += np.asarray(y, dtype=e + "f4").tobytes()
        elif prec16:
            body += np.round(np.asarray(y) / 2.0 ** (exp - 16)).astype(e + "i2").tobytes()
        else:
            body += np.round(np.asarray(y) / 2.0 ** (exp - 32)).astype(e + "i4").tobytes()
    logoff = 0
    if log:
        logoff = 512 + len(body)
        text = log.encode("latin-1") + b"\x00"
        body += struct.pack(e + "IIIII44s", 64 + len(text), 64 + len(text), 64, 0, 0, b"") + text
    head = struct.pack(e + "BBBbIddIBBBBI9s9sH32s130s30sIIBBH", flags, version, 11, exp if not multi else 0,
                       npts, first, last, len(ys), xtype, 4, 0, 0, (2024 << 20) | (3 << 16) | (5 << 11) | (14 << 6) | 30,
                       b"1 cm-1", b"test", 0, b"", b"memo text", b"", logoff, 0, 0, 0, 0)
    head = _pad(head, 512)
    path.write_bytes(head + body)
    return path


def write_spe2(path: Path, frames: np.ndarray, coeffs: list[float], *, laser: float = 0.0, dtype_code: int = 3) -> Path:
    """An SPE 2.x file: 4100-byte header (xdim 42, datatype 108, ydim 656, NumFrames 1446, version 1992,
    X calibration at 3000, lastvalue 4098), then frames x rows x pixels."""
    n_frames, ydim, xdim = frames.shape
    h = bytearray(4100)
    struct.pack_into("<f", h, 10, 0.5)
    struct.pack_into("<H", h, 42, xdim)
    struct.pack_into("<h", h, 108, dtype_code)
    struct.pack_into("<H", h, 656, ydim)
    struct.pack_into("<i", h, 1446, n_frames)
    struct.pack_into("<f", h, 1992, 2.5)
    h[3000 + 98] = 1
    h[3000 + 101] = len(coeffs) - 1
    struct.pack_into("<6d", h, 3000 + 263, *(list(coeffs) + [0.0] * (6 - len(coeffs))))
    struct.pack_into("<d", h, 3000 + 311, laser)
    struct.pack_into("<H", h, 4098, 0x5555)
    dt = {0: "<f4", 1: "<i4", 2: "<i2", 3: "<u2"}[dtype_code]
    path.write_bytes(bytes(h) + frames.astype(dt).tobytes())
    return path


def write_spe3(path: Path, frames: np.ndarray, wavelengths: np.ndarray, *, laser: float | None = 785.0) -> Path:
    """An SPE 3.0 file: the 4100-byte header with version 3.0 and the XML footer offset at byte 678."""
    n_frames, ydim, xdim = frames.shape
    data = frames.astype("<u2").tobytes()
    h = bytearray(4100)
    struct.pack_into("<H", h, 42, 1)  # LightField's legacy xdim/ydim need not match: the XML region rules
    struct.pack_into("<h", h, 108, 3)
    struct.pack_into("<H", h, 656, 1)
    struct.pack_into("<i", h, 1446, n_frames)
    struct.pack_into("<f", h, 1992, 3.0)
    struct.pack_into("<Q", h, 678, 4100 + len(data))
    struct.pack_into("<H", h, 4098, 0x5555)
    size = xdim * ydim * 2
    laser_attr = f' laserWavelength="{laser}"' if laser is not None else ""
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<SpeFormat version="3.0" xmlns="http://www.princetoninstruments.com/spe/2009">'
        f'<DataFormat><DataBlock type="Frame" count="{n_frames}" pixelFormat="MonochromeUnsigned16" size="{size}" '
        f'stride="{size}"><DataBlock type="Region" count="1" width="{xdim}" height="{ydim}" size="{size}" '
        f'stride="{size}"/></DataBlock></DataFormat>'
        f'<Calibrations><WavelengthMapping id="1"{laser_attr}><Wavelength xml:space="preserve">'
        + ",".join(f"{w:.6f}" for w in wavelengths)
        + "</Wavelength></WavelengthMapping></Calibrations></SpeFormat>"
    )
    path.write_bytes(bytes(h) + data + xml.encode("utf-8"))
    return path


def write_wdf(
    path: Path,
    spectra: np.ndarray,
    x: np.ndarray,
    *,
    xunits: int = 1,
    laser_nm: float = 785.0,
    origins: dict[int, np.ndarray] | None = None,
    mtype: int = 1,
    capacity: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Path:
    """A WDF file: the 512-byte WDF1 header, then DATA, XLST, YLST, ORGN (and WMAP for a map) blocks."""
    count, npts = spectra.shape
    cap = capacity or count
    origins = origins or {}

    def block(name: bytes, body: bytes) -> bytes:
        return name + struct.pack("<IQ", 0, 16 + len(body)) + body

    h = bytearray(512)
    h[0:16] = b"WDF1" + struct.pack("<IQ", 1, 512)
    struct.pack_into("<IQQIIII", h, 0x3C, npts, cap, count, 1, 1, npts, len(origins))
    h[0x60 : 0x60 + 4] = b"WiRE"
    struct.pack_into("<4H", h, 0x78, 5, 3, 0, 1)
    struct.pack_into("<II", h, 0x80, 1, mtype)
    struct.pack_into("<If", h, 0x98, 1, 1e7 / laser_nm)
    h[0xD0 : 0xD0 + 4] = b"user"
    h[0xF0 : 0xF0 + 10] = b"test title"
    data = np.zeros((cap, npts), dtype="<f4")
    data[:count] = spectra
    out = bytes(h) + block(b"DATA", data.tobytes())
    out += block(b"XLST", struct.pack("<II", 1, xunits) + x.astype("<f4").tobytes())
    out += block(b"YLST", struct.pack("<II", 0, 16) + struct.pack("<f", 0.0))
    orgn = struct.pack("<I", len(origins))
    for code, vals in origins.items():
        full = np.zeros(cap)
        full[:count] = vals
        orgn += struct.pack("<II16s", code | (1 << 31), 5, {3: b"X", 4: b"Y", 5: b"Z"}.get(code, b"T")) + full.astype("<f8").tobytes()
    out += block(b"ORGN", orgn)
    if grid is not None:
        out += block(b"WMAP", struct.pack("<II6f3I", 0, 0, 0, 0, 0, 1, 1, 1, grid[0], grid[1], 1))
    path.write_bytes(out)
    return path


def write_sif(
    path: Path, frames: np.ndarray, coeffs: list[float], *, raman_nm: str = "785.0", version: int = 65550,
    x_label: str = "Raman shift",
) -> Path:
    """An Andor SIF file in the line layout the open readers follow (magic, acquisition line, detector, file
    name, user text, shutter, version-specific lines, calibration, Raman excitation, axis labels, image area,
    subimage, timestamps, float32 pixels)."""
    n_frames, height, width = frames.shape
    b = b"Andor Technology Multi-Channel File\n65538 1\n"
    b += f"{version} 0 0 1 1540956289 -60.0 ".encode() + b" " * 10 + b"0 0.5 0.5 0.5 1 \x00 0 1e-06 0 1 1.0 0 0 0.0 "
    b += b"0 " * 16 + b"600 0\n"
    b += b"DU420_BVF\n1024 255 10\nC:\\a\\b.sif \n65538 5\nhello\n65538 " + b"\x00" * 8 + b"0 0\n"
    if version <= 65557:
        b += b"0 0\n" * 2
    else:  # 65567: 8 lines, the spectrograph line, 9 lines
        b += b"0 0\n" * 8 + b"65538 Shamrock303 0\n0 0\n0 0 0 1 0 0 0 0 0\n" + b"0 0\n" * 7
    b += b"65539 " + " ".join(repr(c) for c in coeffs).encode() + b"\n0 1 0 0\n0 1 0 0\n" + raman_nm.encode() + b"\n"
    b += b"422\n13\n13\n"
    for label in (x_label, "Counts", "Pixel number"):  # as real Solis files hold them
        b += f"{len(label)}\n{label}".encode()
    b += f"65541 1 {height} {width} 1 {n_frames} 1 {n_frames * width * height} {width * height} \n".encode()
    b += f"65538 1 {height} {width} 1 1 1 0 0\n".encode()
    b += b"".join(f"{1000 * f}\n".encode() for f in range(n_frames))
    b += b"1\n" + b"".join(b"7\n" for _ in range(n_frames)) if version == 65567 else b"0\n"
    path.write_bytes(b + frames.astype("<f4").tobytes())
    return path


def _opus_type(code0: int = 0, code1: int = 0, code2: int = 0, code3: int = 0, code4: int = 0, code5: int = 0) -> int:
    """The OPUS block type integer: bit fields 0-1, 2-3, 4-9, 10-16, 17-18, 19-21."""
    return code0 | code1 << 2 | code2 << 4 | code3 << 10 | code4 << 17 | code5 << 19


def _opus_params(items: list[tuple[str, object]]) -> bytes:
    """An OPUS parameter block: 3-letter key + NUL, int16 type (0 int32, 1 float64, 2 string), int16 size in
    16-bit words, the value; closed by END."""
    out = b""
    for key, val in items:
        if isinstance(val, int):
            out += key.encode() + b"\x00" + struct.pack("<hhi", 0, 2, val)
        elif isinstance(val, float):
            out += key.encode() + b"\x00" + struct.pack("<hhd", 1, 4, val)
        else:
            raw = _pad(str(val).encode(), (len(str(val)) // 4 + 1) * 4)
            out += key.encode() + b"\x00" + struct.pack("<hh", 2, len(raw) // 2) + raw
    return out + b"END\x00" + struct.pack("<hh", 0, 0)


def write_opus(path: Path, y: np.ndarray, first: float, last: float, *, code3: int = 10, dxu: str = "WN",
               laser_wn: float = 9394.0) -> Path:
    """A Bruker OPUS file: 24-byte header, directory, a data block (a 3D data series when ``y`` is 2-D: header,
    store table, then each spectrum followed by its 152-byte info record), its data-status block, instrument
    parameters."""
    y32 = np.asarray(y, dtype="<f4")
    npt = y32.shape[-1]
    status = _opus_params([("DPF", 1), ("NPT", npt), ("FXV", float(first)), ("LXV", float(last)),
                           ("CSF", 1.0), ("MXY", float(y32.max())), ("MNY", float(y32.min())), ("DXU", dxu)])
    instrument = _opus_params([("RLW", float(laser_wn))])
    series = 2 if y32.ndim == 2 else 0
    if series:
        data = struct.pack("<6i", 0, len(y32), 32, 4 * npt, 152, 1) + struct.pack("<2i", 1, len(y32))
        data += b"".join(row.tobytes() + bytes(152) for row in y32)
    else:
        data = y32.tobytes()
    blocks = [(_opus_type(code3=code3, code5=series), data), (_opus_type(code2=1, code3=code3, code5=series), status),
              (_opus_type(code2=2), instrument)]
    max_blocks = 8
    dir_start = 24
    pos = dir_start + 12 * max_blocks
    entries = [(_opus_type(code3=13), max_blocks * 3, dir_start)]
    body = b""
    for t, raw in blocks:
        b = _pad(raw, -(-len(raw) // 4) * 4)
        entries.append((t, len(b) // 4, pos + len(body)))
        body += b
    directory = b"".join(struct.pack("<3i", *e) for e in entries).ljust(12 * max_blocks, b"\x00")
    head = b"\n\n\xfe\xfe" + struct.pack("<diii", 920622.0, dir_start, max_blocks, len(entries))
    path.write_bytes(head + directory + body)
    return path


# --------------------------------------------------------------------------------------------------------- SPC
def test_spc_single_float_evenly_spaced(tmp_path: Path) -> None:
    y = RNG.normal(1000, 50, 300).astype(np.float32)
    f = write_spc(tmp_path / "a.spc", [y], first=200.0, last=1800.0)
    s = read_spectrum(f)
    np.testing.assert_allclose(s.axis, np.linspace(200, 1800, 300))
    np.testing.assert_array_equal(s.intensities, y)
    assert s.metadata["reader"] == "spc" and s.metadata["comment"] == "memo text"
    assert s.metadata["date"] == "2024-03-05T14:30"


def test_spc_multi_subfile_global_x_decreasing(tmp_path: Path) -> None:
    x = np.linspace(3000, 100, 200)  # stored high-to-low, as many instruments do
    ys = [RNG.normal(0, 1, 200).astype(np.float32) for _ in range(3)]
    f = write_spc(tmp_path / "m.spc", ys, x=x)
    ds = read_dataset(f)
    assert ds.n_spectra == 3
    np.testing.assert_allclose(ds.axis, x[::-1].astype(np.float32))
    for i in range(3):
        np.testing.assert_array_equal(ds.X[i], ys[i][::-1])
    assert [m["z"] for m in ds.provenance["spectrum_metadata"]] == [0.0, 10.0, 20.0]


def test_spc_integer_scaled_and_16bit(tmp_path: Path) -> None:
    y = np.arange(100, dtype=np.float64) * 3.0
    f32 = write_spc(tmp_path / "i32.spc", [y], first=100, last=1000, exp=16)
    np.testing.assert_allclose(read_spc(f32).X[0], y)
    f16 = write_spc(tmp_path / "i16.spc", [y], first=100, last=1000, exp=10, prec16=True)
    np.testing.assert_allclose(read_spc(f16).X[0], y)


def test_spc_xyxy_and_big_endian(tmp_path: Path) -> None:
    x = np.linspace(150, 1500, 64)
    ys = [RNG.normal(5, 1, 64).astype(np.float32) for _ in range(2)]
    ds = read_spc(write_spc(tmp_path / "xy.spc", ys, x=x, xyxy=True))
    np.testing.assert_allclose(ds.axis, x.astype(np.float32))
    np.testing.assert_array_equal(ds.X[1], ys[1])
    be = read_spc(write_spc(tmp_path / "be.spc", ys[:1], first=150, last=1500, version=0x4C))
    np.testing.assert_array_equal(be.X[0], ys[0])


def test_spc_xyxy_with_16_bit_y_reads_4_byte_x(tmp_path: Path) -> None:
    """As a real TXYXYS file with int16 Y (rohanisaac/spc m_xyxy.spc): X int32 * 2**(exp-32), Y int16."""
    x = np.arange(150.0, 150.0 + 2.5 * 64, 2.5)
    ys = [np.round(RNG.normal(500, 50, 64)) for _ in range(3)]
    ds = read_spc(write_spc(tmp_path / "xy16.spc", ys, x=x, xyxy=True, exp=16, prec16=True))
    np.testing.assert_allclose(ds.axis, x)
    np.testing.assert_array_equal(ds.X, np.stack(ys))


def test_spc_wavelength_axis_uses_log_laser_or_option(tmp_path: Path) -> None:
    nm = np.linspace(800, 900, 50)
    y = np.ones(50, dtype=np.float32)
    f = write_spc(tmp_path / "nm.spc", [y], x=nm, xtype=3, log="Laser Wavelength=785.0\r\nOperator=me\r\n")
    ds = read_spc(f)
    nm32 = nm.astype(np.float32).astype(np.float64)  # the file stores float32
    np.testing.assert_allclose(ds.axis, 1e7 / 785.0 - 1e7 / nm32, rtol=1e-12)
    assert ds.provenance["log"]["Operator"] == "me"
    ds2 = read_dataset(f, excitation_nm=780.0)
    np.testing.assert_allclose(ds2.axis, 1e7 / 780.0 - 1e7 / nm32, rtol=1e-12)
    g = write_spc(tmp_path / "nolaser.spc", [y], x=nm, xtype=3)
    with pytest.raises(ReaderError, match="excitation_nm"):
        read_spc(g)


def test_spc_refuses_time_axis_and_old_format(tmp_path: Path) -> None:
    y = np.ones(10, dtype=np.float32)
    with pytest.raises(ReaderError, match="byte 28: X units are seconds"):
        read_spc(write_spc(tmp_path / "t.spc", [y], first=0, last=9, xtype=4))
    old = tmp_path / "old.spc"
    old.write_bytes(b"\x00\x4d" + b"\x00" * 600)
    with pytest.raises(ReaderError, match="0x4D"):
        read_spc(old)


# --------------------------------------------------------------------------------------------------------- SPE
def test_spe2_frames_and_rows_with_polynomial_and_laser(tmp_path: Path) -> None:
    frames = RNG.integers(0, 60000, (2, 3, 128)).astype(np.uint16)
    coeffs = [800.0, 0.5, 1e-4]
    f = write_spe2(tmp_path / "a.spe", frames, coeffs, laser=785.0)
    ds = read_dataset(f)
    assert ds.n_spectra == 6
    pix = np.arange(1, 129, dtype=np.float64)
    wl = coeffs[0] + coeffs[1] * pix + coeffs[2] * pix**2
    np.testing.assert_allclose(ds.axis, 1e7 / 785.0 - 1e7 / wl, rtol=1e-12)
    np.testing.assert_array_equal(ds.X.reshape(2, 3, 128), frames.astype(np.float32))
    assert ds.provenance["spectrum_metadata"][4] == {"frame": 1, "row": 1}


def test_spe2_laser_position_as_wavenumber(tmp_path: Path) -> None:
    f = write_spe2(tmp_path / "wn.spe", np.ones((1, 1, 16)), [800.0, 1.0], laser=1e7 / 785.0)
    pix = np.arange(1, 17, dtype=np.float64)
    np.testing.assert_allclose(read_spe(f).axis, 1e7 / 785.0 - 1e7 / (800.0 + pix), rtol=1e-12)


def test_spe2_float_data_needs_excitation_when_no_laser(tmp_path: Path) -> None:
    frames = RNG.normal(100, 5, (1, 1, 32)).astype(np.float32)
    f = write_spe2(tmp_path / "f.spe", frames, [830.0, 0.25], dtype_code=0)
    with pytest.raises(ReaderError, match="excitation_nm"):
        read_spe(f)
    ds = read_spe(f, excitation_nm=785.0)
    np.testing.assert_array_equal(ds.X[0], frames[0, 0])


def test_spe3_xml_footer_wavelengths_and_laser(tmp_path: Path) -> None:
    frames = RNG.integers(0, 4000, (3, 1, 64)).astype(np.uint16)
    wl = np.linspace(790, 900, 64)
    f = write_spe3(tmp_path / "lf.spe", frames, wl, laser=785.0)
    ds = read_dataset(f)
    assert ds.n_spectra == 3 and ds.provenance["format"] == "SPE 3"
    np.testing.assert_allclose(ds.axis, 1e7 / 785.0 - 1e7 / wl, atol=1e-4)  # the XML holds 6 decimals
    np.testing.assert_array_equal(ds.X, frames[:, 0, :].astype(np.float32))


# --------------------------------------------------------------------------------------------------------- WDF
def test_wdf_single_spectrum_raman_shift_decreasing(tmp_path: Path) -> None:
    x = np.linspace(3200, 100, 500)
    y = RNG.normal(500, 20, (1, 500)).astype(np.float32)
    f = write_wdf(tmp_path / "s.wdf", y, x)
    s = read_spectrum(f)
    np.testing.assert_allclose(s.axis, x[::-1].astype(np.float32))
    np.testing.assert_array_equal(s.intensities, y[0, ::-1])
    assert s.metadata["title"] == "test title" and s.metadata["measurement"] == "single"
    assert s.metadata["laser_nm"] == pytest.approx(785.0, rel=1e-6)


def test_wdf_map_carries_xy_coordinates(tmp_path: Path) -> None:
    cols, rows = 3, 2
    xs = np.tile(np.arange(cols) * 1.5, rows)
    ys = np.repeat(np.arange(rows) * 2.0, cols)
    spectra = RNG.normal(0, 1, (6, 40)).astype(np.float32)
    x = np.linspace(1800, 400, 40)
    f = write_wdf(tmp_path / "map.wdf", spectra, x, origins={3: xs, 4: ys}, mtype=3, grid=(cols, rows))
    ds = read_dataset(f)
    assert ds.n_spectra == 6 and ds.provenance["measurement"] == "map"
    coords = [(m["x"], m["y"]) for m in ds.provenance["spectrum_metadata"]]
    assert coords == list(zip(xs.tolist(), ys.tolist(), strict=True))
    assert ds.provenance["coordinate_units"] == {"x": "um", "y": "um"}
    assert ds.provenance["map_shape"] == [3, 2]
    np.testing.assert_array_equal(ds.X, spectra[:, ::-1])


def test_wdf_incomplete_series_reads_count_spectra(tmp_path: Path) -> None:
    spectra = RNG.normal(0, 1, (2, 20)).astype(np.float32)
    f = write_wdf(tmp_path / "ser.wdf", spectra, np.linspace(100, 2000, 20), mtype=2, capacity=5,
                  origins={11: np.array([1.0, 2.0])})
    ds = read_wdf(f)
    assert ds.n_spectra == 2 and ds.provenance["incomplete"] == {"count": 2, "capacity": 5}
    assert [m["time"] for m in ds.provenance["spectrum_metadata"]] == [1.0, 2.0]


def test_wdf_nanometre_axis_converted(tmp_path: Path) -> None:
    nm = np.linspace(790, 950, 30)
    f = write_wdf(tmp_path / "nm.wdf", np.ones((1, 30), np.float32), nm, xunits=3, laser_nm=785.0)
    ds = read_wdf(f)
    laser_wn = float(np.float32(1e7 / 785.0))  # the file stores the laser as a float32 wavenumber
    nm32 = nm.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(ds.axis, laser_wn - 1e7 / nm32, rtol=1e-9)


# --------------------------------------------------------------------------------------------------------- SIF
@pytest.mark.parametrize("version", [65550, 65567])
def test_sif_kinetic_series_wavelength_to_shift(tmp_path: Path, version: int) -> None:
    frames = RNG.normal(1000, 30, (3, 1, 80)).astype(np.float32)
    coeffs = [800.0, 0.5, 1e-4, 0.0]
    f = write_sif(tmp_path / "k.sif", frames, coeffs, version=version)
    ds = read_dataset(f)
    pix = np.arange(1, 81, dtype=np.float64)
    wl = 800.0 + 0.5 * pix + 1e-4 * pix**2
    np.testing.assert_allclose(ds.axis, 1e7 / 785.0 - 1e7 / wl, rtol=1e-12)
    np.testing.assert_array_equal(ds.X, frames[:, 0, :])
    assert [m["timestamp_us"] for m in ds.provenance["spectrum_metadata"]] == [0, 1000, 2000]
    assert ds.provenance["user_text"] == "hello"
    if version == 65567:
        assert ds.provenance["spectrograph"] == "Shamrock303"


def test_sif_image_rows_wavelength_mode_and_missing_laser(tmp_path: Path) -> None:
    """The polynomial gives nm in both Solis modes; in wavelength mode the file's Raman excitation field (422
    in real files, whatever the laser) is not trusted: excitation_nm= is needed."""
    frames = RNG.normal(0, 1, (1, 4, 16)).astype(np.float32)
    wl_mode = write_sif(tmp_path / "w.sif", frames, [800.0, 0.5, 0, 0], raman_nm="422", x_label="Wavelength")
    with pytest.raises(ReaderError, match=r"Solis shows 'Wavelength'.*\(422\) is not used; pass excitation_nm="):
        read_sif(wl_mode)
    ds = read_sif(wl_mode, excitation_nm=785.0)
    np.testing.assert_allclose(ds.axis, 1e7 / 785.0 - 1e7 / (800.0 + 0.5 * np.arange(1, 17)), rtol=1e-12)
    assert ds.n_spectra == 4 and ds.provenance["spectrum_metadata"][3]["row"] == 3
    assert ds.provenance["x_axis_label"] == "Wavelength" and ds.provenance["pixel_axis"] == "Pixel number"
    nolaser = write_sif(tmp_path / "n.sif", frames, [800.0, 0.5, 0, 0], raman_nm="0")
    with pytest.raises(ReaderError, match="excitation_nm"):
        read_sif(nolaser)
    np.testing.assert_array_equal(read_sif(nolaser, excitation_nm=785.0).X, frames[0])


# -------------------------------------------------------------------------------------------------------- OPUS
def test_opus_raman_block_read_through_brukeropus(tmp_path: Path) -> None:
    y = RNG.normal(100, 10, 120).astype(np.float32)
    f = write_opus(tmp_path / "sample.0", y, 3500.0, 100.0)
    ds = read_dataset(f)  # found by content: OPUS files are named .0, .1, ...
    np.testing.assert_allclose(ds.axis, np.linspace(100.0, 3500.0, 120))
    np.testing.assert_array_equal(ds.X[0], y[::-1])
    assert ds.provenance["opus_block"] == "ra" and ds.provenance["laser_nm"] == pytest.approx(1e7 / 9394.0)


def test_opus_data_series_is_one_spectrum_a_row(tmp_path: Path) -> None:
    y = RNG.normal(0, 1, (3, 16)).astype(np.float32)
    ds = read_opus(write_opus(tmp_path / "series.0", y, 200.0, 1700.0))
    np.testing.assert_array_equal(ds.X, y)
    np.testing.assert_allclose(ds.axis, np.linspace(200.0, 1700.0, 16))
    assert [m["row"] for m in ds.provenance["spectrum_metadata"]] == [0, 1, 2]


def test_opus_other_units_refused_and_missing_extra_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    y = np.arange(10, dtype=np.float32)
    with pytest.raises(ReaderError, match="DXU=MI, expected WN"):
        read_opus(write_opus(tmp_path / "mi.0", y, 2.5, 25.0, dxu="MI"))
    monkeypatch.setitem(__import__("sys").modules, "brukeropus", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'ramanedge\[opus\]'"):
        read_opus(write_opus(tmp_path / "ok.0", y, 100.0, 1000.0))


# ------------------------------------------------------------------------------------------------ registry/sniff
def test_sniff_by_content_and_extension(tmp_path: Path) -> None:
    y = np.ones(20, np.float32)
    wdf = write_wdf(tmp_path / "no_ext", y[None, :], np.linspace(100, 200, 20))
    assert sniff_format(wdf) == "wdf"
    spc = write_spc(tmp_path / "renamed.dat", [y], first=1, last=20)
    assert sniff_format(spc) == "spc"
    spe = write_spe2(tmp_path / "x.spe", np.ones((1, 1, 20)), [800, 1])
    assert sniff_format(spe) == "spe"
    with pytest.raises(ReaderError, match="format=wdf but the content is spc"):
        read_dataset(spc, format="wdf")


# ------------------------------------------------------------------------------------------------------ bad input
def _good_files(tmp_path: Path) -> dict[str, Path]:
    y = RNG.normal(0, 1, 64).astype(np.float32)
    return {
        "spc": write_spc(tmp_path / "g.spc", [y, y], x=np.linspace(100, 900, 64)),
        "spe": write_spe2(tmp_path / "g.spe", np.ones((2, 1, 64)), [800, 1], laser=785.0),
        "spe3": write_spe3(tmp_path / "g3.spe", np.ones((2, 1, 64)), np.linspace(800, 900, 64)),
        "wdf": write_wdf(tmp_path / "g.wdf", y[None, :], np.linspace(100, 900, 64), origins={3: np.zeros(1)}),
        "sif": write_sif(tmp_path / "g.sif", np.ones((2, 1, 64)), [800.0, 0.5, 0, 0]),
        "opus": write_opus(tmp_path / "g.0", np.arange(64, dtype=np.float32), 100.0, 900.0),
    }


@pytest.mark.parametrize("kind", ["spc", "spe", "spe3", "wdf", "sif", "opus"])
def test_truncated_file_names_position_and_field(tmp_path: Path, kind: str) -> None:
    good = _good_files(tmp_path)[kind]
    data = good.read_bytes()
    json.dumps(read_dataset(good).provenance)  # the intact file reads; its provenance is JSON, as the model asks
    for cut in sorted({len(data) - 7, len(data) // 2, 520, 100} - {c for c in (520,) if c >= len(data)}):
        bad = tmp_path / f"cut{cut}{good.suffix}"
        bad.write_bytes(data[:cut])
        with pytest.raises(ReaderError) as ei:
            read_dataset(bad)
        msg = str(ei.value)
        assert str(bad) in msg
        assert "truncated" in msg or "lies outside" in msg or "not well-formed" in msg, msg
        assert "byte" in msg, msg


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [(".spc", "expected 0x4b or 0x4c"), (".spe", "expected 0x5555"), (".wdf", "expected b'WDF1'"),
     (".sif", "expected b'Andor Technology")],
)
def test_wrong_magic_says_what_was_expected(tmp_path: Path, suffix: str, expected: str) -> None:
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"\x01\x02\x03\x04" + bytes(range(256)) * 20)
    with pytest.raises(ReaderError, match=expected) as ei:
        read_dataset(bad)
    assert str(bad) in str(ei.value)


def test_counts_beyond_the_file_are_refused_before_allocating(tmp_path: Path) -> None:
    spc = tmp_path / "huge.spc"
    spc.write_bytes(struct.pack("<BBBbIddI", 0, 0x4B, 0, -128, 2**31, 0.0, 1.0, 1).ljust(600, b"\x00"))
    with pytest.raises(ReaderError, match="fnpts 2147483648 points cannot fit"):
        read_dataset(spc)
    y = np.arange(8, dtype=np.float32)
    opus = write_opus(tmp_path / "series.0", y, 100.0, 800.0, code3=10)
    data = bytearray(opus.read_bytes())
    # turn the data block into a data series claiming 10**6 spectra of 10**6 bytes
    entry = 24 + 12
    t, words, start = struct.unpack_from("<3i", data, entry)
    struct.pack_into("<3i", data, entry, t | 2 << 19, words, start)
    struct.pack_into("<6i", data, start, 0, 10**6, 24, 10**6, 0, 0)
    opus.write_bytes(bytes(data))
    with pytest.raises(ReaderError, match="do not fit in its block"):
        read_dataset(opus)


@pytest.mark.parametrize("suffix", [".spc", ".spe", ".wdf", ".sif"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    bad = tmp_path / f"empty{suffix}"
    bad.write_bytes(b"")
    with pytest.raises(ReaderError, match="empty file") as ei:
        read_dataset(bad)
    assert str(bad) in str(ei.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["spc", "spe", "spe3", "wdf", "sif", "opus"])
def test_corrupted_files_give_a_dataset_or_a_reader_error(tmp_path: Path, kind: str) -> None:
    """Random byte flips, cuts and overwrites: every read ends as a dataset or a ReaderError, never another
    exception or a hang (sif_parser, for one, hangs on a cut header)."""
    good = _good_files(tmp_path)[kind]
    data = good.read_bytes()
    rng = np.random.default_rng(sum(map(ord, kind)))
    outcomes = {"dataset": 0, "ReaderError": 0}
    for i in range(60):
        b = bytearray(data)
        if i % 3 == 0:
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            b = b[: int(rng.integers(0, len(b)))]
        else:
            pos = int(rng.integers(0, len(b)))
            b[pos : pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        f = tmp_path / f"c{i}{good.suffix}"
        f.write_bytes(bytes(b))
        try:
            read_dataset(f)
            outcomes["dataset"] += 1
        except ReaderError as exc:
            assert str(f) in str(exc)
            outcomes["ReaderError"] += 1
    assert outcomes["ReaderError"] >= 20, outcomes  # every cut is an error
