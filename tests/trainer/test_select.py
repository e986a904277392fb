"""trainer.selection: which weights a run keeps (best-loss, smoothed, swa), in the loop and end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ramanedge.cli import main
from spectral_core.errors import DataError
from spectral_core.io import write_npz
from spectral_core.preprocess import Preprocessor
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset
from trainer.checkpoint import load_run
from trainer.data import kfold_splits, validation_split
from trainer.selection import SelectionConfig, Selector, parse_selection
from trainer.train import TrainConfig, recalibrate_batchnorm, train


def _model_at(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(-value)
    return m


def _run(cfg: SelectionConfig, losses: list[float]) -> tuple[int, float, dict[str, Any], list[bool]]:
    """Feed ``losses`` (epoch e has weight e); returns the kept epoch, the kept weight, the record, improvements."""
    sel = Selector(cfg, len(losses))
    flags = [sel.update(e, v, _model_at(float(e))) for e, v in enumerate(losses, start=1)]
    out = _model_at(0.0)
    seen: list[float] = []  # the weight the model holds when batch-norm statistics are recomputed
    epoch, record = sel.finish(out, lambda m: seen.append(float(m.weight.detach())))
    assert seen == ([float(out.weight.detach())] if cfg.mode == "swa" else [])  # swa only, after averaging
    return epoch, float(out.weight.detach()), record, flags


# one lucky epoch (4) in a noisy early phase, then a steady stretch that is genuinely better on average
LOSSES = [2.0, 1.5, 1.2, 0.2, 1.2, 1.0, 0.8, 0.5, 0.45, 0.5, 0.4, 0.45, 0.5, 0.6, 0.7]


def test_best_loss_keeps_the_single_lowest_epoch() -> None:
    epoch, weight, record, flags = _run(SelectionConfig(), LOSSES)
    assert epoch == 4 and weight == 4.0
    assert record["mode"] == "best-loss" and record["criterion"] == pytest.approx(0.2)
    assert flags[:4] == [True, True, True, True] and not any(flags[4:])


def test_smoothed_is_not_fooled_by_one_lucky_epoch() -> None:
    epoch, weight, record, _ = _run(SelectionConfig(mode="smoothed", window=5, min_epoch=1), LOSSES)
    # centred medians of 5: epoch 4 -> median(1.5, 1.2, 0.2, 1.2, 1.0) = 1.2; epoch 10 -> median(0.45, 0.5,
    # 0.4 ...) is the lowest stretch
    med = [float(np.median(LOSSES[max(0, c - 2): c + 3])) for c in range(len(LOSSES))]
    assert epoch == int(np.argmin(med)) + 1 and epoch >= 9
    assert weight == float(epoch)  # the weights of that very epoch, not of the epoch the window ended at
    assert record["smoothed_val"] == pytest.approx(min(med))


def test_smoothed_respects_min_epoch_and_judges_the_last_epochs_on_a_cut_window() -> None:
    losses = [0.1, 0.1, 0.1, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    epoch, _, _, _ = _run(SelectionConfig(mode="smoothed", window=3, min_epoch=4), losses)
    assert epoch == 10  # the early epochs were lowest but too early; the last has the window (0.6, 0.5)
    epoch, _, _, _ = _run(SelectionConfig(mode="smoothed", window=3, min_epoch=1), losses)
    assert epoch in (1, 2)


def test_smoothed_keeps_the_last_weights_when_the_run_ends_before_min_epoch() -> None:
    epoch, weight, _, _ = _run(SelectionConfig(mode="smoothed", window=3, min_epoch=50), [1.0, 0.5, 0.7])
    assert (epoch, weight) == (3, 3.0)


def test_swa_averages_the_weights_of_the_last_part_and_recomputes_batch_norm() -> None:
    cfg = SelectionConfig(mode="swa", swa_start=0.6)
    epoch, weight, record, flags = _run(cfg, [9.0] * 10)  # the loss plays no part
    assert cfg.first_averaged_epoch(10) == 7
    assert epoch == 10 and weight == pytest.approx(np.mean([7, 8, 9, 10]))
    assert record["averaged_epochs"] == [7, 10] and record["n_averaged"] == 4
    assert flags == [False] * 6 + [True] * 4


def test_parse_selection_forms_and_refusals() -> None:
    assert parse_selection("best-loss") == SelectionConfig()
    s = parse_selection("smoothed:window=11,min_epoch=20")
    assert (s.mode, s.window, s.min_epoch) == ("smoothed", 11, 20)
    assert s.describe() == "smoothed:window=11,min_epoch=20"
    w = parse_selection("SWA:swa_start=0.5,swa_lr=1e-4")
    assert (w.mode, w.swa_start, w.swa_lr) == ("swa", 0.5, 1e-4)
    for bad in ("best", "smoothed:window", "smoothed:size=3", "swa:swa_start=1.5", "smoothed:window=x"):
        with pytest.raises(DataError, match="--select"):
            parse_selection(bad)


SMALL: dict[str, Any] = {
    "epochs": 6, "batch_size": 16, "lr": 3e-3, "num_threads": 1,
    "model": {"window": 20, "step": 10, "n2": 16, "embedding_dim": 8, "bn_momentum": 0.1},
}


@pytest.fixture(scope="module")
def small_ds() -> SpectralDataset:
    return synth_dataset(classes=3, per_class=14, points=160, seed=5)


def test_swa_run_ignores_early_stopping_and_keeps_bn_statistics_of_the_averaged_weights(
    small_ds: SpectralDataset, tmp_path: Path
) -> None:
    cfg = TrainConfig.model_validate({**SMALL, "early_stopping_patience": 1, "selection": {"mode": "swa",
                                                                                             "swa_start": 0.5}})
    info = train(small_ds, tmp_path / "swa", cfg)
    assert info.metrics["epochs_run"] == 6  # a fixed schedule: patience 1 would have stopped it otherwise
    assert info.metrics["selection"]["averaged_epochs"] == [4, 6]
    assert info.metrics["best_epoch"] == 6
    model, loaded = load_run(tmp_path / "swa")
    assert small_ds.y is not None
    tr, va = validation_split(small_ds.y, small_ds.groups, cfg.val_fraction, cfg.seed)
    pre = Preprocessor(loaded.preprocess)
    x_tr = torch.tensor(pre.transform(small_ds.X[tr], small_ds.axis))
    # the recorded validation numbers are the averaged model's
    from trainer.train import predict

    logits, _ = predict(model, pre.transform(small_ds.X[va], small_ds.axis))
    assert float((logits.argmax(1) == small_ds.y[va]).mean()) == pytest.approx(info.metrics["val_accuracy"])
    # The first batch norm sits before any dropout, so its statistics are a deterministic function of the
    # weights and the training spectra: those of the averaged weights (the later ones see dropout masks).
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("window_bn.running")}
    assert len(before) == 2
    recalibrate_batchnorm(model, x_tr, cfg.batch_size)
    for k, v in before.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    plain = train(small_ds, tmp_path / "plain", TrainConfig.model_validate({**SMALL, "early_stopping_patience": 1}))
    assert plain.weights_sha256 != info.weights_sha256


def test_smoothed_run_keeps_an_epoch_from_min_epoch_on(small_ds: SpectralDataset, tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate({**SMALL, "selection": {"mode": "smoothed", "window": 3, "min_epoch": 3}})
    info = train(small_ds, tmp_path / "sm", cfg)
    assert info.metrics["best_epoch"] >= 3
    assert info.metrics["selection"]["mode"] == "smoothed"
    hist = (tmp_path / "sm" / "history.csv").read_text().strip().splitlines()[1:]
    val = [float(line.split(",")[6]) for line in hist]
    med = [float(np.median(val[max(0, c - 1): c + 2])) for c in range(len(val))]
    assert info.metrics["selection"]["criterion"] == pytest.approx(min(med[2:]), rel=1e-4)


def test_validation_parts_never_share_a_group_with_training() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(30)], 4)
    y = np.repeat(rng.integers(0, 3, 30), 4).astype(np.int64)
    tr, va = validation_split(y, groups, 0.2, seed=1)
    assert va.size and not set(groups[tr]) & set(groups[va])
    for s in kfold_splits(y, groups, folds=3, val_fraction=0.2, seed=0):
        parts = [set(groups[np.asarray(s[k], dtype=np.int64)]) for k in ("train", "val", "test")]
        assert parts[1] and not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]


def test_select_flag_merges_with_the_config_file_and_is_recorded(small_ds: SpectralDataset, tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    write_npz(small_ds, data)
    conf = tmp_path / "c.toml"
    conf.write_text('epochs = 4\nbatch_size = 16\n[selection]\nmode = "smoothed"\nwindow = 3\nmin_epoch = 2\n'
                    '[augment]\nshift = 2.0\n')
    cfg = TrainConfig.from_file(conf)
    assert cfg.selection.window == 3 and cfg.augment.shift == 2.0
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet", "--config", str(conf),
                 "--window", "20", "--step", "10", "--threads", "1", "--select", "smoothed:min_epoch=3"]) == 0
    raw = json.loads((tmp_path / "run" / "run.json").read_text())
    assert raw["train"]["selection"] == {"mode": "smoothed", "window": 3, "min_epoch": 3, "swa_start": 0.75,
                                         "swa_lr": None}
    assert raw["metrics"]["selection"]["describe"] == "smoothed:window=3,min_epoch=3"
    assert raw["metrics"]["best_epoch"] >= 3


def test_small_data_defaults_to_swa_over_150_epochs_unless_a_selection_is_given() -> None:
    from trainer.train import SWA_EPOCHS_SMALL, with_size_defaults

    cfg, line = with_size_defaults(TrainConfig(), 300, set())
    assert cfg.selection.mode == "swa" and cfg.epochs == SWA_EPOCHS_SMALL == 150
    assert "no early stopping (swa: a fixed schedule)" in line and "early stopping after" not in line
    assert "model selection swa:swa_start=0.75, augmentation none" in line
    cfg, line = with_size_defaults(TrainConfig(), 300, {"selection.mode"})  # best-loss given: 300 epochs, patience
    assert cfg.selection.mode == "best-loss" and cfg.epochs == 300
    assert "early stopping after 60 epochs" in line and "model selection best-loss (given)" in line
    large, _ = with_size_defaults(TrainConfig(), 5000, set())  # not measured on large data: the paper's
    assert large.selection.mode == "best-loss" and large.epochs == 200
    aug = TrainConfig.model_validate({"augment": {"noise": 0.01}})
    _, line = with_size_defaults(aug, 300, set())
    assert line.count("augmentation noise=0.01") == 1
