"""Every reader refuses bad input with a ReaderError that names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectral_core.errors import DataError, ReaderError
from spectral_core.io import read_dataset, read_spectrum


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", b"", "empty file"),
        ("blank.txt", b"  \n\n \t\n", "empty file"),
        ("comments.txt", b"# only\n## a=b\n", "no data lines"),
        ("header_only.csv", b"x,y\n", "a header row but no data lines"),
        ("ragged.csv", b"100,1\n101,2\n102,3,4\n", r"ragged rows: line 3 has 3 column\(s\)"),
        ("text_cell.csv", b"100,1\n101,abc\n102,3\n", r"line 2, column 2: 'abc' is not a number"),
        ("empty_cell.csv", b"100;1\n101;\n102;3\n", r"line 2, column 2: an empty cell"),
        ("nan.csv", b"100,1\n101,nan\n102,3\n", r"line 2, column 2: non-finite value 'nan'"),
        ("inf.txt", b"100 1\n101 -inf\n102 3\n", r"line 2, column 2: non-finite"),
        ("nonmono.csv", b"100,1\n102,2\n101,3\n", "not monotonic"),
        ("dup.csv", b"100,1\n101,2\n101,3\n", "duplicate value 101"),
        ("binary.csv", b"\x00\x01\x02\x03binary\xff\xfe\x00", "binary content"),
        ("junk.txt", b"100,1\n\x81\x82\x83\x84\x85\x01\x02\n", "wrong encoding"),
        ("three.csv", b"1,2,3\n", "no spectral axis"),
    ],
)
def test_text_rejections(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    p = write(tmp_path / name, content)
    with pytest.raises(ReaderError, match=match) as exc_info:
        read_dataset(p)
    # The message starts with the file, and the error is a ValueError as well (callers may catch either).
    assert str(exc_info.value).startswith(str(p))
    assert exc_info.value.path == str(p)
    assert isinstance(exc_info.value, ValueError)


def test_utf16_without_bom_is_named_and_readable_when_told(tmp_path: Path) -> None:
    p = write(tmp_path / "w.txt", "100\t1\n200\t2\n".encode("utf-16-le"))
    with pytest.raises(ReaderError, match="UTF-16"):
        read_dataset(p)
    np.testing.assert_array_equal(read_spectrum(p, encoding="utf-16-le").axis, [100, 200])
    bom = write(tmp_path / "bom.txt", "100\t1\n200\t2\n".encode("utf-16"))
    np.testing.assert_array_equal(read_spectrum(bom).intensities, [1, 2])


def test_bad_utf8_with_textual_bytes_is_latin1_not_error(tmp_path: Path) -> None:
    p = write(tmp_path / "l1.txt", "# T=25 \xb0C\n1 2\n3 4\n".encode("latin-1"))
    assert read_spectrum(p).metadata["encoding"] == "latin-1"


def test_forced_wrong_encoding(tmp_path: Path) -> None:
    p = write(tmp_path / "u.txt", "# \u00b5\n1 2\n3 4\n")
    with pytest.raises(ReaderError, match="cannot decode as ascii"):
        read_dataset(p, encoding="ascii")


def test_missing_path_and_empty_binary(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="no such file or folder"):
        read_dataset(tmp_path / "nope.csv")
    with pytest.raises(ReaderError, match="empty file"):
        read_dataset(write(tmp_path / "e.npy", b""))


def test_extension_contradicting_content(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"extension says .npy but the content is text"):
        read_dataset(write(tmp_path / "x.npy", "1,2\n3,4\n"), axis="1:2:2")
    with pytest.raises(ReaderError, match=r"extension says .npz"):
        read_dataset(write(tmp_path / "x.npz", b"\x93NUMPY junk"))


def test_truncated_npy_and_pickled_object_array(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.ones((3, 4)))
    raw = (tmp_path / "ok.npy").read_bytes()
    write(tmp_path / "cut.npy", raw[: len(raw) - 10])
    with pytest.raises(ReaderError, match=r"not a readable .npy"):
        read_dataset(tmp_path / "cut.npy", axis="1:4:4")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ReaderError, match="pickled"):
        read_dataset(tmp_path / "obj.npy", axis="1:4:4")


def test_npy_nan_and_shape_errors(tmp_path: Path) -> None:
    X = np.ones((3, 4))
    X[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", X)
    with pytest.raises(ReaderError, match=r"spectrum #1: 1 NaN/inf value\(s\), first at point 2"):
        read_dataset(tmp_path / "nan.npy", axis="1:4:4")
    np.save(tmp_path / "ok.npy", np.ones((3, 4)))
    with pytest.raises(ReaderError, match="axis has 5"):
        read_dataset(tmp_path / "ok.npy", axis="1:5:5")
    with pytest.raises(ReaderError, match="START:STOP:POINTS"):
        read_dataset(tmp_path / "ok.npy", axis="1-4")
    with pytest.raises(ReaderError, match="STOP > START"):
        read_dataset(tmp_path / "ok.npy", axis="4:1:4")
    with pytest.raises(ReaderError, match="duplicate"):
        read_dataset(tmp_path / "ok.npy", axis=[1.0, 2.0, 2.0, 3.0])


def test_labels_that_do_not_fit(tmp_path: Path) -> None:
    np.save(tmp_path / "X.npy", np.ones((3, 4)))
    np.save(tmp_path / "short.npy", np.array([0, 1]))
    with pytest.raises(ReaderError, match="hold 2 entries but the file has 3 spectra"):
        read_dataset(tmp_path / "X.npy", axis="1:4:4", labels=str(tmp_path / "short.npy"))
    with pytest.raises(ReaderError, match="non-integer"):
        read_dataset(tmp_path / "X.npy", axis="1:4:4", labels=np.array([0.5, 1, 2]))
    with pytest.raises(ReaderError, match="not one-hot"):
        read_dataset(tmp_path / "X.npy", axis="1:4:4", labels=np.array([[1, 1], [0, 1], [1, 0]]))
    with pytest.raises(ReaderError, match="2 class names given but labels use 3"):
        read_dataset(tmp_path / "X.npy", axis="1:4:4", labels=[0, 1, 2], class_names="a,b")
    with pytest.raises(ReaderError, match=r"labels file .* does not exist"):
        read_dataset(tmp_path / "X.npy", axis="1:4:4", labels=str(tmp_path / "missing.npy"))


def test_mat_rejections(tmp_path: Path) -> None:
    from scipy.io import savemat

    with pytest.raises(ReaderError, match="not a readable MATLAB"):
        read_dataset(write(tmp_path / "junk.mat", b"MATLAB 5.0 MAT-file junk" + b"\x00" * 50))
    savemat(tmp_path / "nox.mat", {"A": np.ones((2, 3))})
    with pytest.raises(ReaderError, match="no spectra variable"):
        read_dataset(tmp_path / "nox.mat")
    savemat(tmp_path / "noaxis.mat", {"X": np.ones((2, 3))})
    with pytest.raises(ReaderError, match="no axis variable"):
        read_dataset(tmp_path / "noaxis.mat")
    savemat(tmp_path / "shape.mat", {"X": np.ones((2, 3)), "axis": np.arange(5.0)})
    with pytest.raises(ReaderError, match=r"does not match the axis \(5 points\)"):
        read_dataset(tmp_path / "shape.mat")
    X = np.ones((2, 3))
    X[0, 0] = np.inf
    savemat(tmp_path / "inf.mat", {"X": X, "axis": np.arange(3.0)})
    with pytest.raises(ReaderError, match="NaN/inf"):
        read_dataset(tmp_path / "inf.mat")


def test_class_folder_rejections(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ReaderError, match="one sub-folder per class, found none"):
        read_dataset(root)
    (root / "a").mkdir()
    (root / "b").mkdir()
    write(root / "a" / "s1.txt", "100 1\n200 2\n")
    write(root / "b" / "notes.md", "nothing here")
    with pytest.raises(ReaderError, match="class folder 'b' holds no spectra") as exc_info:
        read_dataset(root)
    assert exc_info.value.path == str(root / "b")
    write(root / "b" / "s2.txt", "100 1\n300 2\n")
    with pytest.raises(ReaderError, match="differs"):
        read_dataset(root)
    with pytest.raises(ReaderError, match="do not match the class folders"):
        read_dataset(root, class_names="a,c")
    with pytest.raises(ReaderError, match="conflicts with class folders"):
        read_dataset(root, labels=[0, 1])


def test_reader_errors_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        read_dataset(write(tmp_path / "r.csv", "1,2\n3\n"))
