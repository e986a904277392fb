"""ramanedge embed: the RamanNet embedding against PCA on held-out spectra."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from spectral_core.errors import ContractError, DataError
from spectral_core.io import read_dataset, write_npz
from spectral_core.spectrum import SpectralDataset
from trainer.embed import configure_embed, embedding_quality, run_embed


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    configure_embed(p)
    return p.parse_args(list(argv))


def test_embedding_beats_pca_on_held_out_spectra(band_files, tmp_path):
    out = tmp_path / "emb"
    rc = run_embed(_args(str(band_files["run"]), "--data", str(band_files["test"]), "--reference",
                         str(band_files["train"]), "--out", str(out)))
    assert rc == 0
    report = json.loads((out / "embedding.json").read_text())
    m = report["metrics"]
    assert set(m) == {"embedding", "pca", "spectra", "embedding_2d", "pca_2d"}
    assert report["seen_in_training"] is False and report["n_test"] == 90
    assert report["pca_components"] == 16  # the embedding's size: same budget
    for space in m.values():
        assert 0.0 <= space["knn_accuracy"] <= 1.0 and -1.0 <= space["silhouette"] <= 1.0
    # The trained embedding separates the known-band classes (test accuracy of the model is ~99%).
    assert m["embedding"]["knn_accuracy"] >= 0.9
    assert m["embedding"]["silhouette"] > m["pca"]["silhouette"]
    assert (out / "embedding.png").read_bytes()[:4] == b"\x89PNG"


def test_cross_validated_mode_flags_training_data(band_files, tmp_path):
    rc = run_embed(_args(str(band_files["run"]), "--data", str(band_files["train"]), "--out", str(tmp_path),
                         "--projection", "tsne"))
    assert rc == 0
    report = json.loads((tmp_path / "embedding.json").read_text())
    assert report["seen_in_training"] is True and report["reference"] is None
    assert report["protocol"].startswith("stratified 5-fold")
    assert report["metrics"]["embedding"]["knn_accuracy"] > report["metrics"]["pca_2d"]["knn_accuracy"]
    assert (tmp_path / "embedding.png").stat().st_size > 1000


def test_knn_accuracy_measures_separation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    separated = rng.normal(size=(60, 3)) + 10.0 * y[:, None]
    mixed = rng.normal(size=(60, 3))
    m = embedding_quality(None, {"sep": separated, "mix": mixed}, y)
    assert m["sep"]["knn_accuracy"] == 1.0 and m["sep"]["silhouette"] > 0.8
    assert m["mix"]["knn_accuracy"] < 0.8 and abs(m["mix"]["silhouette"]) < 0.2


def test_embed_refuses_other_classes_and_too_large_k(band_files, tmp_path):
    ds = read_dataset(band_files["test"])
    other = write_npz(SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=("p", "q", "r")), tmp_path / "o.npz")
    with pytest.raises(ContractError):
        run_embed(_args(str(band_files["run"]), "--data", str(other), "--out", str(tmp_path)))
    with pytest.raises(DataError, match="--k"):
        run_embed(_args(str(band_files["run"]), "--data", str(band_files["test"]), "--out", str(tmp_path),
                        "--k", "500"))
