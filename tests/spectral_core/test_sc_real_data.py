"""The real data sets load from their ORIGINAL files and agree with the prepared dataset.npz files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectral_core.io import read_dataset, read_datasets, read_npz
from spectral_core.spectrum import SpectralDataset

pytestmark = pytest.mark.data

MICROPLASTICS = ("References.CSV", "Microplasbial MP variants FW.CSV", "Microplasbial MP variants SW.CSV")


def assert_same(ds: SpectralDataset, ref: SpectralDataset) -> None:
    assert ds.X.shape == ref.X.shape
    assert ds.classes == ref.classes
    np.testing.assert_array_equal(ds.y, ref.y)
    np.testing.assert_allclose(ds.axis, ref.axis, rtol=0, atol=1e-9)
    # Both are float32 casts of the same float64 values; allow one float32 rounding step.
    np.testing.assert_allclose(ds.X, ref.X, rtol=2e-7, atol=0)


def test_covid_mat_v73(data_dir: Path) -> None:
    d = data_dir / "covid19-serum-yin"
    ds = read_dataset(d / "raw_spectra.mat", class_names="COVID-19,Suspected,Healthy")
    assert ds.provenance["format"] == "v7.3"
    assert (ds.n_spectra, ds.n_points) == (465, 900)
    assert ds.class_counts() == {"COVID-19": 159, "Suspected": 156, "Healthy": 150}
    assert ds.axis[0] == 400.0 and ds.axis[-1] == 2112.0
    assert_same(ds, read_npz(d / "dataset.npz"))
    assert read_dataset(d / "raw_spectra.mat").classes == ("0", "1", "2")


@pytest.mark.parametrize(
    ("pattern", "variant", "count"),
    [("NH2.csv", "nh2", 632), ("COOH.csv", "cooh", 633), ("(COOH)2.csv", "cooh2", 627)],
)
def test_melanoma_class_folders(data_dir: Path, pattern: str, variant: str, count: int) -> None:
    d = data_dir / "melanoma-sers-erzina"
    ds = read_dataset(d, pattern=pattern, axis="100:4278:2090")
    assert (ds.n_spectra, ds.n_points) == (count, 2090)
    assert len(ds.classes) == 12 and "MEL-S" in ds.classes
    assert min(ds.class_counts().values()) >= 49
    assert_same(ds, read_npz(d / f"dataset_{variant}.npz"))


def test_melanoma_header_of_indices_is_not_an_axis(data_dir: Path) -> None:
    from spectral_core.errors import ReaderError

    with pytest.raises(ReaderError, match=r"column indices 0..2089"):
        read_dataset(data_dir / "melanoma-sers-erzina", pattern="NH2.csv")


def test_microplastics_transposed_csvs(data_dir: Path) -> None:
    d = data_dir / "microplastics-rampp"
    refs = read_dataset(d / "References.CSV", label_from_column=r"^(\S+)")
    assert refs.n_spectra == 11 and refs.classes == ("PS", "PA", "PC", "PU", "PET", "PP", "SAN", "PVC", "PE", "POM", "ABS")
    assert refs.n_points == 1600
    ds = read_datasets([d / name for name in MICROPLASTICS], label_from_column=r"^(\S+)")
    assert ds.n_spectra == 129 and len(ds.classes) == 11
    assert_same(ds, read_npz(d / "dataset.npz"))


def test_rruff_obs_with_one_hot_labels(data_dir: Path) -> None:
    d = data_dir / "rruff-ramin-27class"
    ds = read_dataset(
        d / "obs.npy", labels=str(d / "array_labels.npy"), axis="200:1199:1000", class_names=str(d / "labels.json")
    )
    assert (ds.n_spectra, ds.n_points, len(ds.classes)) == (322, 1000, 27)
    assert ds.class_counts()["Diamond"] == 30 and ds.class_counts()["Leucite"] == 3
    assert_same(ds, read_npz(d / "dataset.npz"))


def test_every_prepared_npz_reads(data_dir: Path) -> None:
    found = sorted(data_dir.glob("*/dataset*.npz"))
    assert len(found) == 6
    for p in found:
        ds = read_dataset(p)
        assert ds.y is not None and len(ds.classes) >= 3 and ds.n_spectra > 100


def test_cli_info_on_original_files(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ramanedge.cli import main

    rc = main(["info", str(data_dir / "covid19-serum-yin" / "raw_spectra.mat"), "--classes", "COVID-19,Suspected,Healthy"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["spectra"] == 465 and out["points"] == 900
    assert out["classes"] == {"COVID-19": 159, "Suspected": 156, "Healthy": 150}
    rc = main(["info", str(data_dir / "melanoma-sers-erzina"), "--pattern", "COOH.csv", "--axis", "100:4278:2090"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["spectra"] == 633 and out["n_classes"] == 12 and out["axis"]["max"] == 4278.0
    mp = data_dir / "microplastics-rampp"
    rc = main(["info", *(str(mp / n) for n in MICROPLASTICS), "--label-from-column", r"^(\S+)"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["spectra"] == 129 and out["classes"]["PE"] == 7
    rr = data_dir / "rruff-ramin-27class"
    rc = main(["info", str(rr / "obs.npy"), "--labels", str(rr / "array_labels.npy"), "--axis", "200:1199:1000"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n_classes"] == 27 and out["classes"]["7"] == 30
    # Unreadable input: non-zero exit and a one-line reason naming the file.
    rc = main(["info", str(rr / "obs.npy")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "obs.npy" in err and "axis" in err and "\n" not in err
