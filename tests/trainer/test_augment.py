"""trainer.augment: each op does what it claims, the seed decides everything, and nothing but training sees it."""

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
from trainer.augment import AugmentConfig, augment_batch, parse_augment, shift_spectra
from trainer.checkpoint import load_run
from trainer.train import TrainConfig, predict, train

STEP = 2.0  # cm^-1 per point of the test axis
AXIS = 400.0 + STEP * np.arange(700)  # 400-1798 cm^-1


def _peak(center_cm1: float, width_cm1: float = 8.0) -> torch.Tensor:
    return torch.tensor(np.exp(-0.5 * ((AXIS - center_cm1) / width_cm1) ** 2), dtype=torch.float32)


def _centroid_cm1(x: torch.Tensor) -> float:
    w = x.double().numpy()
    return float((w * AXIS).sum() / w.sum())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shift_moves_a_peak_by_the_asked_cm1_including_sub_point_shifts() -> None:
    x = _peak(900.0).unsqueeze(0).repeat(3, 1)
    shifts_cm1 = torch.tensor([3.0, -5.0, 0.7])
    out = shift_spectra(x, shifts_cm1 / STEP)
    for i, d in enumerate(shifts_cm1.tolist()):
        assert _centroid_cm1(out[i]) == pytest.approx(900.0 + d, abs=0.02)
    # the maximum moves by the whole-point part (3 cm^-1 = 1.5 points: it lands half-way, between two points)
    assert int(out[1].argmax()) == int(x[1].argmax()) - 2 or int(out[1].argmax()) == int(x[1].argmax()) - 3


def test_random_shift_stays_within_the_bound_in_cm1() -> None:
    n = 200
    x = _peak(700.0).unsqueeze(0).repeat(n, 1)
    out = augment_batch(x, torch.zeros(n, dtype=torch.int64), AugmentConfig(shift=4.0), step_cm1=STEP, gen=_gen())
    moved = np.array([_centroid_cm1(r) - 700.0 for r in out])
    assert np.abs(moved).max() <= 4.0 + 0.02
    assert moved.min() < -3.0 and moved.max() > 3.0  # the whole range is used, both directions
    # on the same axis sampled twice as finely, the same cm^-1 shift is twice as many points
    fine = augment_batch(x, torch.zeros(n, dtype=torch.int64), AugmentConfig(shift=4.0), step_cm1=STEP / 2,
                         gen=_gen())
    moved_fine = np.array([_centroid_cm1(r) - 700.0 for r in fine])
    np.testing.assert_allclose(moved_fine, 2 * moved, atol=0.05)


def test_scale_multiplies_each_spectrum_by_one_factor_within_bounds() -> None:
    n = 100
    x = (_peak(900.0) + 0.1).unsqueeze(0).repeat(n, 1)
    out = augment_batch(x, torch.zeros(n, dtype=torch.int64), AugmentConfig(scale=0.2), step_cm1=STEP, gen=_gen())
    ratio = out / x
    factors = ratio[:, 0]
    torch.testing.assert_close(ratio, factors.unsqueeze(1).expand_as(ratio))  # one factor a spectrum
    assert float(factors.min()) >= 0.8 and float(factors.max()) <= 1.2
    assert float(factors.std()) > 0.05


def test_baseline_adds_a_smooth_bounded_low_order_curve() -> None:
    n = 50
    x = _peak(900.0).unsqueeze(0).repeat(n, 1) * 10.0  # range 10
    out = augment_batch(x, torch.zeros(n, dtype=torch.int64), AugmentConfig(baseline=0.1), step_cm1=STEP,
                        gen=_gen())
    added = (out - x).double().numpy()
    assert np.abs(added).max() <= 0.1 * 10.0 + 1e-5  # at most baseline x the spectrum's range
    assert np.abs(added).max() > 0.1
    t = np.linspace(-1, 1, AXIS.size)
    for row in added:  # a polynomial of degree 3 fits it exactly: smooth, no new band
        resid = row - np.polyval(np.polyfit(t, row, 3), t)
        assert np.abs(resid).max() < 1e-4


