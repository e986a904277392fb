"""Reproduce the RamanNet paper's evaluations on the real data sets, RamanNet beside the classical baselines.

For every data set the paper's protocol runs through :func:`trainer.evaluate.evaluate` (the same split
indices, preprocessing and metric code for every model; nothing here re-implements a split or a metric):

- ``covid``: COVID-19 serum (Yin et al.), three binary tasks, repeated random 70/30 hold-out (50 in the paper),
  10% of the training part for validation; accuracy, sensitivity, specificity. Baselines include the original
  study's SVM on ANOVA-selected wavenumbers (``anova-svm``).
- ``melanoma``: melanoma SERS (Erzina et al.), 12 classes, 4-fold CV, one model per functionalisation.
- ``rruff``: RRUFF minerals, 5-fold CV, top-1/5/10, on the classes with at least 5 spectra.
- ``microplastics``: RaMPP, 3-fold CV few-shot check, RamanNet vs a correlation library search (1-NN).

After each task the RamanNet run of the first split is exported to ONNX (:func:`export.export_run`) and
validated against PyTorch on that split's held-out spectra (:func:`export.validate_model`); in quick mode
only after a data set's first task (the COVID-19 tasks are one model shape on one file).

Hyper-parameters are never chosen on test folds: RamanNet uses a fixed config (``trainer/configs/*.toml``,
with the epoch budget stated), the baselines choose theirs on each split's validation part.

Usage::

    .venv/bin/python bench/reproduce.py --quick --out /tmp/repro            # a few minutes, CI (tests/reproduce)
    .venv/bin/python bench/reproduce.py --dataset melanoma --out eval/repro --write-doc
    .venv/bin/python bench/reproduce.py --doc-only --out eval/repro --write-doc   # re-render the doc section

Each task writes ``OUT/<dataset>/<task>/reproduce.json`` (plus the evaluate directory beside it);
``--write-doc`` renders every task found under OUT into the ``## Reproducing the RamanNet paper`` section of
docs/results.md (other sections are left untouched).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectral_core.io import read_dataset  # noqa: E402
from spectral_core.spectrum import SpectralDataset  # noqa: E402
from trainer.train import TrainConfig  # noqa: E402

logger = logging.getLogger("reproduce")

DOC = ROOT / "docs" / "results.md"
SECTION = "## Reproducing the RamanNet paper"
CONFIGS = ROOT / "trainer" / "configs"
RESULT_JSON = "reproduce.json"


@dataclass(frozen=True)
class Task:
    """One evaluation: a data file, optionally a class subset (in this order: the last is the positive class)."""

    name: str
    file: str
    classes: tuple[str, ...] | None = None
    title: str = ""


@dataclass(frozen=True)
class DataSpec:
    """A data set of the paper and how it is evaluated in full and quick mode."""

    name: str
    title: str
    protocol: str
    tasks: tuple[Task, ...]
    baselines: tuple[str, ...]
    folds: int = 5
    repeats: int = 50
    min_per_class: int = 0
    full: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    quick_tasks: tuple[str, ...] | None = None
    quick_baselines: tuple[str, ...] | None = None


COVID = "covid19-serum-yin/dataset.npz"
DATASETS: dict[str, DataSpec] = {
    "covid": DataSpec(
        name="covid", title="COVID-19 serum (Yin et al. 2021), binary tasks, repeated 70/30 hold-out",
        protocol="holdout",
        tasks=(
            Task("covid_vs_healthy", COVID, ("Healthy", "COVID-19"), "COVID-19 vs Healthy"),
            Task("suspected_vs_healthy", COVID, ("Healthy", "Suspected"), "Suspected vs Healthy"),
            Task("covid_vs_suspected", COVID, ("Suspected", "COVID-19"), "COVID-19 vs Suspected"),
        ),
        baselines=("anova-svm", "svm", "logreg", "pca-svm", "knn"),
        repeats=50,
        full={"config": "small_data.toml"},
        # one repeat a task in quick mode: three tasks already run the hold-out protocol three times, and the
        # repeat-merging code runs on the k-fold data sets
        quick={"config": "small_data.toml", "repeats": 1, "epochs": 40, "early_stopping_patience": None},
        quick_baselines=("anova-svm", "knn"),
    ),
    "melanoma": DataSpec(
        name="melanoma", title="Melanoma SERS (Erzina et al. 2020), 12 classes, 4-fold CV per functionalisation",
        protocol="kfold", folds=4,
        tasks=(
            Task("nh2", "melanoma-sers-erzina/dataset_nh2.npz", None, "NH2"),
            Task("cooh", "melanoma-sers-erzina/dataset_cooh.npz", None, "COOH"),
            Task("cooh2", "melanoma-sers-erzina/dataset_cooh2.npz", None, "(COOH)2"),
        ),
        baselines=("svm", "pca-svm", "knn", "library"),
        full={"config": "small_data.toml"},
        quick={"config": "small_data.toml", "folds": 2, "epochs": 25, "early_stopping_patience": None},
        quick_tasks=("nh2",),
        quick_baselines=("knn",),
    ),
    "rruff": DataSpec(
        name="rruff", title="RRUFF minerals (RaMin 27-class subset), 5-fold CV, classes with >= 5 spectra",
        protocol="kfold", folds=5, min_per_class=5,
        tasks=(Task("rruff", "rruff-ramin-27class/dataset.npz", None, "RRUFF"),),
        baselines=("svm", "pca-svm", "knn", "library"),
        full={"config": "small_data.toml"},
        quick={"config": "small_data.toml", "folds": 3, "epochs": 40, "early_stopping_patience": None},
        quick_baselines=("library",),
    ),
    "microplastics": DataSpec(
        name="microplastics", title="Microplastics (RaMPP), 11 polymers, few-shot 3-fold CV",
        protocol="kfold", folds=3,
        tasks=(Task("microplastics", "microplastics-rampp/dataset.npz", None, "Microplastics"),),
        baselines=("library", "knn", "svm", "logreg", "pca-svm"),
        full={"config": "small_data.toml"},
        quick={"config": "small_data.toml", "epochs": 60, "early_stopping_patience": None},
        quick_baselines=("library",),
    ),
}

# The paper's figures (Ibtehaz et al. 2022, RamanNet). Only what we could confirm is filled in; everything
# else is reported as "not verified" rather than quoted from memory.
PAPER: dict[str, str] = {
    "nh2": "100 (accuracy, per the issue's summary of the paper)",
    "cooh2": "100 (accuracy, per the issue's summary of the paper)",
    "cooh": "below 100 (exact figure not verified)",
    "rruff": "not comparable: the paper used a raw 20-class RRUFF subset (its figures not verified)",
    "microplastics": "not in the paper",
}


def data_dir() -> Path:
    env = os.environ.get("RAMANEDGE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def load_task(task: Task, spec: DataSpec, data: Path) -> SpectralDataset:
    """Read a task's data; keep its class subset, or the classes with at least ``spec.min_per_class`` spectra."""
    ds = read_dataset(data / task.file)
    if task.classes:
        ds = ds.select_classes(list(task.classes))
    if spec.min_per_class:
        counts = ds.class_counts()
        keep = [c for c in ds.classes if counts[c] >= spec.min_per_class]
        if len(keep) < len(ds.classes):
            dropped = sorted(set(ds.classes) - set(keep))
            logger.info("%s: %d of %d classes kept (>= %d spectra); dropped %s", task.name, len(keep),
                        len(ds.classes), spec.min_per_class, dropped)
            ds = ds.select_classes(keep)
    return ds


