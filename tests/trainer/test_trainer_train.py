"""train(): determinism, the run directory, bad input, configs, splits and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ramanedge.cli import main
from spectral_core.errors import DataError
from spectral_core.io import write_npz
from spectral_core.preprocess import Preprocessor
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset
from trainer.checkpoint import load_run
from trainer.data import validation_split
from trainer.train import RunExistsError, TrainConfig, predict, train

SMALL: dict[str, Any] = {
    "epochs": 4, "batch_size": 32, "lr": 3e-3, "num_threads": 1,
    "model": {"window": 20, "step": 10, "n2": 32, "embedding_dim": 16, "bn_momentum": 0.1},
}


@pytest.fixture(scope="module")
def small_ds() -> SpectralDataset:
    return synth_dataset(classes=3, per_class=20, points=200, seed=3)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights.safetensors"))


def test_same_seed_same_data_gives_bit_identical_weights(small_ds: SpectralDataset, tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate({**SMALL, "seed": 7})
    a = train(small_ds, tmp_path / "a", cfg)
    b = train(small_ds, tmp_path / "b", cfg)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a.weights_sha256 == b.weights_sha256
    c = train(small_ds, tmp_path / "c", cfg.with_overrides({"seed": 8}))
    assert c.weights_sha256 != a.weights_sha256


def test_training_leaves_the_global_rng_alone(small_ds: SpectralDataset, tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(small_ds, tmp_path / "r", TrainConfig.model_validate(SMALL))
    torch.testing.assert_close(torch.rand(3), expected)


def test_run_directory_contents_and_round_trip(small_ds: SpectralDataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    info = train(small_ds, run, TrainConfig.model_validate(SMALL))
    assert {"weights.safetensors", "run.json", "history.csv", "curves.png"} <= {p.name for p in run.iterdir()}
    raw = json.loads((run / "run.json").read_text())
    assert raw["train"]["epochs"] == 4 and raw["model"]["window"] == 20
    assert raw["data_sha256"] == small_ds.fingerprint()
    # the model axis leaves one step of the data's axis inside at each end (trainer.data.choose_model_axis)
    assert raw["axis"] == pytest.approx(small_ds.axis[1:-1].tolist())
    assert len(raw["open_set"]["centroids"]) == 3
    lines = (run / "history.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,lr,loss,ce,triplet,acc,val_loss") and len(lines) == 1 + 4
    model, loaded = load_run(run)
    assert loaded.weights_sha256 == info.weights_sha256 and loaded.classes == list(small_ds.classes)
    x = Preprocessor(loaded.preprocess).transform(small_ds.X, small_ds.axis)
    # The loaded model answers exactly as the run's own embeddings did (the centroids were built from those of
    # the training part; the validation part calibrates the thresholds).
    _, emb = predict(model, x)
    cen = np.asarray(loaded.open_set.centroids) if loaded.open_set else None
    assert cen is not None
    cfg = TrainConfig.model_validate(SMALL)
    tr, _ = validation_split(small_ds.y, small_ds.groups, cfg.val_fraction, cfg.seed)
    for c in range(3):
        m = emb[tr][small_ds.y[tr] == c].mean(0)
        np.testing.assert_allclose(m / np.linalg.norm(m), cen[c], atol=1e-5)
    # A config written into run.json can be reloaded as a TrainConfig.
    assert TrainConfig.from_file(run / "run.json") == TrainConfig.model_validate(SMALL)


def test_refuses_a_directory_holding_another_run(small_ds: SpectralDataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig.model_validate(SMALL)
    first = train(small_ds, run, cfg)
    other = cfg.with_overrides({"seed": 1})
    with pytest.raises(RunExistsError, match="different run"):
        train(small_ds, run, other)
    assert load_run(run)[1].weights_sha256 == first.weights_sha256  # untouched
    # The very same run may be reproduced in place; force overwrites anything.
    assert train(small_ds, run, cfg).weights_sha256 == first.weights_sha256
    assert train(small_ds, run, other, force=True).train["seed"] == 1
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError, match="not empty"):
        train(small_ds, junk, cfg)


def _ds(X: np.ndarray, y: np.ndarray | None, classes: tuple[str, ...]) -> SpectralDataset:
    return SpectralDataset(X=X.astype(np.float32), axis=np.linspace(400, 1800, X.shape[1]), y=y, classes=classes)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r: _ds(r.random((20, 100)), None, ()), "unlabelled"),
        (lambda r: _ds(r.random((20, 100)), np.zeros(20, np.int64), ("a", "b")), "one class only"),
        (lambda r: _ds(r.random((3, 100)), np.array([0, 1, 1]), ("a", "b")), "too few spectra"),
        (lambda r: _ds(r.random((20, 100)), np.array([0] + [1] * 19), ("a", "b")), "fewer than 2"),
        (lambda r: _ds(r.random((20, 100)), np.array([0, 1] * 10), ("a", "b", "c")), "no spectra"),
        (lambda r: _ds(r.random((20, 10)), np.array([0, 1] * 10), ("a", "b")), "does not fit"),
    ],
)
def test_bad_input_is_refused_before_training(make: Any, match: str, tmp_path: Path) -> None:
    calls: list[Any] = []
    ds = make(np.random.default_rng(0))
    with pytest.raises(DataError, match=match):
        train(ds, tmp_path / "run", TrainConfig.model_validate(SMALL), progress=calls.append)
    assert calls == [] and not (tmp_path / "run").exists()


def test_nan_data_cannot_even_become_a_dataset() -> None:
    X = np.ones((4, 50))
    X[1, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        _ds(X, np.array([0, 0, 1, 1]), ("a", "b"))


def test_validation_split_is_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(4), [30, 10, 3, 2])
    t, v = validation_split(y, None, 0.1, seed=5)
    assert np.intersect1d(t, v).size == 0 and t.size + v.size == y.size
    assert np.bincount(y[v], minlength=4).tolist() == [3, 1, 1, 0]
    assert np.bincount(y[t], minlength=4).min() >= 2
    _, v2 = validation_split(y, None, 0.1, seed=5)
    assert np.array_equal(v, v2)
    assert not np.array_equal(v, validation_split(y, None, 0.1, seed=6)[1])


def test_validation_split_keeps_groups_on_one_side() -> None:
    y = np.repeat([0, 1], 40)
    groups = np.array([f"p{i // 4}" for i in range(80)])  # 20 patients of 4 spectra
    t, v = validation_split(y, groups, 0.2, seed=0)
    assert v.size > 0 and set(groups[t]).isdisjoint(groups[v])
    assert set(y[v]) == {0, 1}


def test_config_from_toml_and_json_with_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 7\nlr = 0.01\n[model]\nwindow = 30\npaper_compat = true\n[preprocess]\nnormalise = "snv"\n')
    cfg = TrainConfig.from_file(toml)
    assert cfg.epochs == 7 and cfg.model == {"window": 30, "paper_compat": True}
    assert cfg.preprocess.normalise == "snv"
    js = tmp_path / "c.json"
    js.write_text(cfg.model_dump_json())
    assert TrainConfig.from_file(js) == cfg
    cfg2 = cfg.with_overrides({"epochs": 3, "seed": None, "model.step": 5})
    assert cfg2.epochs == 3 and cfg2.seed == cfg.seed and cfg2.model["step"] == 5 and cfg2.model["window"] == 30
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    with pytest.raises(DataError, match="epochz"):
        TrainConfig.from_file(bad)
    with pytest.raises(DataError, match="unknown model option"):
        cfg.with_overrides({"model.windw": 3})


def test_cli_train_end_to_end(small_ds: SpectralDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_npz(small_ds, tmp_path / "d.npz")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "epochs": 10}))
    run = tmp_path / "run"
    rc = main(["train", "--data", str(data), "--out", str(run), "--config", str(cfg), "--epochs", "3",
               "--seed", "2"])
    assert rc == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 3
    assert "epoch 3/3" in err and "val_acc" in err  # one log line per epoch when not on a terminal
    info = load_run(run)[1]
    assert info.train["epochs"] == 3 and info.train["seed"] == 2 and info.model.window == 20
    # A second, different run into the same directory is refused with exit status 2.
    rc = main(["train", "--data", str(data), "--out", str(run), "--config", str(cfg), "--quiet"])
    assert rc == 2 and "different run" in capsys.readouterr().err


def test_cli_train_selects_classes(small_ds: SpectralDataset, tmp_path: Path) -> None:
    data = write_npz(small_ds, tmp_path / "d.npz")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(SMALL))
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(cfg),
               "--classes", "compound_C,compound_A", "--quiet"])
    assert rc == 0
    assert load_run(tmp_path / "run")[1].classes == ["compound_C", "compound_A"]


@pytest.mark.parametrize("name", ["paper", "small_data"])
def test_shipped_configs_load(name: str) -> None:
    cfg = TrainConfig.from_file(Path(__file__).resolve().parents[2] / "trainer" / "configs" / f"{name}.toml")
    assert cfg.ce_weight == cfg.triplet_weight == 0.5 and cfg.epochs >= 200
    assert cfg.model_for(1000, 5).n2 == 512  # the paper's architecture in both
