"""The data model validates on construction: an invalid Spectrum or SpectralDataset never exists."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_core.errors import AxisError, DataError
from spectral_core.spectrum import SpectralDataset, Spectrum, check_axis


def test_spectrum_converts_dtypes() -> None:
    s = Spectrum([100, 200, 300], [1, 2, 3])
    assert s.axis.dtype == np.float64 and s.intensities.dtype == np.float32
    assert len(s) == 3


@pytest.mark.parametrize(
    ("axis", "match"),
    [
        ([1.0], "at least 2"),
        ([[1.0, 2.0]], "1-D"),
        ([1.0, np.nan, 3.0], "non-finite"),
        ([1.0, 2.0, 2.0], "duplicate value 2"),
        ([1.0, 3.0, 2.0], "not monotonic"),
        ([3.0, 2.0, 1.0], "decreasing"),
    ],
)
def test_check_axis_rejections(axis: list[float], match: str) -> None:
    with pytest.raises(AxisError, match=match):
        check_axis(axis)


def test_spectrum_rejections() -> None:
    with pytest.raises(DataError, match="2 intensity points but the axis has 3"):
        Spectrum([1, 2, 3], [1, 2])
    with pytest.raises(DataError, match="NaN/inf"):
        Spectrum([1, 2, 3], [1, np.inf, 2], {"source": "dev0"})
    with pytest.raises(DataError, match="not numeric"):
        Spectrum([1, 2], ["a", "b"])
    with pytest.raises(DataError, match="one spectrum"):
        Spectrum([1, 2], [[1, 2], [3, 4]])


def test_from_unsorted_reverses_axis_and_values_together() -> None:
    s = Spectrum.from_unsorted([300, 200, 100], [3, 2, 1])
    np.testing.assert_array_equal(s.axis, [100, 200, 300])
    np.testing.assert_array_equal(s.intensities, [1, 2, 3])


def make(n: int = 4) -> SpectralDataset:
    return SpectralDataset(
        X=np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        axis=[10.0, 20.0, 30.0],
        y=np.arange(n) % 2,
        classes=("a", "b"),
        groups=np.array([f"g{i // 2}" for i in range(n)]),
        provenance={"source": "test"},
    )


def test_dataset_rejections() -> None:
    with pytest.raises(DataError, match="2-D"):
        SpectralDataset(X=np.ones(3), axis=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="y has shape"):
        SpectralDataset(X=np.ones((2, 3)), axis=[1.0, 2.0, 3.0], y=[0], classes=("a",))
    with pytest.raises(DataError, match="integer class indices"):
        SpectralDataset(X=np.ones((2, 3)), axis=[1.0, 2.0, 3.0], y=[0.0, 1.0], classes=("a", "b"))
    with pytest.raises(DataError, match="there are 1 classes"):
        SpectralDataset(X=np.ones((2, 3)), axis=[1.0, 2.0, 3.0], y=[0, 1], classes=("a",))
    with pytest.raises(DataError, match="groups has shape"):
        SpectralDataset(X=np.ones((2, 3)), axis=[1.0, 2.0, 3.0], groups=["a"])
    with pytest.raises(DataError, match="NaN/inf"):
        SpectralDataset(X=[[1.0, np.nan, 2.0]], axis=[1.0, 2.0, 3.0])


def test_dataset_views() -> None:
    ds = make()
    assert ds.n_spectra == 4 and ds.n_points == 3 and len(ds) == 4
    assert ds.class_counts() == {"a": 2, "b": 2}
    s = ds.spectrum(3)
    assert s.metadata == {"index": 3, "label": "b", "group": "g1"}
    sub = ds.subset([0, 2])
    np.testing.assert_array_equal(sub.y, [0, 0])
    only_b = ds.select_classes(["b"])
    assert only_b.classes == ("b",) and only_b.n_spectra == 2
    np.testing.assert_array_equal(only_b.y, [0, 0])
    with pytest.raises(DataError, match="unknown class"):
        ds.select_classes(["c"])


def test_fingerprint_tracks_data_labels_and_class_names() -> None:
    ds = make()
    assert ds.fingerprint() == make().fingerprint()
    X = ds.X.copy()
    X[0, 0] += 1
    assert SpectralDataset(X=X, axis=ds.axis, y=ds.y, classes=ds.classes).fingerprint() != ds.fingerprint()
    renamed = SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=("a", "c"))
    assert renamed.fingerprint() != SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes).fingerprint()
