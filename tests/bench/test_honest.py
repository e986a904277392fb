"""`bench/honest.py`: RamanNet and baselines on the same group-aware splits, one row per set in the docs section;
`--quick` on tiny synthetic data only. The real-data groupings (RRUFF specimen, RaMPP variant) are checked
without training."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from spectral_core.io import write_npz
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset

REPO = Path(__file__).resolve().parents[2]


def _honest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_honest", REPO / "bench" / "honest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_honest"] = mod
    spec.loader.exec_module(mod)
    return mod


def _tiny_with_copies(path: Path) -> list[tuple[int, int]]:
    """36 synthetic spectra, 3 classes, 200 points, the first 6 stored again (scaled): the planted pairs."""
    ds = synth_dataset(classes=3, per_class=12, points=200, seed=2)
    X = np.asarray(ds.X, dtype=np.float32)
    write_npz(SpectralDataset(X=np.vstack([X, X[:6] * 2.0]), axis=ds.axis, y=np.r_[ds.y, ds.y[:6]],
                              classes=ds.classes), path)
    return [(i, 36 + i) for i in range(6)]


def test_quick_run_writes_the_side_by_side_row_and_resumes(tmp_path: Path) -> None:
    honest = _honest()
    pairs = _tiny_with_copies(tmp_path / "syn.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## At a glance\n\nkept\n")
    argv = ["--quick", "--set", f"syn={tmp_path / 'syn.npz'}", "--set", f"bad={tmp_path / 'broken.npz'}",
            "--groups", "similar", "--out", str(tmp_path / "out"), "--doc", str(doc), "--ramannet-args", "--lr 0.002", "--contrast"]
    assert honest.main(argv) == 0
    out = tmp_path / "out" / "syn"
    splits = json.loads((out / "eval" / "splits.json").read_text())
    assert splits["grouping"]["grouped"] and splits["grouping"]["groups"] == 36
    for s in splits["splits"]:  # the planted copies never straddle a split
        test = set(s["test"])
        assert all((a in test) == (b in test) for a, b in pairs)
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["models"]) == {"svm", "knn", "library", "ramannet"}  # one splits.json for all
    text = doc.read_text()
    assert text.startswith("# Results\n\n## At a glance\n\nkept\n")  # other sections untouched
    row = next(line for line in text.splitlines() if line.startswith("| syn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    rn = results["models"]["ramannet"]["summary"]["accuracy"]["mean"]
    assert cells[1] == "3" and cells[2] == "similar" and cells[3] == "2" and cells[4] == "42 / 36"
    assert cells[5].startswith(f"{100 * rn:.1f} ± ")
    best = max(("svm", "knn", "library"), key=lambda m: results["models"][m]["summary"]["accuracy"]["mean"])
    assert cells[7].startswith(best + " ")
    b = results["models"][best]["summary"]["accuracy"]["mean"]
    assert cells[9] == f"{100 * (rn - b):+.1f}"
    assert cells[6] != "-" and cells[8] != "-"  # group-level accuracy beside spectrum-level
    assert "- syn: similar: spectra with Pearson r > 0.9999" in text  # the grouping in full below the table
    # --contrast: the same baselines split spectrum by spectrum, in the last column
    plain = json.loads((out / "ungrouped" / "results.json").read_text())
    assert not plain["grouping"]["grouped"] and plain["params"]["folds"] == 2
    best_plain = max(plain["models"], key=lambda m: plain["models"][m]["summary"]["accuracy"]["mean"])
    assert cells[10].startswith(best_plain + " ") and len(cells) == 11
    bad = next(line for line in text.splitlines() if line.startswith("| bad |"))
    assert "failed:" in bad  # a set that cannot be read is a row saying why, not a crash or a gap
    # RamanNet's options go to its own call only, verbatim; the baselines' call is the same without them
    commands = [ln for ln in (out / "evaluate.log").read_text().splitlines() if ln.startswith("$ ")]
    assert len(commands) == 2 and "--lr" not in commands[0] and "--model svm,knn,library" in commands[0]
    assert "--model ramannet" in commands[1] and commands[1].endswith("--lr 0.002")
    # the same command again skips the finished steps: no new evaluate call
    log = (out / "evaluate.log").read_text()
    assert honest.main(argv) == 0
    assert (out / "evaluate.log").read_text() == log
    assert (out / "ungrouped" / "evaluate.log").read_text().count("$ ") == 1
    assert json.loads((out / "eval" / "splits.json").read_text())["key"] == splits["key"]


@pytest.mark.data
def test_rruff_groups_follow_the_specimen(data_dir: Path) -> None:
    ds = _honest()._rruff(data_dir)
    assert ds.groups is not None and ds.y is not None
    assert "RRUFF specimen" in ds.provenance["groups_from"]
    # every class kept has >= 3 specimens; there are fewer groups than spectra (several lasers a specimen)
    for c in range(len(ds.classes)):
        assert np.unique(ds.groups[ds.y == c]).size >= 3
    assert np.unique(ds.groups).size < ds.n_spectra * 0.6


@pytest.mark.data
def test_microplastics_groups_join_a_variant_across_waters(data_dir: Path) -> None:
    ds = _honest()._microplastics(data_dir)
    assert ds.groups is not None and ds.n_spectra == 129
    assert "particle variant" in ds.provenance["groups_from"]
    # 11 references + 64 FW + 54 SW columns; a variant name in both files is one group
    assert np.unique(ds.groups).size < 129 - 40


def test_an_ensemble_run_is_the_ramannet_column_not_a_baseline() -> None:
    honest = _honest()
    assert honest.ramannet_name({"ramannet_args": ["--select", "swa"]}) == "ramannet"
    assert honest.ramannet_name({"ramannet_args": ["--ensemble", "3", "--jobs", "2"]}) == "ramannet-x3"
    assert honest.ramannet_name({"ramannet_args": ["--ensemble=5"]}) == "ramannet-x5"

    def summary(acc: float) -> dict[str, object]:
        return {"summary": {"accuracy": {"mean": acc, "std": 0.0}}}

    state = {"set": "covid", "folds": 5, "classes": 3, "ramannet_args": ["--ensemble", "3"]}
    # an earlier single-model result in the same folder is neither the RamanNet column nor a baseline
    models = {"svm": summary(0.80), "ramannet": summary(0.99), "ramannet-x3": summary(0.85)}
    row, diff = honest.set_row(state, {"models": models})
    assert row[5] == "85.0 ± 0.0" and row[7].startswith("svm 80.0")
    assert diff is not None and abs(diff - 5.0) < 1e-9


def test_repeats_pool_every_split_seed_and_compare_per_seed(tmp_path: Path) -> None:
    honest = _honest()
    _tiny_with_copies(tmp_path / "syn.npz")
    doc = tmp_path / "results.md"
    argv = ["--quick", "--set", f"syn={tmp_path / 'syn.npz'}", "--groups", "similar", "--out", str(tmp_path / "out"),
            "--doc", str(doc), "--repeats", "2", "--first-seed", "3"]
    assert honest.main(argv) == 0
    out = tmp_path / "out" / "syn"
    keys = []
    accs: dict[str, list[float]] = {}
    for seed in (3, 4):
        edir = out / f"eval_seed{seed}"
        splits = json.loads((edir / "splits.json").read_text())
        assert splits["grouping"]["grouped"]
        keys.append(splits["key"])
        results = json.loads((edir / "results.json").read_text())
        assert results["params"]["seed"] == seed  # both calls of the seed ran with --seed
        for m in results["models"]:
            per = json.loads((edir / m / "results.json").read_text())["per_split"]
            accs.setdefault(m, []).extend(s["accuracy"] for s in per)
    assert keys[0] != keys[1]  # each seed is a new partition
    assert not (out / "eval").exists()  # seed 0 not asked for, not run
    pooled = honest.pooled_results(out, json.loads((out / "honest.json").read_text()))
    for m, values in accs.items():
        assert len(values) == 4
        assert pooled["models"][m]["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(values))
        assert pooled["models"][m]["summary"]["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| syn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "2 × 2 seeds"
    rn = pooled["models"]["ramannet"]["summary"]
    best = max(("svm", "knn", "library"), key=lambda m: pooled["models"][m]["summary"]["accuracy"]["mean"])
    per_seed = [100 * (a - b) for a, b in zip(rn["per_repeat"], pooled["models"][best]["summary"]["per_repeat"],
                                                 strict=True)]
    assert cells[7].startswith(best + " ")
    assert cells[9] == f"{100 * (rn['accuracy']['mean'] - pooled['models'][best]['summary']['accuracy']['mean']):+.1f}" \
        f" (>= in {sum(d >= 0 for d in per_seed)} of 2 seeds)"
    assert f"per split seed (3, 4): {per_seed[0]:+.1f}, {per_seed[1]:+.1f}" in text
    assert "--repeats 2 --first-seed 3" in text
