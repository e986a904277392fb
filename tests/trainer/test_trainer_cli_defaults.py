"""Defaults that fit the data: without a config, batch size, batch-norm momentum, epochs and patience follow the
number of training spectra; a config file or a flag overrides each one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ramanedge.cli import build_parser
from spectral_core.synth import synth_dataset
from trainer.cli import build_config, expected_training_spectra, given_sizes, with_data_defaults
from trainer.train import SMALL_DATA_SPECTRA, size_defaults

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"


def _args(command: str, *flags: str):  # type: ignore[no-untyped-def]
    return build_parser(only=command).parse_args([command, "--data", "d.npz", "--out", "o", *flags])


def _sizes(cfg) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    return cfg.batch_size, cfg.model.get("bn_momentum"), cfg.epochs, cfg.early_stopping_patience


def test_the_rule_switches_at_the_threshold() -> None:
    small, why = size_defaults(SMALL_DATA_SPECTRA - 1)
    assert small == {"batch_size": 64, "model.bn_momentum": 0.1, "epochs": 300, "early_stopping_patience": 60,
                     "selection.mode": "swa"}
    assert "small_data.toml" in why and str(SMALL_DATA_SPECTRA - 1) in why
    large, why = size_defaults(SMALL_DATA_SPECTRA)
    assert large == {"batch_size": 256, "model.bn_momentum": 0.01, "epochs": 200, "early_stopping_patience": 50,
                     "selection.mode": "best-loss"}
    assert "paper.toml" in why


def test_small_data_gets_the_small_data_settings_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    ds = synth_dataset(classes=3, per_class=20, points=100, seed=1)
    args = _args("train")
    cfg = with_data_defaults(args, build_config(args), ds)
    assert _sizes(cfg) == (64, 0.1, 150, 60) and cfg.selection.mode == "swa"  # swa: 150 epochs, not 300
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training settings: batch 64" in err and "54 training spectra" in err
    # The small-data settings are the ones small_data_swa.toml encodes, so the file and the defaults agree;
    # small_data.toml keeps best-loss (and the 300 epochs with early stopping it needs).
    file_cfg = build_config(_args("train", "--config", str(CONFIGS / "small_data_swa.toml")))
    assert _sizes(file_cfg) == _sizes(cfg) and file_cfg.selection == cfg.selection
    best = build_config(_args("train", "--config", str(CONFIGS / "small_data.toml")))
    assert _sizes(best) == (64, 0.1, 300, 60) and best.selection.mode == "best-loss"
    args = _args("train", "--select", "best-loss")  # choosing best-loss brings back its 300 epochs
    chosen = with_data_defaults(args, build_config(args), ds)
    assert _sizes(chosen) == (64, 0.1, 300, 60) and chosen.selection.mode == "best-loss"


def test_each_setting_is_overridden_by_a_flag_or_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = synth_dataset(classes=3, per_class=20, points=100, seed=1)
    args = _args("train", "--batch-size", "16", "--early-stopping", "7", "--select", "best-loss")
    cfg = with_data_defaults(args, build_config(args), ds)
    assert _sizes(cfg) == (16, 0.1, 300, 7)
    assert "batch 16 (given)" in capsys.readouterr().err
    args = _args("train", "--bn-momentum", "0.3", "--epochs", "4")
    assert _sizes(with_data_defaults(args, build_config(args), ds)) == (64, 0.3, 4, 60)
    f = tmp_path / "c.toml"
    f.write_text("epochs = 9\n[model]\nbn_momentum = 0.5\n")
    args = _args("train", "--config", str(f))
    assert given_sizes(args) == {"epochs", "model.bn_momentum"}
    assert _sizes(with_data_defaults(args, build_config(args), ds)) == (64, 0.5, 9, 60)
    f.write_text('[selection]\nmode = "smoothed"\n')
    args = _args("train", "--config", str(f))
    assert given_sizes(args) == {"selection.mode"}
    assert _sizes(with_data_defaults(args, build_config(args), ds)) == (64, 0.1, 300, 60)
    # The paper's file keeps the paper's setup whatever the data size; a run.json repeats its run exactly.
    args = _args("train", "--config", str(CONFIGS / "paper.toml"))
    assert _sizes(with_data_defaults(args, build_config(args), ds)) == (256, 0.01, 200, 50)
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"format": "ramanedge-run", "train": {"batch_size": 8, "epochs": 2}}))
    assert given_sizes(_args("train", "--config", str(run))) == {"batch_size", "epochs"}


def test_evaluate_counts_the_training_part_of_a_split() -> None:
    ds = synth_dataset(classes=4, per_class=100, points=50, seed=2)  # 400 spectra
    cfg = build_config(_args("evaluate"))
    assert expected_training_spectra(_args("evaluate", "--folds", "4"), ds, cfg) == 270  # 400 x 3/4 x 0.9
    assert expected_training_spectra(_args("evaluate", "--protocol", "holdout"), ds, cfg) == 252  # x 0.7 x 0.9
    half = _args("train", "--val-fraction", "0.5")
    assert expected_training_spectra(half, ds, build_config(half)) == 200