def test_noise_is_gaussian_relative_to_each_spectrums_range() -> None:
    n = 40
    x = torch.cat([_peak(900.0).unsqueeze(0).repeat(n // 2, 1), 100 * _peak(900.0).unsqueeze(0).repeat(n // 2, 1)])
    out = augment_batch(x, torch.zeros(n, dtype=torch.int64), AugmentConfig(noise=0.01), step_cm1=STEP, gen=_gen())
    resid = (out - x).double().numpy()
    assert resid[: n // 2].std() == pytest.approx(0.01, rel=0.05)
    assert resid[n // 2 :].std() == pytest.approx(1.0, rel=0.05)
    assert abs(resid.mean()) < 0.02


def test_mixup_only_mixes_spectra_of_the_same_class() -> None:
    # class 0: peaks at 600 or 700 cm^-1; class 1: peaks at 1200 or 1300 cm^-1
    rows = [_peak(600.0), _peak(700.0), _peak(1200.0), _peak(1300.0)] * 8
    y = torch.tensor([0, 0, 1, 1] * 8)
    x = torch.stack(rows)
    out = augment_batch(x, y, AugmentConfig(mixup=1.0), step_cm1=STEP, gen=_gen())
    low = torch.tensor(AXIS < 900)
    for i in range(x.shape[0]):
        other = ~low if int(y[i]) == 0 else low
        assert float(out[i][other].abs().max()) < 1e-6  # nothing of the other class came in
        # x stays the larger part: the mix is a convex combination with weight >= 0.5 on itself
        lam = float((out[i] * x[i]).sum() / (x[i] * x[i]).sum())
        assert lam >= 0.5 - 0.05
    changed = (out - x).abs().amax(1) > 1e-3
    assert int(changed.sum()) >= x.shape[0] // 2  # most were mixed with a different spectrum of their class
    # mixup=0.25: about a quarter of the spectra change
    part = augment_batch(x.repeat(8, 1), y.repeat(8), AugmentConfig(mixup=0.25), step_cm1=STEP, gen=_gen(1))
    share = float(((part - x.repeat(8, 1)).abs().amax(1) > 1e-6).float().mean())
    assert 0.1 < share < 0.4


def test_same_generator_seed_same_batch_and_another_seed_another() -> None:
    x = torch.stack([_peak(c) for c in (600.0, 800.0, 1000.0, 1200.0)])
    y = torch.tensor([0, 0, 1, 1])
    cfg = parse_augment("shift=3,scale=0.1,baseline=0.05,noise=0.01,mixup=0.5")
    a = augment_batch(x, y, cfg, step_cm1=STEP, gen=_gen(5))
    b = augment_batch(x, y, cfg, step_cm1=STEP, gen=_gen(5))
    c = augment_batch(x, y, cfg, step_cm1=STEP, gen=_gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    assert augment_batch(x, y, AugmentConfig(), step_cm1=STEP, gen=_gen()) is x  # off: untouched


def test_parse_augment_forms_and_refusals() -> None:
    cfg = parse_augment("shift=3, noise=0.01")
    assert (cfg.shift, cfg.noise, cfg.scale, cfg.mixup) == (3.0, 0.01, 0.0, 0.0)
    assert cfg.describe() == "shift=3,noise=0.01"
    assert not parse_augment("none").active and parse_augment("none").describe() == "none"
    for bad in ("shift", "warp=2", "noise=lots", "scale=1.5", "shift=-1"):
        with pytest.raises(DataError, match="--augment"):
            parse_augment(bad)


SMALL: dict[str, Any] = {
    "epochs": 3, "batch_size": 16, "lr": 3e-3, "num_threads": 1,
    "model": {"window": 20, "step": 10, "n2": 16, "embedding_dim": 8, "bn_momentum": 0.1},
}


@pytest.fixture(scope="module")
def small_ds() -> SpectralDataset:
    return synth_dataset(classes=3, per_class=14, points=160, seed=4)


def test_training_is_deterministic_with_augmentation_and_augmentation_changes_the_weights(
    small_ds: SpectralDataset, tmp_path: Path
) -> None:
    aug = {**SMALL, "augment": {"shift": 3.0, "noise": 0.02, "mixup": 0.3}}
    a = train(small_ds, tmp_path / "a", TrainConfig.model_validate(aug))
    b = train(small_ds, tmp_path / "b", TrainConfig.model_validate(aug))
    plain = train(small_ds, tmp_path / "p", TrainConfig.model_validate(SMALL))
    assert a.weights_sha256 == b.weights_sha256
    assert a.weights_sha256 != plain.weights_sha256
    raw = json.loads((tmp_path / "a" / "run.json").read_text())
    assert raw["train"]["augment"]["shift"] == 3.0 and raw["metrics"]["augment"] == "shift=3,noise=0.02,mixup=0.3"


def test_validation_and_prediction_see_clean_spectra(small_ds: SpectralDataset, tmp_path: Path) -> None:
    # Noise 5 times each spectrum's range: any use of augmentation outside the training batches would show in
    # the recorded validation numbers, which must equal the kept model's on the clean validation spectra.
    cfg = TrainConfig.model_validate({**SMALL, "augment": {"noise": 5.0}})
    info = train(small_ds, tmp_path / "run", cfg)
    model, loaded = load_run(tmp_path / "run")
    from trainer.data import validation_split

    assert small_ds.y is not None
    _, va = validation_split(small_ds.y, small_ds.groups, cfg.val_fraction, cfg.seed)
    x_va = Preprocessor(loaded.preprocess).transform(small_ds.X[va], small_ds.axis)
    logits, _ = predict(model, x_va)
    again, _ = predict(model, x_va)
    np.testing.assert_array_equal(logits, again)  # prediction draws nothing at random
    acc = float((logits.argmax(1) == small_ds.y[va]).mean())
    assert acc == pytest.approx(info.metrics["val_accuracy"])
    ce = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(small_ds.y[va])).item()
    from trainer.train import _evaluate

    v_loss, v_ce, _, _ = _evaluate(model, torch.tensor(x_va), torch.tensor(small_ds.y[va]), cfg)
    assert v_ce == pytest.approx(ce, rel=1e-5)
    assert v_loss == pytest.approx(info.metrics["val_loss"], rel=1e-5)


def test_augment_flag_on_train_and_in_evaluate_results(small_ds: SpectralDataset, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.npz"
    write_npz(small_ds, data)
    common = ["--epochs", "2", "--batch-size", "16", "--window", "20", "--step", "10", "--threads", "1"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet",
                 "--augment", "shift=2,scale=0.05", *common]) == 0
    raw = json.loads((tmp_path / "run" / "run.json").read_text())
    assert raw["train"]["augment"] == {"shift": 2.0, "scale": 0.05, "baseline": 0.0, "noise": 0.0, "mixup": 0.0}
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "ev"), "--quiet", "--folds", "2",
                 "--augment", "noise=0.01", "--select", "smoothed:window=3,min_epoch=1", *common]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["train_config"]["augment"]["noise"] == 0.01
    assert res["train_config"]["selection"]["mode"] == "smoothed"
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "model selection smoothed:window=3,min_epoch=1; augmentation noise=0.01" in md
    capsys.readouterr()
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--quiet", "--augment", "warp=1",
               *common])
    assert rc != 0
    assert "--augment" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
