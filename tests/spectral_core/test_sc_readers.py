"""Every reader on small fixture files written in tmp_path, byte for byte where the format matters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectral_core.errors import MissingExtraError, ReaderError
from spectral_core.io import (
    read_dataset,
    read_datasets,
    read_jcamp,
    read_npy,
    read_spectrum,
    read_table,
    sniff_format,
    write_csv,
    write_npz,
)
from spectral_core.spectrum import SpectralDataset, Spectrum


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_bytes(text.encode("utf-8"))
    else:
        path.write_bytes(text)
    return path


# --- two-column text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sep", "name"), [(",", "a.csv"), ("\t", "a.tsv"), (";", "a.csv"), (" ", "a.txt"), ("   ", "a.txt")]
)
def test_two_column_delimiters(tmp_path: Path, sep: str, name: str) -> None:
    p = write(tmp_path / name, "".join(f"{x}{sep}{y}\n" for x, y in [(100, 1.5), (101, 2.5), (102.5, -3)]))
    s = read_spectrum(p)
    np.testing.assert_array_equal(s.axis, [100.0, 101.0, 102.5])
    np.testing.assert_array_equal(s.intensities, np.array([1.5, 2.5, -3], dtype=np.float32))
    ds = read_dataset(p)
    assert ds.X.shape == (1, 3) and ds.y is None


def test_rruff_style_header_and_descending_axis(tmp_path: Path) -> None:
    text = (
        "##NAMES=Albite\n##RRUFFID=R040068\n##LOCALITY=Somewhere, Earth\n"
        "1200.5, 10\n1100.25, 20\n1000, 30\n##END=\n"
    )
    s = read_spectrum(write(tmp_path / "Albite__R040068.txt", text))
    np.testing.assert_array_equal(s.axis, [1000.0, 1100.25, 1200.5])
    # Intensities travel with their wavenumbers when the axis is reversed.
    np.testing.assert_array_equal(s.intensities, [30, 20, 10])
    assert s.metadata["header"]["NAMES"] == "Albite"
    assert s.metadata["header"]["RRUFFID"] == "R040068"


def test_non_numeric_header_row_and_bom(tmp_path: Path) -> None:
    p = write(tmp_path / "s.csv", b'\xef\xbb\xbf"Raman shift (cm-1)","Intensity"\r\n200,1\r\n201,2\r\n')
    s = read_spectrum(p)
    assert s.metadata["columns"] == ["Raman shift (cm-1)", "Intensity"]
    np.testing.assert_array_equal(s.intensities, [1, 2])


def test_multi_word_header_in_whitespace_file(tmp_path: Path) -> None:
    s = read_spectrum(write(tmp_path / "v.txt", "Raman Shift   Intensity (a.u.)\n100  5\n200  6\n"))
    np.testing.assert_array_equal(s.intensities, [5, 6])
    assert s.metadata["header"]["HEADER"] == "Raman Shift Intensity (a.u.)"


def test_latin1_fallback_for_textual_content(tmp_path: Path) -> None:
    p = write(tmp_path / "s.txt", "# Probe: Quarz \xb5m\n100 1\n101 2\n".encode("latin-1"))
    s = read_spectrum(p)
    assert s.metadata["encoding"] == "latin-1"
    np.testing.assert_array_equal(s.axis, [100, 101])


def test_decimal_comma_with_semicolon(tmp_path: Path) -> None:
    s = read_spectrum(write(tmp_path / "eu.csv", "x;y\n100,5;1,25\n101,5;2,5\n"))
    np.testing.assert_array_equal(s.axis, [100.5, 101.5])
    np.testing.assert_array_equal(s.intensities, [1.25, 2.5])


def test_write_csv_spectrum_round_trip_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = Spectrum(np.sort(rng.uniform(100, 3000, 50)), rng.normal(0, 1e4, 50).astype(np.float32))
    p = write_csv(s, tmp_path / "out" / "s.csv")
    assert p.read_text().splitlines()[0] == "wavenumber_cm-1,intensity"
    back = read_spectrum(p)
    np.testing.assert_array_equal(back.axis, s.axis)
    np.testing.assert_array_equal(back.intensities, s.intensities)


def test_write_csv_dataset_round_trip_keeps_labels_groups_and_class_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ds = SpectralDataset(
        X=rng.normal(size=(5, 7)).astype(np.float32),
        axis=np.linspace(400, 1800, 7),
        y=np.array([2, 0, 2, 0, 0]),
        classes=("zeta", "alpha", "mid"),  # "alpha" has no spectrum: kept by ##CLASSES
        groups=np.array(["p1", "p1", "p2", "p3", "p3"]),
    )
    back = read_dataset(write_csv(ds, tmp_path / "ds.csv"))
    assert back.classes == ds.classes
    np.testing.assert_array_equal(back.y, ds.y)
    np.testing.assert_array_equal(back.groups, ds.groups)
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.axis, ds.axis)


# --- tables --------------------------------------------------------------------------------------


def test_table_rows_with_wavenumber_header_and_label_column(tmp_path: Path) -> None:
    p = write(tmp_path / "t.csv", "sample_class,500,600,700\nb,1,2,3\na,4,5,6\nb,7,8,9\n")
    ds = read_dataset(p, label_column="sample_class")
    np.testing.assert_array_equal(ds.axis, [500, 600, 700])
    assert ds.classes == ("a", "b")
    np.testing.assert_array_equal(ds.y, [1, 0, 1])
    np.testing.assert_array_equal(ds.X[2], [7, 8, 9])


def test_table_rows_descending_header_reverses_columns(tmp_path: Path) -> None:
    ds = read_table(write(tmp_path / "t.csv", "700,600,500\n1,2,3\n4,5,6\n"))
    np.testing.assert_array_equal(ds.axis, [500, 600, 700])
    np.testing.assert_array_equal(ds.X, [[3, 2, 1], [6, 5, 4]])


def test_table_index_header_needs_axis(tmp_path: Path) -> None:
    p = write(tmp_path / "t.csv", "0,1,2,3\n1,2,3,4\n5,6,7,8\n")
    with pytest.raises(ReaderError, match=r"column indices 0..3"):
        read_dataset(p)
    ds = read_dataset(p, axis="100:400:4")
    np.testing.assert_array_equal(ds.axis, [100, 200, 300, 400])
    assert ds.X.shape == (2, 4)  # the index header is not taken for a spectrum


def test_table_axis_from_npy_file_and_external_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "axis.npy", np.array([1.0, 2.0, 3.0]))
    np.save(tmp_path / "lab.npy", np.array([1, 0]))
    p = write(tmp_path / "t.txt", "9 8 7\n1 2 1\n")
    ds = read_dataset(p, axis=str(tmp_path / "axis.npy"), labels=str(tmp_path / "lab.npy"), class_names="neg,pos")
    assert ds.classes == ("neg", "pos")
    np.testing.assert_array_equal(ds.y, [1, 0])


def test_table_columns_layout_microplastics_style(tmp_path: Path) -> None:
    text = "WN;PS V1;PA V1;PS V2\n-26.9;0.1;0.2;0.3\n-24.0;0.4;0.5;0.6\n-21.1;0.7;0.8;0.9\n"
    ds = read_dataset(write(tmp_path / "FW.CSV", text), label_from_column=r"^(\S+)")
    np.testing.assert_allclose(ds.axis, [-26.9, -24.0, -21.1])
    assert ds.classes == ("PS", "PA")  # order of first appearance
    np.testing.assert_array_equal(ds.y, [0, 1, 0])
    np.testing.assert_array_equal(ds.X[1], np.array([0.2, 0.5, 0.8], dtype=np.float32))
    assert ds.provenance["columns"] == ["PS V1", "PA V1", "PS V2"]
    unlabelled = read_dataset(tmp_path / "FW.CSV")
    assert unlabelled.y is None and unlabelled.X.shape == (3, 3)


def test_table_column_not_matching_regex(tmp_path: Path) -> None:
    p = write(tmp_path / "t.csv", "WN;PS V1;??\n1;1;1\n2;2;2\n3;3;3\n")
    with pytest.raises(ReaderError, match="does not match label_from_column"):
        read_dataset(p, label_from_column=r"^([A-Z]+) V")


def test_read_datasets_stacks_files_on_one_axis(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "WN;PS;PA\n1;1;2\n2;3;4\n3;5;6\n")
    b = write(tmp_path / "b.csv", "WN;PA V1;PE V1\n1;7;8\n2;9;10\n3;11;12\n")
    ds = read_datasets([a, b], label_from_column=r"^(\S+)")
    assert ds.classes == ("PS", "PA", "PE")
    np.testing.assert_array_equal(ds.y, [0, 1, 1, 2])
    c = write(tmp_path / "c.csv", "WN;PS\n1;1\n2;2\n4;3\n")
    with pytest.raises(ReaderError, match="differs"):
        read_datasets([a, c], label_from_column=r"^(\S+)")


# --- npy -----------------------------------------------------------------------------------------


def test_bacteria_id_pair(tmp_path: Path) -> None:
    X = np.random.default_rng(2).normal(size=(6, 10))
    np.save(tmp_path / "X_reference.npy", X)
    np.save(tmp_path / "y_reference.npy", np.array([0.0, 1, 2, 2, 1, 0]))  # Bacteria-ID stores floats
    ds = read_dataset(tmp_path / "X_reference.npy", axis="400:1800:10")
    assert ds.classes == ("0", "1", "2")
    np.testing.assert_array_equal(ds.y, [0, 1, 2, 2, 1, 0])
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))
    assert ds.provenance["layout"] == "bacteria-id pair"
    with pytest.raises(ReaderError, match="label file of a Bacteria-ID pair"):
        read_dataset(tmp_path / "y_reference.npy", axis="400:1800:10")
    with pytest.raises(ReaderError, match="no axis"):
        read_dataset(tmp_path / "X_reference.npy")


def test_npy_matrix_with_one_hot_labels_and_transposed_storage(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "obs.npy", X.T)  # points x spectra
    np.save(tmp_path / "onehot.npy", np.eye(3)[[2, 0, 1]])
    ds = read_npy(tmp_path / "obs.npy", axis=np.array([1.0, 2, 3, 4]), labels=str(tmp_path / "onehot.npy"))
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.y, [2, 0, 1])
    assert ds.provenance["transposed"] is True


def test_class_names_from_json(tmp_path: Path) -> None:
    np.save(tmp_path / "obs.npy", np.ones((2, 3)) * [[1], [2]] + np.arange(3))
    (tmp_path / "labels.json").write_text(json.dumps({"classes": ["Quartz", "Calcite"]}))
    ds = read_dataset(
        tmp_path / "obs.npy", axis="1:3:3", labels=[1, 0], class_names=str(tmp_path / "labels.json")
    )
    assert ds.classes == ("Quartz", "Calcite")
    assert ds.class_counts() == {"Quartz": 1, "Calcite": 1}


# --- JCAMP-DX ------------------------------------------------------------------------------------

JCAMP_XYDATA = """\
##TITLE=calcite test
##JCAMP-DX=4.24
##DATA TYPE=RAMAN SPECTRUM
##XUNITS=1/CM
##YUNITS=ARBITRARY UNITS
##FIRSTX=1000
##LASTX=1014
##DELTAX=2
##XFACTOR=1
##YFACTOR=0.5
##FIRSTY=10
##NPOINTS=8
##XYDATA=(X++(Y..Y))
1000 20 22 24 26  $$ four values
1008 28,30-4-6
##END=
"""


def test_jcamp_xydata_affn(tmp_path: Path) -> None:
    s = read_jcamp(write(tmp_path / "c.jdx", JCAMP_XYDATA))
    np.testing.assert_array_equal(s.axis, np.arange(1000, 1015, 2))
    # YFACTOR=0.5 applies; "-4-6" are two values separated by their signs (AFFN).
    np.testing.assert_array_equal(s.intensities, [10, 11, 12, 13, 14, 15, -2, -3])
    assert s.metadata["title"] == "calcite test"
    assert sniff_format(tmp_path / "c.jdx") == "jcamp"
    assert read_dataset(tmp_path / "c.jdx").provenance["reader"] == "jcamp"


def test_jcamp_descending_xydata_and_xfactor(tmp_path: Path) -> None:
    text = (
        "##TITLE=desc\n##JCAMP-DX=5.01\n##XUNITS=1/CM\n##FIRSTX=3000\n##LASTX=2997\n##XFACTOR=0.1\n"
        "##YFACTOR=1\n##NPOINTS=4\n##XYDATA=(X++(Y..Y))\n30000 1 2\n29980 3 4\n##END=\n"
    )
    s = read_jcamp(write(tmp_path / "d.dx", text))
    np.testing.assert_array_equal(s.axis, [2997, 2998, 2999, 3000])
    np.testing.assert_array_equal(s.intensities, [4, 3, 2, 1])


def test_jcamp_xypoints(tmp_path: Path) -> None:
    text = (
        "##TITLE=pts\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##XFACTOR=1\n##YFACTOR=2\n##NPOINTS=3\n"
        "##XYPOINTS=(XY..XY)\n100.5, 1; 150.25, 2\n200, 3\n##END=\n"
    )
    s = read_spectrum(write(tmp_path / "p.jdx", text))
    np.testing.assert_array_equal(s.axis, [100.5, 150.25, 200])
    np.testing.assert_array_equal(s.intensities, [2, 4, 6])


def test_jcamp_nanometres_need_excitation(tmp_path: Path) -> None:
    text = (
        "##TITLE=nm\n##JCAMP-DX=4.24\n##XUNITS=NANOMETERS\n##FIRSTX=800\n##LASTX=850\n##NPOINTS=3\n"
        "##XYDATA=(X++(Y..Y))\n800 1 2 3\n##END=\n"
    )
    p = write(tmp_path / "nm.jdx", text)
    with pytest.raises(ReaderError, match="excitation_nm"):
        read_jcamp(p)
    s = read_jcamp(p, excitation_nm=785.0)
    np.testing.assert_allclose(s.axis, 1e7 / 785.0 - 1e7 / np.array([800.0, 825.0, 850.0]))
    assert read_dataset(p, excitation_nm=785.0).X.shape == (1, 3)


@pytest.mark.parametrize(
    ("data_line", "match"),
    [("1000 A0j1", "compressed ASDF"), ("1000 1 ? 3", "missing value"), ("1000 1 2 3 4 5", "NPOINTS=4")],
)
def test_jcamp_rejections(tmp_path: Path, data_line: str, match: str) -> None:
    text = (
        "##TITLE=x\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##FIRSTX=1000\n##LASTX=1003\n##NPOINTS=4\n"
        f"##XYDATA=(X++(Y..Y))\n{data_line}\n##END=\n"
    )
    with pytest.raises(ReaderError, match=match):
        read_jcamp(write(tmp_path / "x.jdx", text))


def test_jcamp_x_check_and_units(tmp_path: Path) -> None:
    bad_x = (
        "##TITLE=x\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##FIRSTX=1000\n##LASTX=1003\n##NPOINTS=4\n"
        "##XYDATA=(X++(Y..Y))\n1000 1 2\n1010 3 4\n##END=\n"
    )
    with pytest.raises(ReaderError, match="X check failed"):
        read_jcamp(write(tmp_path / "x.jdx", bad_x))
    with pytest.raises(ReaderError, match="not a Raman shift"):
        read_jcamp(write(tmp_path / "u.jdx", bad_x.replace("1/CM", "SECONDS").replace("1010 3", "1002 3")))
    compound = "##TITLE=a\n##JCAMP-DX=5\n##BLOCKS=2\n##END=\n"
    with pytest.raises(ReaderError, match="compound"):
        read_jcamp(write(tmp_path / "b.jdx", compound))


# --- MATLAB --------------------------------------------------------------------------------------


def test_mat_v5_with_class_names(tmp_path: Path) -> None:
    from scipy.io import savemat

    X = np.random.default_rng(3).normal(size=(4, 6))
    savemat(tmp_path / "d.mat", {"X": X.T, "Y": np.array([[0, 2, 1, 2]]), "wave_number": np.arange(6.0)[:, None]})
    ds = read_dataset(tmp_path / "d.mat", class_names="COVID-19,Suspected,Healthy")
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))  # transposed back by matching the axis
    np.testing.assert_array_equal(ds.y, [0, 2, 1, 2])
    assert ds.classes == ("COVID-19", "Suspected", "Healthy")
    savemat(tmp_path / "e.mat", {"spectra": X, "lab": np.array([0, 1, 0, 1])})
    ds2 = read_dataset(tmp_path / "e.mat", y_var="lab", axis="10:60:6")
    np.testing.assert_array_equal(ds2.y, [0, 1, 0, 1])
    with pytest.raises(ReaderError, match="no variable 'nope'"):
        read_dataset(tmp_path / "e.mat", y_var="nope", axis="10:60:6")


def test_mat_v73_hdf5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    X = np.random.default_rng(4).normal(size=(5, 7))
    p = tmp_path / "v73.mat"
    # A MATLAB v7.3 file: a 512-byte user block, then HDF5 with arrays stored column-major (transposed).
    with h5py.File(p, "w", userblock_size=512) as f:
        f["X"] = X.T.T.T  # MATLAB X is (7 points x 5 spectra) -> stored as (5, 7)
        f["Y"] = np.array([[0.0, 1, 1, 0, 1]]).T
        f["wave_number"] = np.linspace(400, 1000, 7)[None, :]
    with open(p, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, test".ljust(128, b" "))
    ds = read_dataset(p)
    assert ds.provenance["format"] == "v7.3"
    np.testing.assert_array_equal(ds.X, X.astype(np.float32))
    np.testing.assert_array_equal(ds.y, [0, 1, 1, 0, 1])


def test_mat_v73_without_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    p = tmp_path / "v.mat"
    p.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r"\[hdf5\]"):
        read_dataset(p)


# --- class folders -------------------------------------------------------------------------------


def test_class_folders_with_pattern(tmp_path: Path) -> None:
    for cls, rows in {"MEL": 2, "A-S": 3}.items():
        (tmp_path / cls).mkdir()
        write(tmp_path / cls / "COOH.csv", "0,1,2\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(rows)))
        write(tmp_path / cls / "NH2.csv", "0,1,2\n9,9,9\n")
    (tmp_path / "README.txt").write_text("not data")
    ds = read_dataset(tmp_path, pattern="COOH.csv", axis="100:300:3")
    assert ds.classes == ("A-S", "MEL")
    assert ds.class_counts() == {"A-S": 3, "MEL": 2}
    assert ds.provenance["files"] == {"A-S": ["A-S/COOH.csv"], "MEL": ["MEL/COOH.csv"]}
    both = read_dataset(tmp_path, axis="100:300:3")
    assert both.class_counts() == {"A-S": 4, "MEL": 3}


def test_class_folders_of_single_spectra(tmp_path: Path) -> None:
    for cls in ("quartz", "calcite"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            write(tmp_path / cls / f"{cls}{k}.txt", "##NAMES=x\n100, 1\n200, 2\n300, 3\n")
    ds = read_dataset(tmp_path, class_names="quartz,calcite")
    assert ds.classes == ("quartz", "calcite")
    assert ds.class_counts() == {"quartz": 2, "calcite": 2}


def test_class_folders_of_spectra_on_different_axes_need_resample(tmp_path: Path) -> None:
    for cls, start in (("quartz", 100.0), ("calcite", 97.5)):
        (tmp_path / cls).mkdir()
        x = np.arange(start, start + 1001.0, 2.5)
        lines = "".join(f"{a:.17g}, {2 * a + 1:.17g}\n" for a in x)  # a straight line: the spline is exact
        write(tmp_path / cls / f"{cls}.txt", lines)
    with pytest.raises(ReaderError, match="differs"):
        read_dataset(tmp_path)
    ds = read_dataset(tmp_path, resample="200:1000:81")
    np.testing.assert_array_equal(ds.axis, np.linspace(200, 1000, 81))
    np.testing.assert_allclose(ds.X, np.tile(2 * ds.axis + 1, (2, 1)), rtol=1e-6)
    with pytest.raises(ReaderError, match="reaches outside the measured range"):
        read_dataset(tmp_path, resample="50:1000:81")


def test_unknown_option_and_spreadsheet(tmp_path: Path) -> None:
    p = write(tmp_path / "s.csv", "1,2\n3,4\n")
    with pytest.raises(ReaderError, match="unknown reader option"):
        read_dataset(p, axes="1:2:2")
    with pytest.raises(ReaderError, match=r"export the sheet as .csv"):
        read_dataset(write(tmp_path / "s.xlsx", b"PK\x03\x04junk"))


def test_npz_round_trip_through_read_dataset(tmp_path: Path) -> None:
    ds = SpectralDataset(
        X=np.ones((2, 3), np.float32) * [[1], [2]], axis=[1.0, 2.0, 3.0], y=[0, 1], classes=("a", "b")
    )
    back = read_dataset(write_npz(ds, tmp_path / "d.npz"))
    assert back.fingerprint() == ds.fingerprint()


def test_mat_v73_cell_labels_are_refused_with_a_reason(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "cell.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        f["X"] = np.ones((3, 4))
        f["wave_number"] = np.arange(4.0)[None, :]
        ref_target = f.create_dataset("#refs#/a", data=np.array([[65]], dtype=np.uint16))
        y = f.create_dataset("y", shape=(1, 3), dtype=h5py.ref_dtype)
        for i in range(3):
            y[0, i] = ref_target.ref
        y.attrs["MATLAB_class"] = np.bytes_(b"cell")
    with pytest.raises(ReaderError, match="cell array or struct"):
        read_dataset(p)
    assert read_dataset(p, labels=[0, 1, 0]).class_counts() == {"0": 2, "1": 1}
