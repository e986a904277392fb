"""Instrument text exports as they arrive: header lines before the data, gzip, B&W Tek, Ocean Insight, LabSpec,
multi-spectrum files and maps. Every file is written here to the vendor's published layout."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spectral_core.errors import ReaderError
from spectral_core.io import concat_datasets, read_dataset, read_spectrum, sniff_format
from spectral_core.spectrum import SpectralDataset


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


AXIS = np.array([200.0, 201.5, 203.0, 204.5, 206.0])
Y = np.array([10.0, 12.5, 30.25, 12.0, 9.5])


# ---- 4. key<sep>value header lines before the data block ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "sep"),
    [
        ("Laser (nm): 785\nIntegration (ms): 100\nSample: PS bead, 10 um\n", ","),
        ("Laser (nm);785\nIntegration;100\nSample;PS bead\n", ";"),
        ("Laser (nm)\t785\nIntegration\t100\nSample\tPS bead\n", "\t"),
        ("Laser (nm)=785\nIntegration=100\nSample=PS bead\n", " "),
    ],
)
def test_key_value_header_lines_become_metadata(tmp_path: Path, header: str, sep: str) -> None:
    body = "".join(f"{x:g}{sep}{y:g}\n" for x, y in zip(AXIS, Y, strict=True))
    p = write(tmp_path / "kv.csv", header + "Shift" + sep + "Counts\n" + body)
    s = read_spectrum(p)
    np.testing.assert_array_equal(s.axis, AXIS)
    np.testing.assert_array_equal(s.intensities, Y.astype(np.float32))
    assert s.metadata["header"]["Laser (nm)"] == "785"
    assert s.metadata["header"]["Integration" if "(ms)" not in header else "Integration (ms)"] == "100"
    assert s.metadata["columns"] == ["Shift", "Counts"]


def test_key_value_header_without_a_column_header_row(tmp_path: Path) -> None:
    # The file: "'Laser (nm)' is not a number" before this reader existed.
    p = write(
        tmp_path / "k.csv",
        "Laser (nm),785\nIntegration,100\n" + "".join(f"{x},{y}\n" for x, y in zip(AXIS, Y, strict=True)),
    )
    s = read_spectrum(p)
    np.testing.assert_array_equal(s.axis, AXIS)
    assert s.metadata["header"] == {"Laser (nm)": "785", "Integration": "100"}


def test_header_lines_before_a_table_of_spectra(tmp_path: Path) -> None:
    rows = "\n".join(";".join(f"{v:g}" for v in Y + i) for i in range(3))
    p = write(
        tmp_path / "t.csv", "Instrument;X100\nOperator;me\n" + ";".join(f"{a:g}" for a in AXIS) + "\n" + rows + "\n"
    )
    ds = read_dataset(p, axis=None)
    assert ds.n_spectra == 3
    np.testing.assert_array_equal(ds.axis, AXIS)
    np.testing.assert_array_equal(ds.X[2], (Y + 2).astype(np.float32))


def test_a_bad_row_after_header_lines_is_still_named(tmp_path: Path) -> None:
    p = write(tmp_path / "b.csv", "Laser: 785\nMode: x\n100,1\n101,oops\n102,3\n")
    with pytest.raises(ReaderError, match=r"line 4, column 2: 'oops' is not a number"):
        read_spectrum(p)


# ---- 5. gzip ------------------------------------------------------------------------------------------------------


def test_gzip_of_text_formats(tmp_path: Path) -> None:
    text = "".join(f"{x},{y}\n" for x, y in zip(AXIS, Y, strict=True))
    p = write(tmp_path / "s.csv.gz", gzip.compress(text.encode()))
    assert sniff_format(p) == "delimited"
    s = read_spectrum(p)
    np.testing.assert_array_equal(s.axis, AXIS)
    assert s.metadata["compression"] == "gzip"
    # bytes in hand (the drop folder) and a gzip without the .gz suffix: decided by the magic bytes
    s2 = read_spectrum(tmp_path / "same.csv", data=p.read_bytes())
    np.testing.assert_array_equal(s2.intensities, Y.astype(np.float32))
    jdx = "##TITLE=t\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##XYPOINTS=(XY..XY)\n100,1\n101,2\n102,3\n##END=\n"
    pj = write(tmp_path / "c.jdx.gz", gzip.compress(jdx.encode()))
    assert sniff_format(pj) == "jcamp"
    np.testing.assert_array_equal(read_spectrum(pj).axis, [100, 101, 102])


def test_gzip_bounds_and_damage(tmp_path: Path) -> None:
    text = ("100,1\n" + "".join(f"{100 + i},{i}\n" for i in range(1, 20000))).encode()
    p = write(tmp_path / "big.csv.gz", gzip.compress(text))
    with pytest.raises(ReaderError, match=r"exceeds 0.1 MiB once decompressed") as e:
        read_dataset(p, max_decompressed_mb=0.1)
    assert e.value.path == str(p)
    assert read_dataset(p).n_points == 20000
    raw = p.read_bytes()
    cut = write(tmp_path / "cut.csv.gz", raw[: len(raw) // 2])
    with pytest.raises(ReaderError, match=r"truncated gzip stream: the member starting at byte 0 ends at byte \d+"):
        read_dataset(cut)
    bad = write(tmp_path / "bad.csv.gz", raw[:10] + b"\xff" * 50)
    with pytest.raises(ReaderError, match=r"corrupt gzip stream .* expected deflate data"):
        read_dataset(bad)
    empty = write(tmp_path / "e.csv.gz", gzip.compress(b""))
    with pytest.raises(ReaderError, match="empty file"):
        read_dataset(empty)
    np.save(tmp_path / "m.npy", np.ones((2, 3)))
    gz_npy = write(tmp_path / "m.npy.gz", gzip.compress((tmp_path / "m.npy").read_bytes()))
    with pytest.raises(ReaderError, match="gzip-compressed npy is not read"):
        read_dataset(gz_npy, axis="1:3:3")


def test_gzip_bomb_never_allocates_past_the_cap(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.txt.gz", gzip.compress(b"0" * (16 * 1024 * 1024), compresslevel=9))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(ReaderError, match="possible decompression bomb"):
        read_dataset(bomb, max_decompressed_mb=1)


# ---- 1. B&W Tek ---------------------------------------------------------------------------------------------------


def _bwtek(
    n_header: int = 88, acquisitions: int = 2, sep: str = ";", dropped: int = 3
) -> tuple[str, dict[str, np.ndarray]]:
    dec = (lambda v: f"{v:.4f}".replace(".", ",")) if sep == ";" else (lambda v: f"{v:.4f}")
    lines = [
        "File Version" + sep + "BWSpec4.11_1",
        "Date" + sep + "2024-03-21 14:43:37",
        "title" + sep + "BWS465-785H",
        "model" + sep + "BTC675N",
        "c code" + sep + "C1234",
        "laser_wavelength" + sep + dec(785.12),
        "intigration times(ms)" + sep + "1500",
    ]
    lines += [f"key_{i}{sep}{i}" for i in range(n_header - len(lines))]
    cols = ["Pixel", "Wavelength", "Wavenumber", "Raman Shift", "Dark", "Reference"]
    for a in range(1, acquisitions + 1):
        cols += [f"Raw data #{a}", f"Dark Subtracted #{a}"]
    lines.append(sep.join(cols))
    n = 12
    wl = np.linspace(780.0, 900.0, n)
    shift = 1e7 / 785.12 - 1e7 / wl
    raw = {a: 1000.0 + 10 * a + np.arange(n) * 3.25 for a in range(1, acquisitions + 1)}
    dark = np.full(n, 100.5)
    for i in range(n):
        cells = [str(i), dec(wl[i]), dec(1e7 / wl[i]), "" if i < dropped else dec(shift[i]), dec(dark[i]), dec(65535)]
        for a in range(1, acquisitions + 1):
            cells += [dec(raw[a][i]), dec(raw[a][i] - dark[i])]
        lines.append(sep.join(cells))
    truth = {"shift": np.round(shift[dropped:], 4), "dark": dark}
    for a in raw:
        truth[f"raw{a}"] = np.round(raw[a][dropped:], 4)
        truth[f"sub{a}"] = np.round(raw[a][dropped:] - 100.5, 4)
    return "\r\n".join(lines) + "\r\n", truth


def test_bwtek_export_two_acquisitions(tmp_path: Path) -> None:
    text, truth = _bwtek()
    p = write(tmp_path / "bw.txt", text)
    assert sniff_format(p) == "bwtek"
    ds = read_dataset(p)
    assert ds.n_spectra == 2
    np.testing.assert_allclose(ds.axis, truth["shift"], atol=1e-9)
    np.testing.assert_allclose(ds.X[0], truth["sub1"], rtol=1e-6)
    np.testing.assert_allclose(ds.X[1], truth["sub2"], rtol=1e-6)
    np.testing.assert_array_equal(ds.meta["acquisition"], [1, 2])
    pv = ds.provenance
    assert pv["reader"] == "bwtek" and pv["rows_without_shift"] == 3
    assert pv["excitation_nm"] == pytest.approx(785.12)
    assert pv["integration_time_ms"] == 1500
    assert pv["model"] == "BTC675N" and pv["serial"] == "C1234"
    assert pv["header"]["title"] == "BWS465-785H"
    raw = read_dataset(p, intensity_column="raw")
    np.testing.assert_allclose(raw.X[1], truth["raw2"], rtol=1e-6)
    one = read_dataset(p, intensity_column="Dark Subtracted #2")
    assert one.n_spectra == 1
    np.testing.assert_allclose(one.X[0], truth["sub2"], rtol=1e-6)
    assert read_spectrum(p, intensity_column="Dark").intensities[0] == pytest.approx(100.5)


def test_bwtek_comma_export_and_single_acquisition(tmp_path: Path) -> None:
    text, truth = _bwtek(sep=",", acquisitions=1, dropped=0)
    s = read_spectrum(write(tmp_path / "bw.csv", text))
    np.testing.assert_allclose(s.axis, truth["shift"], atol=1e-9)
    np.testing.assert_allclose(s.intensities, truth["sub1"], rtol=1e-6)


def test_bwtek_bad_input(tmp_path: Path) -> None:
    text, _ = _bwtek()
    lines = text.split("\r\n")
    cut = write(tmp_path / "cut.txt", "\r\n".join(lines[:-3]) + "\r\n" + lines[-3][:12])
    with pytest.raises(ReaderError, match=r"line 100: 3 cell\(s\) where the column header \(line 89\) has 10"):
        read_dataset(cut)
    no_shift = write(tmp_path / "ns.txt", text.replace("Raman Shift", "Shift"))
    with pytest.raises(ReaderError, match=r"line 89: no 'Raman Shift' column among \['Pixel'"):
        read_dataset(no_shift)
    with pytest.raises(ReaderError, match=r"no intensity column 'Absorbance'"):
        read_dataset(write(tmp_path / "ok.txt", text), intensity_column="Absorbance")
    bad = write(tmp_path / "bad.txt", text.replace("922,5000", "92x5,0000", 1))
    with pytest.raises(ReaderError, match=r"line 94, column 8: '92x5,0000' is not a number"):
        read_dataset(bad)
    header_only = write(tmp_path / "h.txt", "\r\n".join(lines[:89]))
    with pytest.raises(ReaderError, match=r"0 data row\(s\) with a Raman Shift after line 89"):
        read_dataset(header_only)
    no_table = write(tmp_path / "nt.txt", "\r\n".join(lines[:88]))
    with pytest.raises(ReaderError, match=r"no column header line starting with 'Pixel'"):
        read_dataset(no_table)
    with pytest.raises(ReaderError, match="empty file"):
        read_dataset(write(tmp_path / "empty.txt", b""), format="bwtek")


# ---- 2. Ocean Insight ---------------------------------------------------------------------------------------------

OCEANVIEW = """Data from USB4F01234__0__12-00-00-000.txt Node

