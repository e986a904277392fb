"""The engine's axis policy: spectra whose range falls short of the model axis by at most the contract's
tolerance are classified (the edge filled, the record says by how much); beyond it, a recorded error that
names both ranges. Target: the same spectra shifted by +-1 cm^-1 or trimmed by a point at each end are all
classified, >= 95% with the class they get on the training axis (synthetic here; melanoma NH2 under ``data``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engine import Engine
from edge_runtime.records import Frame, Outcome
from spectral_core.io import read_dataset
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset
from trainer.train import TrainConfig, train


def variants(ds: SpectralDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The spectra as another instrument gives them: shifted by +-1 cm^-1, trimmed by one point at each end."""
    return {
        "shift+1": (ds.axis + 1.0, ds.X),
        "shift-1": (ds.axis - 1.0, ds.X),
        "trimmed": (ds.axis[1:-1], ds.X[:, 1:-1]),
    }


def classify(engine: Engine, axis: np.ndarray, X: np.ndarray, tag: str) -> list[Outcome]:
    a = np.ascontiguousarray(axis, dtype=np.float64)
    return engine.classify([Frame("t", f"{tag}#{i}", a, X[i]) for i in range(X.shape[0])])


def check_target(engine: Engine, ds: SpectralDataset) -> dict[str, float]:
    base = classify(engine, ds.axis, ds.X, "base")
    assert all(o.ok for o in base)
    ref = np.array([o.class_index for o in base])
    agreement = {}
    for name, (axis, X) in variants(ds).items():
        out = classify(engine, axis, X, name)
        errors = [o.error for o in out if not o.ok]
        assert not errors, (name, errors[:2])
        agreement[name] = float(np.mean(np.array([o.class_index for o in out]) == ref))
        assert agreement[name] >= 0.95, (name, agreement[name])
    return agreement


@pytest.fixture(scope="module")
def engine(tiny_onnx: Path) -> Engine:
    return Engine(tiny_onnx, provider="cpu")


def test_synthetic_shifted_and_trimmed_spectra_are_classified_alike(engine: Engine) -> None:
    ds = synth_dataset(classes=4, per_class=40, points=300, seed=0)  # the tiny model's training data
    check_target(engine, ds)


def test_edge_fill_is_recorded_and_beyond_the_tolerance_is_an_error(engine: Engine) -> None:
    ax = engine.contract.axis_array()
    step = ax[1] - ax[0]
    assert engine.axis_tolerance == pytest.approx(step) and engine.describe()["axis_tolerance_cm1"] == engine.axis_tolerance
    ds = synth_dataset(classes=4, per_class=2, points=ax.size, seed=9, axis=ax + 1.5)
    out = classify(engine, ds.axis, ds.X, "filled")
    assert all(o.ok for o in out)
    assert [o.frame.metadata["axis_edge_fill_cm1"] for o in out[:1]] == [[1.5, 0.0]]
    exact = classify(engine, ax, ds.X, "exact")
    assert all(o.ok and "axis_edge_fill_cm1" not in o.frame.metadata for o in exact)
    far = ax + step + 1.0  # one step and a wavenumber short at the low end: beyond the tolerance
    out = classify(engine, far, ds.X, "far")
    assert all(not o.ok and o.error_kind == "preprocess" for o in out)
    msg = out[0].error or ""
    assert f"{ax[0]:g}-{ax[-1]:g} cm^-1 lies outside the measured range {far[0]:g}-{far[-1]:g}" in msg
    assert "axis tolerance" in msg and "ramanedge calibrate" in msg


def test_the_tolerance_is_set_at_export_and_read_back_by_the_engine(tiny_run: Path, tmp_path: Path) -> None:
    from export.onnx_export import ExportError, export_run

    e = Engine(export_run(tiny_run, tmp_path / "t.onnx", axis_tolerance=0.25), provider="cpu")
    assert e.contract.axis_tolerance_cm1 == 0.25 and e.axis_tolerance == 0.25
    ax = e.contract.axis_array()
    out = classify(e, ax + 0.2, np.ones((1, ax.size)) + np.arange(ax.size) % 5, "quarter")
    assert out[0].ok and out[0].frame.metadata["axis_edge_fill_cm1"] == [0.2, 0.0]
    with pytest.raises(ExportError, match="axis tolerance must be"):
        export_run(tiny_run, tmp_path / "bad.onnx", axis_tolerance=-1.0)


def test_a_stricter_tolerance_can_be_set_when_serving(tiny_onnx: Path) -> None:
    strict = Engine(tiny_onnx, provider="cpu", axis_tolerance=0.5)
    ax = strict.contract.axis_array()
    ds = synth_dataset(classes=4, per_class=1, points=ax.size, seed=9, axis=ax + 1.0)
    out = classify(strict, ds.axis, ds.X, "strict")
    assert all(not o.ok and "axis tolerance of 0.5 cm^-1" in (o.error or "") for o in out)


@pytest.mark.data
@pytest.mark.slow
def test_melanoma_nh2_shifted_and_trimmed_spectra_are_classified_alike(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from export.onnx_export import export_run

    ds = read_dataset(data_dir / "melanoma-sers-erzina" / "dataset_nh2.npz")
    cfg = TrainConfig.model_validate({
        "epochs": 8, "batch_size": 64, "lr": 3e-3, "seed": 0, "num_threads": 1,
        "model": {"window": 50, "step": 25, "n2": 64, "embedding_dim": 32, "bn_momentum": 0.1},
    })
    info = train(ds, tmp_path / "run", cfg)
    assert info.axis[0] == 102.0 and info.axis[-1] == 4276.0 and len(info.axis) == 2088
    engine = Engine(export_run(tmp_path / "run", tmp_path / "m.onnx"), provider="cpu")
    agreement = check_target(engine, ds)
    print("melanoma NH2 agreement with the training axis:", agreement)


def test_serve_axis_tolerance_reaches_every_engine_of_the_daemon(model: Path, tmp_path: Path) -> None:
    import argparse

    from edge_runtime.cli import configure_serve, settings_flags
    from edge_runtime.daemon import Daemon
    from edge_runtime.settings import load_settings

    p = argparse.ArgumentParser()
    configure_serve(p)
    args = p.parse_args(["--model", str(model), "--axis-tolerance", "7.5", "--http", "off"])
    s = load_settings(settings_flags(args))
    assert s.axis_tolerance_cm1 == 7.5
    d = Daemon(s)
    assert d._engine_options()["axis_tolerance"] == 7.5
    e = d._load_candidate(model)  # the engine a model update would get
    assert e.describe()["axis_tolerance_cm1"] == 7.5
