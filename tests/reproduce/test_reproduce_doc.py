"""The docs/results.md section of bench/reproduce.py: rendered from full-mode results, other sections kept."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_reproduce", REPO / "bench" / "reproduce.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _summary(mean: float) -> dict[str, object]:
    return {"accuracy": {"mean": mean, "std": 0.01}, "sensitivity": {"COVID-19": {"mean": 0.9, "std": 0.02}},
            "specificity": {"COVID-19": {"mean": 0.8, "std": 0.03}}, "seconds": 12.0}


def _result(quick: bool) -> dict[str, object]:
    return {
        "dataset": "covid", "task": "covid_vs_healthy", "title": "COVID-19 vs Healthy", "quick": quick,
        "protocol": {"protocol": "holdout", "repeats": 5, "test_fraction": 0.3, "val_fraction": 0.1, "seed": 0},
        "classes": ["Healthy", "COVID-19"], "spectra": 309, "points": 900,
        "train_config": {"epochs": 300, "early_stopping_patience": 60, "batch_size": 64, "file": "small_data.toml"},
        "models": {"ramannet": _summary(0.95), "anova-svm": _summary(0.9)},
        "onnx": {"split": "repeat1", "n": 93, "accuracy_onnx": 0.96, "accuracy_torch": 0.96,
                 "argmax_agreement": 1.0, "passed": True, "reason": ""},
        "seconds": 100.0, "command": ".venv/bin/python bench/reproduce.py --dataset covid --out X",
    }


def test_section_from_full_results_replaces_only_its_own_section(tmp_path: Path) -> None:
    rep = _module()
    out = tmp_path / "out"
    (out / "covid" / "covid_vs_healthy").mkdir(parents=True)
    (out / "covid" / "covid_vs_healthy" / "reproduce.json").write_text(json.dumps(_result(quick=False)))
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## A\n\na\n\n## Reproducing the RamanNet paper\n\nOLD-CONTENT\n\n## B\n\nb\n")
    rep.write_section(rep.render_section(out, "Notes here."), doc)
    text = doc.read_text()
    assert "OLD-CONTENT" not in text and "## A\n\na" in text and "## B\n\nb" in text
    assert text.count("## Reproducing the RamanNet paper") == 1 and "Notes here." in text
    assert "| RamanNet | **95.0 ± 1.0** | 90.0 ± 2.0 | 80.0 ± 3.0 | 12 |" in text
    assert "| anova-svm | 90.0 ± 1.0 |" in text and "--dataset covid --out X" in text
    assert "5 x 70/30 hold-out" in text and "accuracy 96.0% vs PyTorch 96.0%" in text
    assert "Not run in this session." in text  # the other data sets


def test_quick_results_never_reach_the_doc(tmp_path: Path) -> None:
    rep = _module()
    out = tmp_path / "out"
    (out / "covid" / "covid_vs_healthy").mkdir(parents=True)
    (out / "covid" / "covid_vs_healthy" / "reproduce.json").write_text(json.dumps(_result(quick=True)))
    assert "| RamanNet |" not in rep.render_section(out, "")


def test_doc_commands_carry_no_absolute_path_of_one_machine() -> None:
    rep = _module()
    cmd = ".venv/bin/python bench/reproduce.py --dataset covid --out /tmp/repro_full50 --threads 1"
    assert rep.portable_command(cmd) == ".venv/bin/python bench/reproduce.py --dataset covid --out eval/repro_full50 --threads 1"
    assert rep.portable_command("x --out eval/r") == "x --out eval/r"
