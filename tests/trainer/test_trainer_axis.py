"""The model axis training chooses: inside what every training spectrum covers, with the serving tolerance to
spare, so the same spectra shifted by a wavenumber or trimmed by a point at each end are all classified alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ramanedge.cli import main
from spectral_core.calibration import calibrate, reference_positions
from spectral_core.errors import DataError
from spectral_core.io import write_npz
from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor, default_axis_tolerance
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import instrument_axis, synth_dataset
from trainer.checkpoint import load_run
from trainer.data import choose_model_axis
from trainer.train import TrainConfig, predict, train

SMALL: dict[str, Any] = {
    "epochs": 12, "batch_size": 32, "lr": 3e-3, "num_threads": 1, "seed": 0,
    "model": {"window": 20, "step": 10, "n2": 32, "embedding_dim": 16, "bn_momentum": 0.1},
}


def test_a_uniform_axis_keeps_its_own_points_one_step_inside() -> None:
    axis = np.linspace(100.0, 4278.0, 2090)  # the melanoma SERS axis: 2 cm^-1 steps
    spec = choose_model_axis(PreprocessConfig(), [axis]).target_axis
    assert spec == AxisSpec(start=102.0, stop=4276.0, points=2088)
    np.testing.assert_allclose(spec.values(), axis[1:-1], atol=1e-9)  # no interpolation of the training data
    wide = choose_model_axis(PreprocessConfig(), [axis], tolerance=5.0).target_axis
    assert wide is not None and (wide.start, wide.stop, wide.points) == (106.0, 4272.0, 2084)


def test_explicit_axis_zero_tolerance_and_crop() -> None:
    axis = np.linspace(400.0, 1800.0, 701)
    given = PreprocessConfig(target_axis=AxisSpec(start=500.0, stop=900.0, points=11))
    assert choose_model_axis(given, [axis]) is given
    plain = PreprocessConfig()
    assert choose_model_axis(plain, [axis], tolerance=0.0) is plain  # 0: the data's own axis, as before
    cropped = choose_model_axis(PreprocessConfig(crop=(398.0, 1000.0)), [axis]).target_axis
    assert cropped is not None and cropped.start == 402.0 and cropped.stop == 1000.0  # the crop bounds it too


def test_several_axes_share_the_range_all_of_them_cover() -> None:
    a = np.linspace(400.0, 1800.0, 701)
    b = np.linspace(390.0, 1790.0, 701)
    spec = choose_model_axis(PreprocessConfig(), [a, b]).target_axis
    assert spec is not None
    assert spec.start == pytest.approx(402.0) and spec.stop == pytest.approx(1788.0)
    # an instrument's own non-uniform axis gives a uniform model axis with as many points inside
    inst = instrument_axis(1024)
    s2 = choose_model_axis(PreprocessConfig(), [inst]).target_axis
    tol = default_axis_tolerance(inst)
    assert s2 is not None and s2.start == pytest.approx(inst[0] + tol) and s2.stop == pytest.approx(inst[-1] - tol)
    assert s2.points == int(np.sum((inst >= inst[0] + tol - 1e-6) & (inst <= inst[-1] - tol + 1e-6)))
    with pytest.raises(DataError, match="share only 400-403 cm\\^-1"):
        choose_model_axis(PreprocessConfig(), [a, np.linspace(301.0, 403.0, 52)])


def shifted_and_trimmed(ds: SpectralDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same spectra as another instrument would give them: axis shifted by +-1 cm^-1, one point shorter."""
    return {
        "shift+1": (ds.axis + 1.0, ds.X),
        "shift-1": (ds.axis - 1.0, ds.X),
        "trimmed": (ds.axis[1:-1], ds.X[:, 1:-1]),
    }


def test_shifted_and_trimmed_spectra_get_the_class_of_the_training_axis(tmp_path: Path) -> None:
    ds = synth_dataset(classes=4, per_class=30, points=400, seed=5)
    info = train(ds, tmp_path / "run", TrainConfig.model_validate(SMALL))
    model, run = load_run(tmp_path / "run")
    assert len(info.axis) == 398 and info.axis[0] > ds.axis[0] and info.axis[-1] < ds.axis[-1]
    # serving: the contract's default tolerance (one model-axis step here)
    pre = Preprocessor(run.preprocess, axis_tolerance=default_axis_tolerance(run.axis))
    base = predict(model, pre.transform(ds.X, ds.axis))[0].argmax(1)
    for name, (axis, X) in shifted_and_trimmed(ds).items():
        out, bad = pre.transform_rows(X, axis)
        assert not bad and pre.edge_fill(axis) == (0.0, 0.0), name  # the margin left inside absorbs it
        agree = float(np.mean(predict(model, out)[0].argmax(1) == base))
        assert agree >= 0.95, (name, agree)


def test_train_command_prints_the_axis_and_applies_a_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.npz"
    write_npz(synth_dataset(classes=3, per_class=12, points=200, seed=2), data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "2", "--window", "20",
                 "--step", "10", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "model axis: 407.035-1792.96 cm^-1, 198 points (the data cover 400-1800 cm^-1)" in err
    # a calibration (here: an offset of -3 cm^-1 from silicon) moves the data's axis before the choice
    x = np.linspace(200.0, 1000.0, 800)
    si = 1.0 / (1.0 + ((x - 3.0 - reference_positions("silicon")[0]) / 3.0) ** 2) + 0.01 * np.cos(x)
    cal = calibrate(x, si, "silicon")
    cal.save(tmp_path / "si.json")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run2"), "--epochs", "2", "--window", "20",
                 "--step", "10", "--threads", "1", "--calibration", str(tmp_path / "si.json"), "--quiet"]) == 0
    run = json.loads((tmp_path / "run2" / "run.json").read_text())
    assert run["axis"][0] == pytest.approx(407.035 - 3.0, abs=0.05)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run3"), "--epochs", "2", "--window", "20",
                 "--step", "10", "--threads", "1", "--axis-tolerance", "0", "--quiet"]) == 0
    assert len(json.loads((tmp_path / "run3" / "run.json").read_text())["axis"]) == 200