Date: Mon Mar 04 12:00:00 CET 2024
User: lab
Spectrometer: QEP01234
Trigger mode: 0
Integration Time (sec): 1.000000E-1
Scans to average: 3
Electric dark correction enabled: true
Nonlinearity correction enabled: false
Boxcar width: 0
XAxis mode: Wavelengths
Number of Pixels in Spectrum: {n}
>>>>>Begin Spectral Data<<<<<
{rows}"""

SPECTRASUITE = """SpectraSuite Data File
++++++++++++++++++++++++++++++++++++
Date: Tue Mar 05 10:00:00 CET 2024
User: lab
Dark Spectrum Present: Yes
Reference Spectrum Present: No
Number of Sampled Component Spectra: 1
Spectrometers: QE65000
Laser Wavelength (nm): 532
Integration Time (usec): 100000 (QE65000)
Spectra Averaged: 1 (QE65000)
Number of Pixels in Processed Spectrum: {n}
>>>>>Begin Processed Spectral Data<<<<<
{rows}>>>>>End Processed Spectral Data<<<<<
"""

WL = np.array([800.0, 810.0, 820.0, 830.0, 840.0])


def _rows(x: np.ndarray, y: np.ndarray, comma: bool = False) -> str:
    out = "".join(f"{a:.3f}\t{b:.2f}\n" for a, b in zip(x, y, strict=True))
    return out.replace(".", ",") if comma else out


def test_oceanview_wavelengths_to_raman_shift(tmp_path: Path) -> None:
    p = write(tmp_path / "ov.txt", OCEANVIEW.format(n=5, rows=_rows(WL, Y)))
    assert sniff_format(p) == "oceanview"
    with pytest.raises(ReaderError, match=r"no excitation wavelength is known.*excitation_nm="):
        read_dataset(p)
    s = read_spectrum(p, excitation_nm=785.0)
    np.testing.assert_allclose(s.axis, 1e7 / 785.0 - 1e7 / WL, rtol=1e-12)
    np.testing.assert_array_equal(s.intensities, Y.astype(np.float32))
    assert s.metadata["integration_time_ms"] == pytest.approx(100.0)
    assert s.metadata["serial"] == "QEP01234"
    assert s.metadata["header"]["Scans to average"] == "3"


def test_spectrasuite_excitation_from_header_and_decimal_comma(tmp_path: Path) -> None:
    p = write(tmp_path / "ss.txt", SPECTRASUITE.format(n=5, rows=_rows(WL - 250, Y, comma=True)))
    s = read_spectrum(p)
    np.testing.assert_allclose(s.axis, 1e7 / 532.0 - 1e7 / (WL - 250), rtol=1e-12)
    np.testing.assert_allclose(s.intensities, Y, rtol=1e-6)
    assert s.metadata["excitation_nm"] == 532.0
    assert s.metadata["integration_time_ms"] == pytest.approx(100.0)
    # the option overrides the header
    s2 = read_spectrum(p, excitation_nm=533.0)
    np.testing.assert_allclose(s2.axis, 1e7 / 533.0 - 1e7 / (WL - 250), rtol=1e-12)


def test_oceanview_raman_shift_mode_and_bad_input(tmp_path: Path) -> None:
    text = OCEANVIEW.format(n=5, rows=_rows(AXIS, Y)).replace("XAxis mode: Wavelengths", "XAxis mode: Raman Shifts")
    np.testing.assert_allclose(read_spectrum(write(tmp_path / "r.txt", text)).axis, AXIS)
    short = write(tmp_path / "short.txt", OCEANVIEW.format(n=2048, rows=_rows(WL, Y)))
    with pytest.raises(ReaderError, match=r"5 data row\(s\) after line 14 but the header says 2048 pixels \(truncated"):
        read_dataset(short, excitation_nm=785)
    bad = write(tmp_path / "bad.txt", OCEANVIEW.format(n=5, rows=_rows(WL, Y)).replace("820.000\t", "820.000\t\t1\t"))
    with pytest.raises(ReaderError, match=r"line 17: 3 cell\(s\)"):
        read_dataset(bad, excitation_nm=785)
    pix = write(tmp_path / "pix.txt", text.replace("Raman Shifts", "Pixels"))
    with pytest.raises(ReaderError, match="XAxis mode 'Pixels'"):
        read_dataset(pix)
    with pytest.raises(ReaderError, match=r"no '>>>>>Begin Spectral Data<<<<<' line"):
        read_dataset(write(tmp_path / "x.txt", "100 1\n101 2\n"), format="oceanview")


# ---- 3. Horiba LabSpec -------------------------------------------------------------------------------------------


def test_labspec_single_spectrum(tmp_path: Path) -> None:
    head = "#Acq. time (s)=\t10\n#Accumulations=\t2\n#Laser=\t785.0\n#Instrument=\tLabRAM HR Evolution\n"
    p = write(tmp_path / "ls.txt", head + "".join(f"{x}\t{y}\n" for x, y in zip(AXIS[::-1], Y[::-1], strict=True)))
    assert sniff_format(p) == "labspec"
    s = read_spectrum(p)
    np.testing.assert_array_equal(s.axis, AXIS)
    np.testing.assert_array_equal(s.intensities, Y.astype(np.float32))
    assert s.metadata["excitation_nm"] == 785.0
    assert s.metadata["integration_time_s"] == 10
    assert s.metadata["header"]["Instrument"] == "\tLabRAM HR Evolution".strip()


def test_labspec_map_is_n_spectra_with_coordinates(tmp_path: Path) -> None:
    coords = [(-5.0, 0.0), (0.0, 0.0), (-5.0, 2.5), (0.0, 2.5)]
    lines = ["#Acq. time (s)=\t1", "\t\t" + "\t".join(f"{a:g}" for a in AXIS[::-1])]
    for k, (x, y) in enumerate(coords):
        lines.append(f"{x:g}\t{y:g}\t" + "\t".join(f"{v:g}" for v in (Y + k)[::-1]))
    p = write(tmp_path / "map.txt", "\n".join(lines) + "\n")
    ds = read_dataset(p)
    assert ds.n_spectra == 4 and ds.provenance["layout"] == "map"
    np.testing.assert_array_equal(ds.axis, AXIS)
    np.testing.assert_array_equal(ds.X[3], (Y + 3).astype(np.float32))
    np.testing.assert_array_equal(ds.meta["x"], [c[0] for c in coords])
    np.testing.assert_array_equal(ds.meta["y"], [c[1] for c in coords])
    assert ds.spectrum(2).metadata["y"] == 2.5
    with pytest.raises(ReaderError, match="holds 4 spectra where one was expected"):
        read_spectrum(p)
    broken = write(tmp_path / "broken.txt", "\n".join(lines[:-1]) + "\n" + lines[-1][:9])
    with pytest.raises(ReaderError, match=r"line 6: \d cell\(s\) where 7 were expected"):
        read_dataset(broken)


def test_labspec_time_series_with_decimal_commas(tmp_path: Path) -> None:
    lines = ["#Laser=\t532", "\t" + "\t".join(f"{a:g}".replace(".", ",") for a in AXIS)]
    lines += [f"{t}\t" + "\t".join(f"{v:g}".replace(".", ",") for v in Y * (t + 1)) for t in range(3)]
    ds = read_dataset(write(tmp_path / "ts.txt", "\n".join(lines)))
    assert ds.provenance["layout"] == "series"
    np.testing.assert_array_equal(ds.meta["t"], [0, 1, 2])
    np.testing.assert_allclose(ds.X[2], Y * 3)


# ---- 6. multi-spectrum files everywhere ------------------------------------------------------------------------


def test_meta_survives_subset_select_and_concat() -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = SpectralDataset(
        X=X,
        axis=[1.0, 2.0, 3.0],
        y=np.array([0, 1, 0, 1]),
        classes=("a", "b"),
        meta={"x": np.array([0.0, 1.0, 2.0, 3.0]), "file": np.array(["f", "f", "g", "g"])},
    )
    sub = ds.subset(np.array([3, 0]))
    np.testing.assert_array_equal(sub.meta["x"], [3.0, 0.0])
    sel = ds.select_classes(["b"])
    np.testing.assert_array_equal(sel.meta["file"], ["f", "g"])
    other = SpectralDataset(X=X[:1], axis=[1.0, 2.0, 3.0], y=np.array([0]), classes=("a", "b"))
    cat = concat_datasets([ds, other])
    assert cat.meta["x"].shape == (5,) and np.isnan(cat.meta["x"][4])
    assert cat.meta["file"].tolist() == ["f", "f", "g", "g", ""]
    with pytest.raises(ValueError, match=r"meta column 'x' has shape \(2,\), expected \(4,\)"):
        SpectralDataset(X=X, axis=[1.0, 2.0, 3.0], meta={"x": np.zeros(2)})
    with pytest.raises(ValueError, match="numbers or strings only"):
        SpectralDataset(X=X, axis=[1.0, 2.0, 3.0], meta={"x": np.array([{}, {}, {}, {}], dtype=object)})


def test_class_folders_of_multi_spectrum_files_group_by_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text, _ = _bwtek()
    write(tmp_path / "PS" / "a.txt", text)
    write(tmp_path / "PS" / "b.txt.gz", gzip.compress(text.encode()))
    write(tmp_path / "PE" / "c.txt", text)
    with caplog.at_level(logging.INFO, logger="spectral_core.io._folder"):
        ds = read_dataset(tmp_path)
    assert ds.n_spectra == 6
    assert ds.classes == ("PE", "PS")
    assert ds.groups is not None
    assert ds.groups.tolist() == ["PE/c.txt"] * 2 + ["PS/a.txt"] * 2 + ["PS/b.txt.gz"] * 2
    np.testing.assert_array_equal(ds.meta["acquisition"], [1, 2] * 3)
    assert "groups_from" in ds.provenance
    assert "each file is the group of its spectra" in caplog.text


def test_class_folders_of_single_spectra_keep_no_groups(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        write(tmp_path / cls / "s.csv", "".join(f"{x},{y}\n" for x, y in zip(AXIS, Y, strict=True)))
    ds = read_dataset(tmp_path)
    assert ds.groups is None and "groups_from" not in ds.provenance


# ---- 7. bounded messages -----------------------------------------------------------------------------------------


def test_errors_quote_at_most_40_characters_of_content(tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    cases = [
        (write(tmp_path / "cell.csv", f"100,1\n101,{huge}\n102,3\n"), {}),
        (write(tmp_path / "nan.csv", f"100,1\n101,{'n' * 100}\n"), {}),
        (write(tmp_path / "col.csv", f"label,100,101\n{huge},1,2\n"), {"label_column": huge}),
        (
            write(
                tmp_path / "j.jdx", f"##TITLE=t\n##JCAMP-DX=4.24\n##FIRSTX={huge}\n##XYDATA=(X++(Y..Y))\n1 2\n##END=\n"
            ),
            {},
        ),
        (
            write(tmp_path / "ov.txt", OCEANVIEW.format(n=3, rows=f"800\t1\n810\t{huge}\n820\t3\n")),
            {"excitation_nm": 785},
        ),
        (write(tmp_path / "bw.txt", _bwtek()[0].replace("922,5000", huge, 1)), {}),
    ]
    for path, opts in cases:
        with pytest.raises(ReaderError) as e:
            read_dataset(path, **opts)
        assert len(str(e.value)) < 400 + len(str(path)), (path.name, str(e.value)[:500])
        assert "characters)" in str(e.value) or path.name == "nan.csv", str(e.value)[:300]


def test_header_metadata_values_are_bounded(tmp_path: Path) -> None:
    p = write(tmp_path / "h.csv", f"Note: {'y' * 100_000}\nLaser: 785\n100,1\n101,2\n")
    s = read_spectrum(p)
    assert len(s.metadata["header"]["Note"]) == 1000


# ---- the registry -------------------------------------------------------------------------------------------------


def test_format_option_and_unknown_options(tmp_path: Path) -> None:
    p = write(tmp_path / "s.csv", "".join(f"{x},{y}\n" for x, y in zip(AXIS, Y, strict=True)))
    with pytest.raises(ReaderError, match=r"no column header line starting with 'Pixel'"):
        read_dataset(p, format="bwtek")
    with pytest.raises(ReaderError, match="format=npy but the content is text"):
        read_dataset(p, format="npy")
    with pytest.raises(ReaderError, match="unknown reader option"):
        read_dataset(p, intensity_colum="raw")


def test_npz_round_trip_keeps_per_spectrum_meta(tmp_path: Path) -> None:
    from spectral_core.io import write_npz

    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    ds = SpectralDataset(X=X, axis=[1.0, 2.0, 3.0], meta={"x_um": np.array([0.5, 1.5]), "file": np.array(["a", "b"])})
    back = read_dataset(write_npz(ds, tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.meta["x_um"], [0.5, 1.5])
    assert back.meta["file"].tolist() == ["a", "b"]


def test_cli_reading_options_reach_the_vendor_readers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ramanedge.cli import main

    text, truth = _bwtek()
    p = write(tmp_path / "bw.txt.gz", gzip.compress(text.encode()))
    assert main(["info", str(p), "--intensity-column", "raw"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spectra"] == 2 and out["intensity"]["max"] == pytest.approx(truth["raw2"].max())
    assert main(["info", str(p), "--max-decompressed-mb", "0.001"]) != 0
    assert "possible decompression bomb" in capsys.readouterr().err
    ov = write(tmp_path / "ov.txt", OCEANVIEW.format(n=5, rows=_rows(WL, Y)))
    assert main(["info", str(ov), "--excitation-nm", "785"]) == 0
    assert json.loads(capsys.readouterr().out)["axis"]["min"] == pytest.approx(1e7 / 785 - 1e7 / 800)


def test_a_generic_pixel_wavelength_table_is_not_taken_for_bwtek(tmp_path: Path) -> None:
    p = write(tmp_path / "g.csv", "Pixel,Wavelength,Intensity\n0,500.0,1\n1,500.5,2\n")
    assert sniff_format(p) == "delimited"
    text, _ = _bwtek(n_header=3)  # a short header: only the column header line tells
    assert (
        sniff_format(write(tmp_path / "bw.txt", text.replace("BWSpec", "Spec").replace("laser_wavelength", "laser")))
        == "bwtek"
    )


# ---- properties ---------------------------------------------------------------------------------------------------

_KEYS = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll"), whitelist_characters=" ()_"), min_size=1, max_size=20
)
_VALUES = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters=" .-"), max_size=20
)


@given(
    st.lists(st.tuples(_KEYS, _VALUES), min_size=2, max_size=8),
    st.sampled_from([(": ", ","), (";", ";"), ("\t", "\t"), ("=", ",")]),
    st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=30),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
def test_any_key_value_header_leaves_the_data_as_it_is(
    tmp_path: Path, pairs: list[tuple[str, str]], seps: tuple[str, str], ys: list[float]
) -> None:
    kv, sep = seps
    pairs = [(k.strip() or "k", v) for k, v in pairs if not k.strip().lower().startswith(("nan", "inf"))]
    assume(
        len(pairs) >= 2
        and not re.match(r"^\W*(wn\b|x\b|wave|raman|shift|cm|pixel|nm\b|lambda|freq)", pairs[-1][0], re.I)
    )
    header = "".join(f"{k}{kv}{v}\n" for k, v in pairs)
    axis = 100.0 + np.arange(len(ys)) * 1.5
    body = "".join(f"{float(a)!r}{sep}{float(np.float32(y))!r}\n" for a, y in zip(axis, ys, strict=True))
    s = read_spectrum(write(tmp_path / "p.csv", header + body))
    np.testing.assert_array_equal(s.axis, axis)
    np.testing.assert_array_equal(s.intensities, np.asarray(ys, dtype=np.float32))
    assert len(s.metadata["header"]) == len({k.strip()[:80] for k, _ in pairs})


@given(st.sampled_from(["bwtek", "oceanview", "labspec"]), st.binary(max_size=600), st.booleans())
@settings(
    max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
def test_vendor_readers_and_gzip_raise_only_reader_errors_on_junk(
    tmp_path: Path, fmt: str, junk: bytes, compress: bool
) -> None:
    seeds = {
        "bwtek": _bwtek()[0][:3000],
        "oceanview": OCEANVIEW.format(n=5, rows=_rows(WL, Y)),
        "labspec": "#Laser=\t785\n\t\t1\t2\n0\t0\t5\t6\n",
    }
    data = seeds[fmt].encode()[: len(junk)] + junk
    p = write(tmp_path / ("j.txt.gz" if compress else "j.txt"), gzip.compress(data) if compress else data)
    try:
        ds = read_dataset(p, format=fmt, excitation_nm=785 if fmt == "oceanview" else None)
    except ReaderError as exc:
        assert str(p) in str(exc) and len(str(exc)) < 600 + len(str(p))
        return
    assert np.all(np.isfinite(ds.X)) and np.all(np.diff(ds.axis) > 0)


def test_several_multi_spectrum_files_are_grouped_by_file(tmp_path: Path) -> None:
    from spectral_core.io import read_datasets

    text, _ = _bwtek()
    a, b = write(tmp_path / "a.txt", text), write(tmp_path / "b.txt", text)
    ds = read_datasets([a, b])
    assert ds.n_spectra == 4
    assert ds.groups is not None and ds.groups.tolist() == [str(a)] * 2 + [str(b)] * 2
    one = write(tmp_path / "one.csv", "".join(f"{x},{y}\n" for x, y in zip(AXIS, Y, strict=True)))
    assert read_datasets([one, one]).groups is None


def test_decimal_commas_that_start_after_the_first_row(tmp_path: Path) -> None:
    rows = "800\t10\n" + "".join(f"{w:.1f}\t{y:.2f}\n".replace(".", ",") for w, y in zip(WL[1:], Y[1:], strict=True))
    s = read_spectrum(write(tmp_path / "ov.txt", OCEANVIEW.format(n=5, rows=rows)), excitation_nm=785)
    np.testing.assert_allclose(s.axis, 1e7 / 785 - 1e7 / WL, rtol=1e-12)
    np.testing.assert_allclose(s.intensities, Y)
    ls = "#Laser=\t785\n200\t10\n" + "".join(
        f"{a}\t{y}\n".replace(".", ",") for a, y in zip(AXIS[1:], Y[1:], strict=True)
    )
    np.testing.assert_allclose(read_spectrum(write(tmp_path / "ls.txt", ls)).intensities, Y)


def test_a_gzip_file_larger_than_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    import os

    payload = os.urandom(300_000)  # incompressible: the .gz is as large as its content
    p = write(tmp_path / "r.txt.gz", gzip.compress(payload))
    with pytest.raises(ReaderError, match=r"gzip file of \d+ bytes exceeds the decompressed-size cap"):
        read_dataset(p, max_decompressed_mb=0.1)
    with pytest.raises(ReaderError, match=r"gzip file of \d+ bytes cannot hold under 0.1 MiB"):
        read_dataset(tmp_path / "x.txt", data=p.read_bytes(), max_decompressed_mb=0.1)


def test_binary_readers_per_spectrum_facts_are_meta_columns() -> None:
    from spectral_core.io._binary import build_dataset

    per = [{"x": 0.0, "y": 1.5, "note": "a"}, {"x": 2.0, "y": 1.5, "note": "b", "extra": 1}]
    ds = build_dataset(
        Path("m.wdf"), np.ones((2, 3)), np.array([1.0, 2.0, 3.0]), reader="wdf", metadata={}, spectrum_metadata=per
    )
    assert sorted(ds.meta) == ["note", "x", "y"]
    np.testing.assert_array_equal(ds.meta["x"], [0.0, 2.0])
    assert ds.provenance["spectrum_metadata"] == per


def test_a_table_whose_first_labels_are_text_keeps_every_row(tmp_path: Path) -> None:
    """Rows labelled A and B before one labelled 0 are data, not instrument header lines (no row may vanish)."""
    p = write(tmp_path / "t.csv", "label,400,500,600,700\nA,1,2,3,4\nB,2,3,4,5\n0,3,4,5,6\n")
    for options in ({}, {"axis": "400:700:4"}):
        ds = read_dataset(p, **options)
        assert ds.n_spectra == 3 and sorted(ds.classes) == ["0", "A", "B"], options
        assert ds.y is not None
        assert [ds.classes[int(c)] for c in ds.y] == ["A", "B", "0"]
        np.testing.assert_array_equal(ds.X[:, 0], [1, 2, 3])
