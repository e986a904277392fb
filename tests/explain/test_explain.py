"""ramanedge explain: DeepSHAP attributions of a trained RamanNet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from known_bands import BAND_FWHM, KNOWN_BANDS

from spectral_core.errors import ContractError, DataError, MissingExtraError, PreprocessError
from spectral_core.io import read_dataset, write_npz
from spectral_core.spectrum import SpectralDataset
from trainer.attribution import cross_check, explain_spectra, permutation_windows
from trainer.checkpoint import load_run
from trainer.explain import configure_explain, run_explain
from trainer.regions import region_bounds, region_importance
from trainer.rundata import draw_background, load_for_run


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    configure_explain(p)
    return p.parse_args(list(argv))


@pytest.fixture(scope="module")
def explained(band_files):
    model, info = load_run(band_files["run"])
    bg = draw_background(load_for_run(band_files["train"], info), 40, seed=0)
    test = load_for_run(band_files["test"], info)
    return model, info, bg, test, explain_spectra(model, bg, test.X, test.y)


def test_attributions_are_finite_and_add_up_to_the_logits(explained):
    import torch

    model, info, bg, test, attr = explained
    n, length = attr.values.shape
    assert (n, length) == (test.X.shape[0], len(info.axis))
    assert attr.windows.shape == (n, model.n_windows)
    np.testing.assert_array_equal(attr.target, test.y)
    assert np.isfinite(attr.values).all() and np.isfinite(attr.windows).all()
    with torch.no_grad():
        logits = model(torch.from_numpy(test.X))[0].double().numpy()
        bg_logits = model(torch.from_numpy(bg))[0].double().numpy()
    # The explained logits are the model's, and the expected value is the mean over the background.
    np.testing.assert_allclose(attr.logits, logits, atol=1e-4)
    np.testing.assert_allclose(attr.expected, bg_logits.mean(axis=0), atol=1e-4)
    # DeepSHAP's guarantee: per spectrum, the attributions sum to its class's logit minus the expected value,
    # both per wavenumber point and per window.
    own = attr.logits[np.arange(n), test.y] - attr.expected[test.y]
    np.testing.assert_allclose(attr.values.sum(axis=1), own, atol=1e-8)
    np.testing.assert_allclose(attr.windows.sum(axis=1), own, atol=1e-8)
    assert attr.additivity_error < 1e-8 and attr.window_additivity_error < 1e-8
    # Not trivially zero: the model's decisions move the logits a lot.
    assert np.abs(own).max() > 1.0


def test_any_class_can_be_explained_and_default_is_the_prediction(explained):
    model, _, bg, test, _ = explained
    X = test.X[:6]
    other = explain_spectra(model, bg, X, np.zeros(6, dtype=np.int64))  # everything explained for class 0
    np.testing.assert_allclose(other.values.sum(axis=1), other.logits[:, 0] - other.expected[0], atol=1e-8)
    default = explain_spectra(model, bg, X)
    np.testing.assert_array_equal(default.target, default.predicted)
    with pytest.raises(DataError, match="class indices"):
        explain_spectra(model, bg, X, np.full(6, 7, dtype=np.int64))
    with pytest.raises(DataError, match="do not fit the model"):
        explain_spectra(model, bg, X[:, :-1])


def test_top_regions_are_the_bands_that_differ_between_classes(explained):
    model, info, _, _, attr = explained
    axis = np.asarray(info.axis)
    regions = region_importance(attr.values, region_bounds(axis, model.config.step), axis, attr.target, info.classes)
    # The region tiling covers the axis once.
    assert sum(r.stop - r.start for r in regions) == axis.size
    bands = [c for cs in KNOWN_BANDS.values() for c in cs]
    top = regions[: len(bands)]

    def holds(r, centre):
        return r.start_cm - BAND_FWHM / 2 <= centre <= r.end_cm + BAND_FWHM / 2

    found = [b for b in bands if any(holds(r, b) for r in top)]
    assert len(found) >= len(bands) - 1, (found, [(r.start_cm, r.end_cm) for r in top])
    assert sum(any(holds(r, b) for b in bands) for r in top) >= len(bands) - 1
    # The known bands carry most of the attribution mass: the shared bands (same in every class) little.
    total = sum(r.importance for r in regions)
    assert sum(r.importance for r in top) / total > 0.6
    # Per class: each class's own bands rank among its most important regions.
    for k, centres in KNOWN_BANDS.items():
        name = info.classes[k]
        ranked = sorted(regions, key=lambda r: -r.per_class[name])[:4]
        assert any(holds(r, c) for r in ranked for c in centres), name


def test_window_attributions_point_at_the_same_bands(explained):
    model, info, _, _, attr = explained
    from trainer.model import window_starts

    axis = np.asarray(info.axis)
    cfg = model.config
    bounds = [(s, s + cfg.window) for s in window_starts(cfg.input_length, cfg.window, cfg.step)]
    windows = region_importance(attr.windows, bounds, axis, attr.target, info.classes, per_region=True)
    best = windows[0]
    bands = [c for cs in KNOWN_BANDS.values() for c in cs]
    assert any(best.start_cm <= b <= best.end_cm for b in bands)


def test_cli_writes_table_and_plots(band_files, tmp_path):
    out = tmp_path / "ex"
    rc = run_explain(_args(str(band_files["run"]), "--data", str(band_files["train"]), "--out", str(out),
                           "--background", "20", "--max-spectra", "24", "--top", "6", "--cross-check", "2"))
    assert rc == 0
    report = json.loads((out / "regions.json").read_text())
    assert report["n_background"] == 20 and report["n_explained"] == 24
    assert report["additivity_max_abs_error"] < 1e-8
    assert report["cross_check"]["spectra"] == 2 and report["cross_check"]["min_spearman"] > 0.9
    imp = [r["importance"] for r in report["regions"]]
    assert imp == sorted(imp, reverse=True)
    assert report["regions"][0]["start_cm"] < report["regions"][0]["end_cm"]
    md = (out / "regions.md").read_text()
    assert md.startswith("| rank | region (cm^-1)") and md.count("\n| ") == 6
    for png in ("class_attributions.png", "region_violin.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "attributions.npz") as z:
        assert z["values"].shape[0] == 24 and np.isfinite(z["values"]).all()


def test_cli_explains_one_unlabelled_spectrum(band_files, tmp_path):
    ds = read_dataset(band_files["test"])
    few = write_npz(SpectralDataset(X=ds.X[:3], axis=ds.axis), tmp_path / "few.npz")
    out = tmp_path / "one"
    rc = run_explain(_args(str(band_files["run"]), "--data", str(band_files["train"]), "--out", str(out),
                           "--background", "20", "--spectrum", str(few), "--index", "2"))
    assert rc == 0
    report = json.loads((out / "regions.json").read_text())
    assert report["n_explained"] == 1 and report["explained_for"] == "predicted class" and report["index"] == 2
    probs = report["prediction"]["probabilities"]
    assert abs(sum(probs.values()) - 1.0) < 1e-9
    assert report["prediction"]["class"] == max(probs, key=probs.get)
    # The spectrum's class is known here: the model gets it right and its top regions hold its own bands.
    label = int(ds.y[2])
    assert report["prediction"]["class"] == ds.classes[label]
    top2 = report["regions"][:2]
    assert any(r["start_cm"] - BAND_FWHM <= c <= r["end_cm"] + BAND_FWHM for r in top2 for c in KNOWN_BANDS[label])
    assert (out / "spectrum_2.png").stat().st_size > 1000
    with pytest.raises(DataError, match="out of range"):
        run_explain(_args(str(band_files["run"]), "--data", str(band_files["train"]), "--out", str(out),
                          "--background", "20", "--spectrum", str(few), "--index", "3"))


def test_single_spectrum_plot_names_the_true_class_beside_the_prediction(band_files, tmp_path, monkeypatch):
    import trainer.explain as explain_mod

    titles: list[str] = []
    real = explain_mod.plot_spectrum

    def keep(*a, **k):
        titles.append(k["title"])
        return real(*a, **k)

    monkeypatch.setattr(explain_mod, "plot_spectrum", keep)
    ds = read_dataset(band_files["test"])
    labelled = write_npz(SpectralDataset(X=ds.X[:3], axis=ds.axis, y=ds.y[:3], classes=ds.classes),
                         tmp_path / "labelled.npz")
    unlabelled = write_npz(SpectralDataset(X=ds.X[:3], axis=ds.axis), tmp_path / "unlabelled.npz")
    for f in (labelled, unlabelled):
        assert run_explain(_args(str(band_files["run"]), "--data", str(band_files["train"]), "--out",
                                 str(tmp_path / f.stem), "--background", "10", "--spectrum", str(f),
                                 "--index", "1")) == 0
    true_name = ds.classes[int(ds.y[1])]
    assert f"true class {true_name} (correct)" in titles[0]
    assert "true class" not in titles[1]  # unlabelled: nothing invented


# ---------------------------------------------------------------------------------------------- bad input


def test_background_larger_than_data_is_refused(band_files, tmp_path):
    with pytest.raises(DataError, match="background set of 1000"):
        run_explain(_args(str(band_files["run"]), "--data", str(band_files["test"]), "--out", str(tmp_path),
                          "--background", "1000"))


def test_data_with_other_classes_is_refused(band_files, tmp_path):
    ds = read_dataset(band_files["test"])
    other = write_npz(
        SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=("x", "y", "z")), tmp_path / "other.npz"
    )
    with pytest.raises(ContractError, match="classes"):
        run_explain(_args(str(band_files["run"]), "--data", str(other), "--out", str(tmp_path)))


def test_subset_of_classes_in_another_order_is_mapped_by_name(band_files):
    _, info = load_run(band_files["run"])
    ds = read_dataset(band_files["test"])
    keep = ds.y != 0
    sub = SpectralDataset(X=ds.X[keep], axis=ds.axis, y=2 - ds.y[keep], classes=(info.classes[2], info.classes[1]))
    path = write_npz(sub, Path(band_files["test"]).parent / "sub.npz")
    data = load_for_run(path, info)
    np.testing.assert_array_equal(data.y, ds.y[keep])


def test_data_on_a_shorter_range_is_refused(band_files, tmp_path):
    ds = read_dataset(band_files["test"])
    cut = ds.axis < 1200.0
    short = write_npz(SpectralDataset(X=ds.X[:, cut], axis=ds.axis[cut], y=ds.y, classes=ds.classes),
                      tmp_path / "short.npz")
    with pytest.raises(PreprocessError, match=r"short\.npz.*outside the measured range"):
        run_explain(_args(str(band_files["run"]), "--data", str(short), "--out", str(tmp_path)))


def test_data_on_another_axis_is_refused_when_the_run_does_not_resample(tmp_path):
    from spectral_core.preprocess import PreprocessConfig
    from trainer.checkpoint import RunInfo, save_run
    from trainer.model import RamanNet, RamanNetConfig

    axis = np.linspace(400.0, 1800.0, 200)
    cfg = RamanNetConfig(input_length=200, n_classes=2, n2=8, embedding_dim=4)
    save_run(tmp_path / "run", RamanNet(cfg).eval(),
             RunInfo(model=cfg, preprocess=PreprocessConfig(), classes=["a", "b"], axis=axis.tolist()))
    rng = np.random.default_rng(0)
    other = np.linspace(400.0, 1800.0, 210)
    path = write_npz(SpectralDataset(X=rng.random((6, 210)).astype(np.float32), axis=other,
                                     y=np.array([0, 1] * 3), classes=("a", "b")), tmp_path / "d.npz")
    with pytest.raises(ContractError, match="not the model axis"):
        run_explain(_args(str(tmp_path / "run"), "--data", str(path), "--out", str(tmp_path / "o")))


def test_unlabelled_training_data_is_refused(band_files, tmp_path):
    ds = read_dataset(band_files["test"])
    nolab = write_npz(SpectralDataset(X=ds.X, axis=ds.axis), tmp_path / "nolab.npz")
    with pytest.raises(DataError, match="unlabelled"):
        run_explain(_args(str(band_files["run"]), "--data", str(nolab), "--out", str(tmp_path)))


def test_missing_train_extra_names_the_extra(band_files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "shap", None)  # `import shap` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"\[train\]"):
        run_explain(_args(str(band_files["run"]), "--data", str(band_files["test"]), "--out", str(tmp_path)))


def test_report_says_whether_the_background_is_the_training_data(band_files, tmp_path):
    for data, expected in (("train", True), ("test", False)):
        out = tmp_path / data
        run_explain(_args(str(band_files["run"]), "--data", str(band_files[data]), "--out", str(out),
                          "--background", "10", "--max-spectra", "6"))
        assert json.loads((out / "regions.json").read_text())["background_is_training_data"] is expected


# ---------------------------------------------------------------------------------------------- wiring


def test_cli_modules_import_nothing_heavy():
    import subprocess

    code = (
        "import sys, trainer.explain, trainer.embed, trainer.plots; "
        "print(sorted(m for m in ('torch', 'shap', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_composition_root_runs_explain_and_reports_a_missing_extra(band_files, tmp_path, monkeypatch, capsys):
    from ramanedge.cli import main

    argv = ["explain", str(band_files["run"]), "--data", str(band_files["test"]), "--out", str(tmp_path / "a"),
            "--background", "10", "--max-spectra", "6", "--top", "3"]
    assert main(argv) == 0
    assert (tmp_path / "a" / "regions.md").is_file()
    assert main([*argv[:-1], "0"]) == 2  # --top 0: a clear error, not a traceback
    assert "--top must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "shap", None)
    assert main(argv) == 3
    assert "[train]" in capsys.readouterr().err


@pytest.mark.data
def test_real_data_outside_the_run_range_or_classes_is_refused(data_dir, tmp_path):
    from spectral_core.preprocess import AxisSpec, PreprocessConfig
    from trainer.checkpoint import RunInfo, save_run
    from trainer.model import RamanNet, RamanNetConfig

    path = data_dir / "covid19-serum-yin" / "dataset.npz"
    ds = read_dataset(path)

    def run_for(start, stop, classes):
        pre = PreprocessConfig(target_axis=AxisSpec(start=start, stop=stop, points=300))
        cfg = RamanNetConfig(input_length=300, n_classes=len(classes), n2=8, embedding_dim=4)
        d = tmp_path / f"run{start:g}-{len(classes)}"
        save_run(d, RamanNet(cfg).eval(), RunInfo(model=cfg, preprocess=pre, classes=classes,
                                                 axis=pre.target_axis.values().tolist()))
        return load_run(d)[1]

    # The run's own range and classes: accepted, labels kept.
    data = load_for_run(path, run_for(600.0, 1800.0, list(ds.classes)))
    assert data.X.shape == (ds.n_spectra, 300)
    np.testing.assert_array_equal(data.y, ds.y)
    # A run on 300-1800 cm^-1: the serum spectra start at 400 cm^-1, so they cannot be put on its axis.
    with pytest.raises(PreprocessError, match="covid19-serum-yin"):
        load_for_run(path, run_for(300.0, 1800.0, list(ds.classes)))
    with pytest.raises(ContractError, match="classes"):
        load_for_run(path, run_for(600.0, 1800.0, ["COVID-19", "Healthy", "Influenza"]))


def test_window_attributions_agree_with_permutation_shapley_over_windows(explained):
    """DeepSHAP linearises the nonlinear layers; a model-agnostic Shapley estimate of the same game
    (shap.PermutationExplainer over whole windows) must rank the windows the same way."""
    model, _, bg, test, attr = explained
    rows = np.array([0, 1, 2, 3])
    perm = permutation_windows(model, bg, test.X[rows], attr.target[rows], permutations=10)
    own = attr.logits[rows, attr.target[rows]] - attr.expected[attr.target[rows]]
    np.testing.assert_allclose(perm.sum(axis=1), own, rtol=1e-6)  # same game, same total
    agreement = cross_check(attr.windows[rows], perm)
    assert agreement["min_spearman"] > 0.9 and agreement["same_top_window"] == 1.0
    # And the check can fail: windows in a random order disagree.
    shuffled = np.random.default_rng(0).permuted(perm, axis=1)
    assert cross_check(attr.windows[rows], shuffled)["median_spearman"] < 0.6
