"""Ensembles of K RamanNets: the run layout, the combination (mean of softmax, unit embedding), member 0 equal
to a single run of the same split, tampered members refused, and ``evaluate --ensemble`` on the same splits."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import TINY_TRAIN_CONFIG

from spectral_core.errors import ContractError, DataError
from spectral_core.io import read_dataset
from spectral_core.preprocess import Preprocessor
from spectral_core.spectrum import SpectralDataset
from trainer.checkpoint import load_run
from trainer.data import validation_split
from trainer.ensemble import (
    ENSEMBLE_JSON,
    EnsembleNet,
    ensemble_weights_sha256,
    is_ensemble,
    load_ensemble,
    load_reference,
    predict_any,
    train_ensemble,
)
from trainer.train import TrainConfig, train

CFG = TrainConfig.model_validate({**TINY_TRAIN_CONFIG, "epochs": 6})  # what is tested needs no accuracy


@pytest.fixture(scope="module")
def tiny_ds(tiny_data: Path) -> SpectralDataset:
    return read_dataset(tiny_data)


@pytest.fixture(scope="module")
def ens(tiny_ds: SpectralDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "ens"
    train_ensemble(tiny_ds, out, CFG, 3)
    return out


def test_members_are_runs_with_their_own_seeds_and_the_ensemble_records_their_hashes(ens: Path) -> None:
    info = json.loads((ens / ENSEMBLE_JSON).read_text())
    assert info["format"] == "ramanedge-ensemble" and info["size"] == 3
    assert info["members"] == ["members/0", "members/1", "members/2"]
    assert info["member_seeds"] == [0, 1, 2]
    runs = [load_run(ens / m)[1] for m in info["members"]]
    assert [r.train["seed"] for r in runs] == [0, 1, 2]
    hashes = [r.weights_sha256 for r in runs]
    assert info["member_weights_sha256"] == hashes and len(set(hashes)) == 3  # three different models
    assert info["weights_sha256"] == ensemble_weights_sha256(hashes)
    assert is_ensemble(ens) and not is_ensemble(ens / "members" / "0")
    # every member validated on the same spectra: the ensemble's thresholds are calibrated on spectra none saw
    assert len({r.metrics["n_val"] for r in runs}) == 1 and info["metrics"]["n_val"] == runs[0].metrics["n_val"] > 0


def test_softmax_of_the_logits_is_the_mean_of_the_members_softmax(ens: Path, tiny_ds: SpectralDataset) -> None:
    net, info = load_ensemble(ens)
    X = Preprocessor(info.preprocess).transform(tiny_ds.X[:40], tiny_ds.axis)
    logits, emb = predict_any(net, X)
    with torch.no_grad():
        member_p = [torch.softmax(m(torch.from_numpy(X))[0], dim=1).numpy() for m in net.members]
        member_e = [m(torch.from_numpy(X))[1].numpy() for m in net.members]
    mean_p = np.mean(member_p, axis=0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), mean_p, atol=1e-6)
    np.testing.assert_allclose(np.exp(logits), mean_p, atol=1e-6)  # logits are log(mean p) themselves
    assert emb.shape == (40, 3 * net.members[0].config.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, np.concatenate(member_e, axis=1) / math.sqrt(3), atol=1e-6)
    # the open set lives in the ensemble's embedding space, one centroid per class
    assert info.open_set is not None and len(info.open_set.centroids[0]) == emb.shape[1]
    assert info.open_set.target_unknown_rate == CFG.unknown_rate


def test_logits_stay_finite_where_a_member_is_certain() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self, logits: list[float]) -> None:
            super().__init__()
            self.logits = torch.tensor([logits])
            self.config = type("C", (), {"n_classes": 2, "embedding_dim": 2})()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.logits.expand(x.shape[0], -1), torch.ones(x.shape[0], 2)

    # class 1 has probability ~exp(-200) in both members: log of the float32 mean would be -inf
    net = EnsembleNet([Fixed([100.0, -100.0]), Fixed([150.0, -50.0])])  # type: ignore[list-item]
    logits, _ = net(torch.zeros(1, 3))
    assert torch.isfinite(logits).all() and float(logits[0, 1]) == pytest.approx(-200.0 - math.log(2) + math.log(1 + math.exp(0)), abs=1e-3)


def test_member_zero_is_the_single_model_of_the_same_split(tiny_ds: SpectralDataset, tmp_path: Path) -> None:
    assert tiny_ds.y is not None
    tr, va = validation_split(tiny_ds.y, tiny_ds.groups, CFG.val_fraction, CFG.seed)
    cfg = CFG.with_overrides({"epochs": 3})
    single = train(tiny_ds.subset(tr), tmp_path / "single", cfg, val=tiny_ds.subset(va))
    ens = train_ensemble(tiny_ds.subset(tr), tmp_path / "ens", cfg, 2, val=tiny_ds.subset(va))
    assert ens.member_weights_sha256[0] == single.weights_sha256
    assert ens.member_weights_sha256[1] != single.weights_sha256


def test_a_tampered_member_is_refused(ens: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ens"
    shutil.copytree(ens, copy)
    w = copy / "members" / "1" / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ContractError, match="weights do not match"):
        load_reference(copy)
    # a member swapped for another complete run (consistent on its own) is not the member the ensemble recorded
    shutil.rmtree(copy / "members" / "1")
    shutil.copytree(ens / "members" / "2", copy / "members" / "1")
    with pytest.raises(ContractError, match="not the ones the ensemble was built from"):
        load_ensemble(copy)
    # and an edited list of member hashes no longer matches the ensemble hash
    doc = json.loads((ens / ENSEMBLE_JSON).read_text())
    doc["member_weights_sha256"][1] = doc["member_weights_sha256"][2]
    (copy / ENSEMBLE_JSON).write_text(json.dumps(doc))
    with pytest.raises(ContractError, match="does not match its members"):
        load_ensemble(copy)


def test_a_member_outside_the_ensemble_directory_is_refused(ens: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ens"
    shutil.copytree(ens, copy)
    doc = json.loads((copy / ENSEMBLE_JSON).read_text())
    doc["members"][0] = "../../elsewhere"
    (copy / ENSEMBLE_JSON).write_text(json.dumps(doc))
    with pytest.raises(ContractError, match="outside the ensemble directory"):
        load_ensemble(copy)


def test_size_out_of_range_and_a_foreign_directory_are_refused(tiny_ds: SpectralDataset, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="2 to 16 members"):
        train_ensemble(tiny_ds, tmp_path / "one", CFG, 1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no ramanedge ensemble"):
        train_ensemble(tiny_ds, busy, CFG, 2)
    assert not (busy / "members").exists()


def test_evaluate_reports_the_ensemble_beside_the_single_model_on_the_same_splits(
    tiny_ds: SpectralDataset, tmp_path: Path
) -> None:
    from trainer.evaluate import evaluate

    cfg = CFG.with_overrides({"epochs": 3})
    evaluate(tiny_ds, tmp_path, cfg, folds=2, models=["ramannet"])
    splits = (tmp_path / "splits.json").read_text()
    merged = evaluate(tiny_ds, tmp_path, cfg, folds=2, models=["ramannet"], ensemble=2)
    assert (tmp_path / "splits.json").read_text() == splits
    assert set(merged["models"]) == {"ramannet", "ramannet-x2"}
    per_split = json.loads((tmp_path / "ramannet-x2" / "results.json").read_text())["per_split"]
    assert len(per_split) == 2 and all(len(s["best_epoch"]) == 2 for s in per_split)
    for s in ("fold1", "fold2"):
        single = load_run(tmp_path / "ramannet" / s)[1]
        member0 = load_run(tmp_path / "ramannet-x2" / s / "members" / "0")[1]
        assert member0.weights_sha256 == single.weights_sha256  # the comparison is one model against K
    assert "ramannet-x2" in (tmp_path / "results.md").read_text()


def test_train_command_writes_an_ensemble_and_refuses_sizes_out_of_range(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ramanedge.cli import build_parser
    from trainer.cli import run_train

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY_TRAIN_CONFIG, "epochs": 3}))
    parser = build_parser(only="train")
    for bad in ("0", "17", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--data", str(tiny_data), "--out", "o", "--ensemble", bad])
    out = tmp_path / "ens"
    args = parser.parse_args(["train", "--data", str(tiny_data), "--out", str(out), "--config", str(cfg),
                              "--ensemble", "2"])
    assert run_train(args) == 0
    captured = capsys.readouterr()
    assert "ensemble member 2/2 (seed 1)" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["size"] == 2
    assert is_ensemble(out) and load_ensemble(out)[1].member_seeds == [0, 1]