def make_config(spec: DataSpec, quick: bool, epochs: int | None, threads: int,
                config: str | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """RamanNet's config: a fixed file plus the stated epoch budget (never chosen on test folds)."""
    opts = dict(spec.quick if quick else spec.full)
    name = opts.pop("config")
    cfg = TrainConfig.from_file(CONFIGS / (config or name))
    over: dict[str, Any] = {"num_threads": threads}
    for k in ("epochs", "early_stopping_patience"):
        if k in opts:
            over[k] = opts.pop(k)
    if epochs is not None:
        over["epochs"] = epochs
        over["early_stopping_patience"] = min(cfg.early_stopping_patience or epochs, max(10, epochs // 4))
    cfg = cfg.with_overrides({k: v for k, v in over.items() if v is not None})
    if "early_stopping_patience" in over and over["early_stopping_patience"] is None:
        cfg = cfg.model_copy(update={"early_stopping_patience": None})
    return cfg, opts


def _export_and_validate(ev_dir: Path, doc: dict[str, Any], ds: SpectralDataset) -> dict[str, Any]:
    """Export the first split's RamanNet run and validate the ONNX model on that split's test spectra."""
    from export import export_run, validate_model

    split = json.loads((ev_dir / "splits.json").read_text())["splits"][0]
    run = ev_dir / "ramannet" / split["name"]
    test = ds.subset(np.asarray(split["test"], dtype=np.int64))
    ref = ds.subset(np.asarray(split["train"][:8], dtype=np.int64))
    onnx_path = export_run(run, ev_dir / "ramannet.onnx", reference=ref)
    report = validate_model(onnx_path, run, test)
    t, logits = report.task, report.outputs.get("logits")
    return {
        "split": split["name"], "passed": report.passed, "reason": report.reason, "n": t.n,
        "accuracy_torch": t.accuracy_torch, "accuracy_onnx": t.accuracy_onnx,
        "argmax_agreement": t.argmax_agreement,
        "logits_max_abs": logits.abs.max if logits is not None and logits.abs is not None else None,
    }


def run_task(spec: DataSpec, task: Task, out: Path, *, quick: bool, epochs: int | None, repeats: int | None,
             folds: int | None, threads: int, models: tuple[str, ...] | None, command: str,
             config: str | None = None, export: bool = True) -> dict[str, Any]:
    """Evaluate RamanNet and the baselines on one task, export + validate, write ``reproduce.json``."""
    from trainer.evaluate import evaluate

    ds = load_task(task, spec, data_dir())
    cfg, opts = make_config(spec, quick, epochs, threads, config)
    n_folds = folds or opts.get("folds", spec.folds)
    n_rep = repeats or opts.get("repeats", spec.repeats)
    base = spec.quick_baselines if quick and spec.quick_baselines else spec.baselines
    chosen = models or ("ramannet", *base)
    ev_dir = out / spec.name / task.name / "evaluate"
    t0 = time.perf_counter()
    merged = evaluate(
        ds, ev_dir, cfg, protocol=spec.protocol, models=chosen, folds=n_folds, repeats=n_rep,
        force=True, log=lambda m: logger.info("%s/%s %s", spec.name, task.name, m),
    )
    onnx = _export_and_validate(ev_dir, merged, ds) if export and "ramannet" in chosen else None
    result = {
        "dataset": spec.name, "task": task.name, "title": task.title, "quick": quick,
        "protocol": merged["params"], "classes": list(ds.classes), "class_counts": ds.class_counts(),
        "spectra": ds.n_spectra, "points": ds.n_points,
        "train_config": {"epochs": cfg.epochs, "early_stopping_patience": cfg.early_stopping_patience,
                         "batch_size": cfg.batch_size,
                         "file": config or (spec.quick if quick else spec.full)["config"]},
        "models": {k: v["summary"] for k, v in merged["models"].items()},
        "onnx": onnx, "seconds": time.perf_counter() - t0, "command": command,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    p = out / spec.name / task.name / RESULT_JSON
    p.write_text(json.dumps(result, indent=1) + "\n")
    return result


# --- the docs/results.md section --------------------------------------------------------------------------

def _pm(v: dict[str, Any] | None) -> str:
    if not v or v.get("mean") is None:
        return "-"
    return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"


def task_table(r: dict[str, Any]) -> str:
    """One markdown table: every model of a task, the paper's figure, wall time; the ONNX check below it."""
    classes = r["classes"]
    binary = len(classes) == 2
    tops = [k for k in (5, 10) if k < len(classes)]
    head = ["model", "accuracy %"]
    if binary:
        head += [f"sensitivity ({classes[1]}) %", f"specificity ({classes[1]}) %"]
    else:
        head += ["macro-F1 %", *[f"top-{k} %" for k in tops]]
    head += ["wall time s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = max((s["accuracy"]["mean"] for s in r["models"].values()), default=None)
    for name, s in r["models"].items():
        acc = _pm(s["accuracy"])
        if best is not None and s["accuracy"]["mean"] == best:
            acc = f"**{acc}**"
        row = ["RamanNet" if name == "ramannet" else name, acc]
        if binary:
            row += [_pm(s["sensitivity"].get(classes[1])), _pm(s["specificity"].get(classes[1]))]
        else:
            row += [_pm(s.get("macro_f1")), *[_pm(s.get(f"top{k}")) for k in tops]]
        row.append(f"{s.get('seconds', float('nan')):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    paper = PAPER.get(r["task"], "not verified")
    lines.append("| paper (RamanNet) | " + paper + " |" + " |" * (len(head) - 2))
    o = r.get("onnx")
    if o:
        lines += ["", f"ONNX (fp32) of split {o['split']}'s RamanNet on its {o['n']} held-out spectra: accuracy "
                  f"{100 * o['accuracy_onnx']:.1f}% vs PyTorch {100 * o['accuracy_torch']:.1f}%, argmax agreement "
                  f"{100 * o['argmax_agreement']:.1f}%, validation {'passed' if o['passed'] else 'FAILED: ' + o['reason']}."]
    return "\n".join(lines) + "\n"


def _protocol_text(r: dict[str, Any]) -> str:
    p = r["protocol"]
    tc = r["train_config"]
    es = tc["early_stopping_patience"]
    what = (f"{p['repeats']} x {100 * (1 - p['test_fraction']):.0f}/{100 * p['test_fraction']:.0f} hold-out"
            if p["protocol"] == "holdout" else f"{p['folds']}-fold stratified CV")
    return (f"{r['spectra']} spectra, {len(r['classes'])} classes, {r['points']} points; {what}, "
            f"{100 * p['val_fraction']:.0f}% of each training part for validation, seed {p['seed']}; RamanNet "
            f"`{tc['file']}` with at most {tc['epochs']} epochs"
            + (f", early stopping {es}" if es else "") + f"; total wall time {r['seconds']:.0f} s.")


def render_section(out: Path, header: str) -> str:
    """The doc section from every ``reproduce.json`` under ``out`` (full-mode runs only)."""
    parts = [SECTION, "", header.strip(), ""]
    for name, spec in DATASETS.items():
        results = []
        for task in spec.tasks:
            p = out / name / task.name / RESULT_JSON
            if p.is_file():
                r = json.loads(p.read_text())
                if not r.get("quick"):
                    results.append(r)
        parts += [f"### {spec.title}", ""]
        if not results:
            parts += ["Not run in this session.", ""]
            continue
        for r in results:
            if len(spec.tasks) > 1:
                parts += [f"#### {r['title']}", ""]
            parts += [_protocol_text(r), "", "```", portable_command(r["command"]), "```", "", task_table(r)]
    return "\n".join(parts).rstrip() + "\n"


def portable_command(command: str) -> str:
    """``command`` as the doc shows it: an absolute ``--out`` folder (one machine's path) becomes ``eval/NAME``."""
    return re.sub(r"(--out\s+)(/\S*/)?([^/\s]+)", lambda m: f"{m.group(1)}{'eval/' if m.group(2) else ''}{m.group(3)}",
                  command)


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace (or append) the section in ``doc``, leaving the other sections untouched."""
    old = doc.read_text() if doc.is_file() else "# Results\n"
    start = old.find("\n" + SECTION + "\n")
    if start < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION) + 2)
        new = old[: start + 1] + text + ("\n" + old[nxt + 1:] if nxt >= 0 else "")
    doc.write_text(new)


NOTES = Path(__file__).with_name("reproduce_notes.md")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dataset", default=",".join(DATASETS), help=f"comma-separated, from {list(DATASETS)}")
    ap.add_argument("--task", help="only these tasks (comma-separated task names, e.g. covid_vs_healthy,nh2)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, folds and epochs (CI)")
    ap.add_argument("--epochs", type=int, help="RamanNet epoch budget (early stopping at a quarter of it)")
    ap.add_argument("--repeats", type=int, help="hold-out repeats (COVID-19)")
    ap.add_argument("--folds", type=int, help="override the protocol's folds")
    ap.add_argument("--models", help="comma-separated models (default: ramannet + the data set's baselines)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", help="RamanNet config file in trainer/configs (default: the data set's)")
    ap.add_argument("--write-doc", action="store_true", help="render OUT into docs/results.md")
    ap.add_argument("--doc-only", action="store_true", help="run nothing; with --write-doc re-render the doc")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--notes", type=Path, default=NOTES, help="markdown put under the section heading")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "trainer.train"):  # per-pass / per-run chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = ".venv/bin/python bench/reproduce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    names = [n.strip() for n in args.dataset.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        ap.error(f"unknown data set(s) {unknown}; choose from {list(DATASETS)}")
    only = {t.strip() for t in args.task.split(",")} if args.task else None
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else None
    summary: list[dict[str, Any]] = []
    if not args.doc_only:
        for n in names:
            spec = DATASETS[n]
            tasks = [t for t in spec.tasks if (only is None or t.name in only)
                     and (not args.quick or spec.quick_tasks is None or t.name in spec.quick_tasks)]
            for i, task in enumerate(tasks):
                r = run_task(spec, task, args.out, quick=args.quick, epochs=args.epochs, repeats=args.repeats,
                             folds=args.folds, threads=args.threads, models=models, command=command,
                             config=args.config, export=not args.quick or i == 0)
                summary.append(r)
                print(f"== {n}/{task.name} ({r['seconds']:.0f} s)")
                print(task_table(r))
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.write_doc:
        header = args.notes.read_text() if args.notes.is_file() else ""
        write_section(render_section(args.out, header), args.doc)
        print(f"wrote {SECTION!r} in {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
