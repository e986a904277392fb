"""Partly bad multi-spectrum files: a table, map or matrix whose spectra are partly bad (NaN/inf values, a row
of the wrong length) is refused naming each bad spectrum by its index in the file (``bad_spectra=error``, the
default), or read without them, each listed with its reason (``bad_spectra=skip``). Never a silent drop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectral_core.errors import ReaderError
from spectral_core.io import BadSpectraError, read_dataset, read_datasets, read_labspec, read_table

AXIS = np.linspace(400.0, 1800.0, 60)


def _rows_table(path: Path, n: int, *, nan: tuple[int, ...] = (), short: tuple[int, ...] = ()) -> Path:
    """One spectrum a row: a header of wavenumbers and a label column; row k holds k + 1 everywhere."""
    lines = ["label," + ",".join(f"{a:.2f}" for a in AXIS)]
    for k in range(n):
        cells = [f"{k + 1}.0"] * AXIS.size
        if k in nan:
            cells[7] = "nan"
        if k in short:
            cells = cells[:20]  # a truncated row, as a map export cut short
        lines.append(f"c{k % 2}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_partly_bad_table_is_refused_naming_each_bad_spectrum(tmp_path: Path) -> None:
    p = _rows_table(tmp_path / "t.csv", 6, nan=(1,), short=(4,))
    with pytest.raises(BadSpectraError) as info:
        read_dataset(p)
    err = info.value
    assert err.partly and err.n == 6 and [k for k, _ in err.bad] == [1, 4]
    assert "line 3, column 9: non-finite value 'nan'" in err.bad[0][1]
    assert "line 6 has 21 column(s), line 2 has 61" in err.bad[1][1]
    assert "2 of 6 spectra are bad: spectrum #1" in str(err) and "bad_spectra=skip" in str(err)
    assert str(p) in str(err)


def test_skip_reads_the_good_spectra_and_lists_the_bad_ones(tmp_path: Path) -> None:
    p = _rows_table(tmp_path / "t.csv", 6, nan=(1,), short=(4,))
    ds = read_dataset(p, bad_spectra="skip")
    assert ds.n_spectra == 4
    np.testing.assert_array_equal(ds.X[:, 0], [1.0, 3.0, 4.0, 6.0])  # rows 0, 2, 3, 5 of the file
    assert [ds.classes[i] for i in ds.y] == ["c0", "c0", "c1", "c1"]
    skipped = ds.provenance["skipped_spectra"]
    assert [e["index"] for e in skipped] == [1, 4] and ds.provenance["spectra_in_file"] == 6
    assert all(e["source"] == str(p) and e["reason"] for e in skipped)


def test_a_file_whose_spectra_are_all_bad_is_refused_even_with_skip(tmp_path: Path) -> None:
    p = _rows_table(tmp_path / "t.csv", 3, nan=(0, 1, 2))
    with pytest.raises(BadSpectraError, match="all 3 spectra are bad") as info:
        read_dataset(p, bad_spectra="skip")
    assert not info.value.partly


def test_a_spectrum_column_with_nan_is_named_by_its_column(tmp_path: Path) -> None:
    lines = ["wavenumber,s0,s1,s2"] + [f"{a:.2f},1,{'nan' if i == 5 else 2},3" for i, a in enumerate(AXIS)]
    p = tmp_path / "cols.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadSpectraError, match=r"spectrum #1: column 3 \('s1'\), line 7: non-finite"):
        read_dataset(p)
    ds = read_dataset(p, bad_spectra="skip")
    assert ds.n_spectra == 2 and ds.provenance["columns"] == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(ds.X[:, 0], [1.0, 3.0])
    assert [e["index"] for e in ds.provenance["skipped_spectra"]] == [1]


def test_a_labspec_map_with_a_truncated_row_keeps_the_other_points_and_their_coordinates(tmp_path: Path) -> None:
    rows = ["#Laser=\t785", "\t\t" + "\t".join(f"{a:.2f}" for a in AXIS)]
    for k, (x, y) in enumerate([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]):
        values = [f"{10.0 * (k + 1)}"] * AXIS.size
        if k == 2:
            values = values[:30]
        rows.append(f"{x}\t{y}\t" + "\t".join(values))
    p = tmp_path / "map.txt"
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(ReaderError, match="line 5: 32 cell"):
        read_labspec(p)  # a reader called on its own refuses the file at its first bad row, as always
    with pytest.raises(BadSpectraError, match="1 of 4 spectra are bad: spectrum #2: line 5"):
        read_dataset(p)
    ds = read_dataset(p, bad_spectra="skip")
    assert ds.n_spectra == 3
    np.testing.assert_array_equal(ds.meta["x"], [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(ds.meta["y"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ds.X[:, 0], [10.0, 20.0, 40.0])


def test_a_matrix_with_an_inf_row(tmp_path: Path) -> None:
    X = np.ones((5, AXIS.size))
    X[3, 10] = np.inf
    p = tmp_path / "X.npy"
    np.save(p, X)
    with pytest.raises(BadSpectraError, match=r"spectrum #3: 1 NaN/inf value\(s\), first at point 10"):
        read_dataset(p, axis="400:1800:60")
    ds = read_dataset(p, axis="400:1800:60", bad_spectra="skip")
    assert ds.n_spectra == 4 and [e["index"] for e in ds.provenance["skipped_spectra"]] == [3]


def test_several_files_list_the_skipped_spectra_of_each(tmp_path: Path) -> None:
    a = _rows_table(tmp_path / "a.csv", 4, nan=(2,))
    b = _rows_table(tmp_path / "b.csv", 3)
    c = _rows_table(tmp_path / "c.csv", 3, short=(0 + 1,))
    ds = read_datasets([a, b, c], bad_spectra="skip")
    assert ds.n_spectra == 3 + 3 + 2
    assert [(e["source"], e["index"]) for e in ds.provenance["skipped_spectra"]] == [(str(a), 2), (str(c), 1)]


def test_single_spectrum_files_and_the_reader_api_keep_their_messages(tmp_path: Path) -> None:
    p = tmp_path / "one.csv"
    p.write_text("100,1\n101,nan\n102,3\n")
    with pytest.raises(ReaderError, match="line 2, column 2: non-finite value 'nan'"):
        read_dataset(p)
    with pytest.raises(ReaderError, match="ragged rows: line 6 has 21"):
        read_table(_rows_table(tmp_path / "t.csv", 6, short=(4,)))
    with pytest.raises(ReaderError, match="bad_spectra must be one of"):
        read_dataset(p, bad_spectra="drop")


def test_convert_with_skip_reports_the_skipped_spectra(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ramanedge.cli import main

    p = _rows_table(tmp_path / "t.csv", 5, nan=(3,))
    out = tmp_path / "d.npz"
    assert main(["convert", str(p), "--out", str(out), "--bad-spectra", "skip"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["spectra"] == 4 and summary["skipped_spectra"][0]["index"] == 3
    assert read_dataset(out).provenance["skipped_spectra"][0]["index"] == 3
    assert main(["convert", str(p), "--out", str(tmp_path / "e.npz")]) == 2
    assert "spectrum #3: line 5, column 9" in capsys.readouterr().err and not (tmp_path / "e.npz").exists()
