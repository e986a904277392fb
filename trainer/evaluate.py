"""Evaluation protocols of the RamanNet paper, with RamanNet and classical baselines under identical splits.

Protocols:

- ``kfold``: stratified k-fold (stratified group k-fold when the data carry groups);
- ``holdout``: repeated random stratified hold-out (e.g. 50 x 70/30), as for the COVID-19 tasks;
- ``fixed``: train / fine-tune / test files, as for Bacteria-ID (RamanNet is pre-trained on the training
  file, then fine-tuned on the fine-tuning file; the baselines are fitted on both);
- ``openset``: each class in turn is held out of training; the unknown thresholds are calibrated on the
  validation part to the target false-unknown rate; the report says how often known-class test spectra are
  falsely flagged, how often the held-out class's spectra are flagged, and the AUROC of the distance score.

In every protocol the training part of a split keeps a validation part (``TrainConfig.val_fraction``): RamanNet
chooses its checkpoint on it, the baselines their hyper-parameter. The split indices are generated once from
the seed and written to ``DIR/splits.json``; a later run into the same DIR (e.g. another ``--model``) reuses
them, so every model of a comparison table saw exactly the same spectra. Preprocessing is THE preprocessing
(``TrainConfig.preprocess``) for every model.

The baselines' (model, split) fits run side by side in joblib processes (``jobs``, by default the cores not
busy now), one BLAS thread each; RamanNet's splits train afterwards in this process, one at a time.

DIR holds ``splits.json``, ``<model>/results.json`` and ``<model>/confusion.png`` (plus each RamanNet split's
run), and ``results.json`` / ``results.md`` with every model evaluated into it so far.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray

from spectral_core.errors import DataError
from spectral_core.hashing import sha256_json
from spectral_core.preprocess import Preprocessor
from spectral_core.spectrum import SpectralDataset
from trainer.baselines import BASELINES, baseline_split
from trainer.data import MIN_PER_CLASS, check_labelled, holdout_splits, kfold_splits, validation_split
from trainer.leakage import leakage_text, near_identical_pairs, split_leakage
from trainer.metrics import TOP_K, aggregate, classification_metrics, group_accuracy
from trainer.train import RunExistsError, TrainConfig, with_model_axis

__all__ = ["MODELS", "PROTOCOLS", "evaluate", "free_cores", "make_splits", "open_set_evaluation", "open_set_table", "results_table"]

logger = logging.getLogger(__name__)

MODELS = ("ramannet", *BASELINES)
PROTOCOLS = ("kfold", "holdout", "fixed")
SPLITS_JSON = "splits.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

LogFn = Callable[[str], None]
ProgressFn = Callable[[int, int, str], None]


def make_splits(
    ds: SpectralDataset,
    *,
    protocol: str,
    folds: int = 5,
    repeats: int = 50,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    seed: int = 0,
    finetune: SpectralDataset | None = None,
    test: SpectralDataset | None = None,
) -> dict[str, Any]:
    """The split document: protocol, its parameters, the data fingerprints and, per split, index lists.

    Indices refer to ``ds`` (``train``, ``val``, ``test``), except in the fixed protocol where ``test`` refers
    to the test file and ``finetune``/``finetune_val`` to the fine-tuning file.

    Raises:
        DataError: unusable data or a split whose training part lacks a class, before anything is trained.
    """
    check_labelled(ds, what="evaluation data")
    if ds.y is None:
        raise DataError("evaluation data is unlabelled")
    params: dict[str, Any] = {"protocol": protocol, "val_fraction": val_fraction, "seed": seed}
    fingerprints = {"data": ds.fingerprint()}
    if protocol == "kfold":
        params["folds"] = folds
        splits = kfold_splits(ds.y, ds.groups, folds=folds, val_fraction=val_fraction, seed=seed)
    elif protocol == "holdout":
        params.update(repeats=repeats, test_fraction=test_fraction)
        splits = holdout_splits(
            ds.y, ds.groups, repeats=repeats, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed
        )
    elif protocol == "fixed":
        if finetune is None or test is None:
            raise DataError("the fixed protocol needs a fine-tuning file (--finetune) and a test file (--test)")
        for what, other in (("fine-tuning", finetune), ("test", test)):
            if tuple(other.classes) != tuple(ds.classes):
                raise DataError(f"{what} classes {list(other.classes)} differ from the training classes {list(ds.classes)}")
        check_labelled(finetune, what="fine-tuning data")
        if test.y is None or finetune.y is None:
            raise DataError("the test and fine-tuning files must be labelled")
        fingerprints.update(finetune=finetune.fingerprint(), test=test.fingerprint())
        t, v = validation_split(ds.y, ds.groups, val_fraction, seed)
        ft, fv = validation_split(finetune.y, finetune.groups, val_fraction, seed + 1)
        splits = [{
            "name": "fixed", "train": t.tolist(), "val": v.tolist(), "finetune": ft.tolist(),
            "finetune_val": fv.tolist(), "test": list(range(test.n_spectra)),
        }]
    else:
        raise DataError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    for s in splits:
        counts = np.bincount(ds.y[np.asarray(s["train"], dtype=np.int64)], minlength=len(ds.classes))
        if counts.min() < MIN_PER_CLASS:
            c = ds.classes[int(counts.argmin())]
            raise DataError(
                f"split {s['name']}: class {c!r} has {int(counts.min())} training spectra "
                f"(at least {MIN_PER_CLASS} needed); use fewer folds, a smaller test fraction or drop the class"
            )
    doc = {"params": params, "fingerprints": fingerprints, "classes": list(ds.classes), "splits": splits}
    doc["key"] = sha256_json({"params": params, "fingerprints": fingerprints})
    doc["grouping"] = grouping_of(ds)
    return doc


def grouping_of(ds: SpectralDataset) -> dict[str, Any]:
    """How the splits treat repeat acquisitions: by group (how many, and where the groups came from) or not."""
    if ds.groups is None:
        return {"grouped": False, "groups": None, "from": None}
    return {"grouped": True, "groups": int(np.unique(ds.groups).size),
            "from": str(ds.provenance.get("groups_from", "the data's groups"))}


def grouping_text(grouping: dict[str, Any] | None) -> str:
    """One sentence for tables and logs: how the data were split."""
    if not grouping or not grouping.get("grouped"):
        return ("split spectrum by spectrum (no groups): repeat acquisitions of one sample may sit on both sides "
                "of a split, so these numbers can be optimistic")
    return f"split by group: {grouping['groups']} groups ({grouping['from']}), never divided between parts"


def _load_or_write_splits(out: Path, doc: dict[str, Any], force: bool) -> dict[str, Any]:
    """Reuse DIR/splits.json when it was made from the same data and parameters; refuse another unless force."""
    p = out / SPLITS_JSON
    if p.is_file():
        try:
            old = json.loads(p.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("key") == doc["key"] and old.get("splits") == doc["splits"]:
            return dict(old)
        if not force:
            raise RunExistsError(
                f"{out} holds splits of other data or protocol parameters; choose another --out or pass --force"
            )
    out.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1) + "\n")
    if force and (out / RESULTS_JSON).is_file():
        (out / RESULTS_JSON).unlink()
    return doc


def _idx(split: dict[str, Any], key: str) -> NDArray[np.int64]:
    return np.asarray(split.get(key, []), dtype=np.int64)


def _ramannet_split(
    ds: SpectralDataset, X: NDArray[np.float32], split: dict[str, Any], run_dir: Path, cfg: TrainConfig,
    *, finetune: SpectralDataset | None, ensemble: int = 1,
) -> tuple[NDArray[np.float32], dict[str, Any]]:
    """Train (and fine-tune) RamanNet (an ensemble of ``ensemble`` when > 1) on one split; scores of the test part."""
    from trainer.ensemble import load_reference, predict_any, train_ensemble
    from trainer.train import train

    def fit(data: SpectralDataset, tr: NDArray[np.int64], va: NDArray[np.int64], d: Path,
            init: Path | None) -> dict[str, Any]:
        c = cfg if va.size else cfg.with_overrides({"val_fraction": 0.0})
        v = data.subset(va) if va.size else None
        if ensemble > 1:
            return dict(train_ensemble(data.subset(tr), d, c, ensemble, force=True, val=v, init_from=init).metrics)
        info = train(data.subset(tr), d, c, force=True, val=v, init_from=init)
        return dict(info.metrics)

    info = fit(ds, _idx(split, "train"), _idx(split, "val"), run_dir, None)
    if finetune is not None:
        info = fit(finetune, _idx(split, "finetune"), _idx(split, "finetune_val"), run_dir / "finetuned", run_dir)
        run_dir = run_dir / "finetuned"
    model, _ = load_reference(run_dir)
    logits, _ = predict_any(model, X)
    return logits, {"best_epoch": info["best_epoch"], "val_accuracy": info["val_accuracy"]}


def free_cores() -> int:
    """The CPUs this process may use minus the 1-minute load average (rounded), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(n, round(n - busy)))


def _write_model(out: Path, name: str, per_split: list[dict[str, Any]], *, classes: list[str], protocol: str,
                 say: LogFn) -> dict[str, Any]:
    """DIR/<model>/results.json, confusion.json and confusion.png once every split of the model is done."""
    summary = aggregate(per_split, classes)
    summary["seconds"] = float(sum(m["seconds"] for m in per_split))
    result = {"model": name, "summary": summary, "per_split": per_split}
    mdir = out / name
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / RESULTS_JSON).write_text(json.dumps(result, indent=1) + "\n")
    (mdir / "confusion.json").write_text(json.dumps({"classes": classes, "confusion": summary["confusion"]}) + "\n")
    from trainer.plots import plot_confusion

    plot_confusion(np.asarray(summary["confusion"]), classes, mdir / "confusion.png",
                   title=f"{name}, {protocol}, summed over {len(per_split)} split(s)")
    acc = summary["accuracy"]
    say(f"{name}: accuracy {acc['mean']:.4f} +- {acc['std']:.4f} over {len(per_split)} split(s)")
    return summary


def evaluate(
    ds: SpectralDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    protocol: str = "kfold",
    models: Sequence[str] = ("ramannet",),
    folds: int = 5,
    repeats: int = 50,
    test_fraction: float = 0.3,
    finetune: SpectralDataset | None = None,
    test: SpectralDataset | None = None,
    force: bool = False,
    log: LogFn | None = None,
    progress: ProgressFn | None = None,
    jobs: int | None = None,
    ensemble: int = 1,
) -> dict[str, Any]:
    """Evaluate ``models`` under one protocol; returns the merged results document (also DIR/results.json).

    With ``ensemble`` K > 1, "ramannet" is an ensemble of K (``trainer.ensemble``), reported as "ramannet-xK"
    beside a single RamanNet evaluated into the same DIR (same splits).

    The baselines' (model, split) fits run in ``jobs`` processes (default: :func:`free_cores`); their results
    are those of a serial run. ``progress(done, total, line)`` is called once with ``done == 0`` before the first
    fit, then after each (model, split), with a line that describes it (without ``progress``, that line goes to ``log``); ``log`` also gets each model's summary.

    Raises:
        DataError: unknown model, unusable data or splits (before any training).
        RunExistsError: DIR holds splits made differently, and ``force`` is false.
    """
    cfg = config or TrainConfig()
    say = log or (lambda _msg: None)
    models = list(dict.fromkeys(models))  # a model named twice is evaluated once
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise DataError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    rn = "ramannet" if ensemble <= 1 else f"ramannet-x{ensemble}"
    models = [rn if m == "ramannet" else m for m in models]
    out = Path(out_dir)
    doc = make_splits(
        ds, protocol=protocol, folds=folds, repeats=repeats, test_fraction=test_fraction,
        val_fraction=cfg.val_fraction, seed=cfg.seed, finetune=finetune, test=test,
    )
    doc = _load_or_write_splits(out, doc, force)
    cfg = with_model_axis(cfg, [ds, finetune, test])  # one model axis for every split and every model
    pre = Preprocessor(cfg.preprocess)
    X = pre.transform(ds.X, ds.axis)
    y = ds.y if ds.y is not None else np.zeros(0, np.int64)
    X_ft = pre.transform(finetune.X, finetune.axis) if finetune is not None else None
    X_te = pre.transform(test.X, test.axis) if test is not None else None
    classes = list(ds.classes)
    merged = _read_results(out)
    splits = doc["splits"]
    if protocol == "fixed" and (X_te is None or test is None or test.y is None or X_ft is None or finetune is None):
        raise DataError("the fixed protocol needs fine-tuning and test data")

    leakage = _split_leakage(X, splits, X_ft=X_ft, X_te=X_te, protocol=protocol, groups=ds.groups, seed=cfg.seed)
    warning = leakage_text(leakage)
    if warning:
        logger.warning("%s", warning)

    def test_part(s: dict[str, Any]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if protocol == "fixed" and X_te is not None and test is not None and test.y is not None:
            return X_te, test.y
        return X[_idx(s, "test")], y[_idx(s, "test")]

    def baseline_task(name: str, i: int) -> Any:
        s = splits[i]
        tr, va = _idx(s, "train"), _idx(s, "val")
        X_tr, y_tr, X_va, y_va = X[tr], y[tr], X[va], y[va]
        if protocol == "fixed" and X_ft is not None and finetune is not None and finetune.y is not None:
            ft, fv = _idx(s, "finetune"), _idx(s, "finetune_val")
            X_tr, y_tr = np.concatenate([X_tr, X_ft[ft]]), np.concatenate([y_tr, finetune.y[ft]])
            X_va, y_va = X_ft[fv], finetune.y[fv]
        X_test, y_test = test_part(s)
        groups_test = ds.groups[_idx(s, "test")] if ds.groups is not None and protocol != "fixed" else None
        return delayed(baseline_split)(name, i, s["name"], X_tr=X_tr, y_tr=y_tr, X_va=X_va, y_va=y_va,
                                        X_test=X_test, y_test=y_test, classes=classes, groups_test=groups_test)

    total = len(models) * len(splits)
    results: dict[str, list[dict[str, Any] | None]] = {name: [None] * len(splits) for name in models}
    summaries: dict[str, dict[str, Any]] = {}
    done = 0

    def record(name: str, i: int, m: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        results[name][i] = m
        line = (f"{name} {m['split']}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
                f"({m['seconds']:.1f} s)")
        if progress is not None:
            progress(done, total, line)
        else:
            say(line)
        per_split = results[name]
        if all(r is not None for r in per_split):
            summaries[name] = _write_model(out, name, [r for r in per_split if r is not None], classes=classes,
                                           protocol=protocol, say=say)

    # The baselines of every split run side by side (joblib processes, one BLAS thread each); RamanNet trains
    # in this process afterwards, one split at a time, with the torch threads its configuration asks for.
    if progress is not None:
        progress(0, total, f"{len(models)} model(s) x {len(splits)} split(s)")  # a bar shows from the start
    pairs = [(name, i) for name in models if name != rn for i in range(len(splits))]
    n_jobs = max(1, min(jobs if jobs is not None else free_cores(), len(pairs) or 1))
    if pairs:
        logger.info("%d baseline fits on %d process(es)", len(pairs), n_jobs)
        # A generator: joblib slices each split's arrays only when it dispatches the task (a few ahead of the
        # workers), so 50 hold-out repeats of a large set never sit in memory at once.
        tasks = (baseline_task(name, i) for name, i in pairs)
        for name, i, m in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks):
            record(name, i, m)
    if rn in models:
        for i, s in enumerate(splits):
            t0 = time.perf_counter()
            X_test, y_test = test_part(s)
            scores, extra = _ramannet_split(
                ds, X_test, s, out / rn / s["name"], cfg,
                finetune=finetune if protocol == "fixed" else None, ensemble=ensemble,
            )
            m = classification_metrics(y_test, scores, classes)
            if ds.groups is not None and protocol != "fixed":
                m["group_accuracy"], m["test_groups"] = group_accuracy(y_test, scores, ds.groups[_idx(s, "test")])
            m.update(split=s["name"], seconds=time.perf_counter() - t0, **extra)
            record(rn, i, m)
    for name in models:
        merged["models"][name] = {"summary": summaries[name]}
    merged.update(params=doc["params"], grouping=doc.get("grouping", grouping_of(ds)), fingerprints=doc["fingerprints"],
                  classes=classes, leakage=leakage,
                  splits_key=doc["key"], train_config=cfg.model_dump(mode="json"))
    merged["data"] = {"source": str(ds.provenance.get("source", "")), "spectra": ds.n_spectra,
                      "points": ds.n_points, "class_counts": ds.class_counts()}
    if ds.provenance.get("skipped_spectra"):  # --bad-spectra skip left these out: the results say so
        merged["data"]["skipped_spectra"] = ds.provenance["skipped_spectra"]
    (out / RESULTS_JSON).write_text(json.dumps(merged, indent=1) + "\n")
    (out / RESULTS_MD).write_text(results_table(merged))
    return merged


def _split_leakage(
    X: NDArray[np.float32], splits: list[dict[str, Any]], *, X_ft: NDArray[np.float32] | None,
    X_te: NDArray[np.float32] | None, protocol: str, groups: NDArray[np.str_] | None, seed: int,
) -> dict[str, Any]:
    """Near-identical preprocessed spectra across each split (:mod:`trainer.leakage`). In the fixed protocol
    the test file is checked against the training and fine-tuning files."""
    if protocol != "fixed" or X_te is None:
        return split_leakage(near_identical_pairs(X, seed=seed), splits, groups)
    parts = [X, *([X_ft] if X_ft is not None else []), X_te]
    n_fit = sum(p.shape[0] for p in parts[:-1])
    both = {"name": "fixed", "train": list(range(n_fit)), "test": list(range(n_fit, n_fit + X_te.shape[0]))}
    return split_leakage(near_identical_pairs(np.concatenate(parts), seed=seed), [both], None)


def _read_results(out: Path) -> dict[str, Any]:
    p = out / RESULTS_JSON
    if p.is_file():
        try:
            old = json.loads(p.read_text())
            if isinstance(old.get("models"), dict):
                return dict(old)
        except (OSError, ValueError):
            logger.warning("%s is unreadable; starting a new results document", p)
    return {"models": {}}


def _pm(v: dict[str, Any] | None) -> str:
    if not v or v.get("mean") is None:
        return "-"
    return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"


def results_table(merged: dict[str, Any]) -> str:
    """A markdown table of every model in a results document (percentages, mean ± std across splits)."""
    p = merged.get("params", {})
    n_classes = len(merged.get("classes", []))
    tops = [k for k in TOP_K if k > 1 and k < n_classes]
    grouped = any("group_accuracy" in r["summary"] for r in merged.get("models", {}).values())
    head = ["model", "accuracy %", *(["group accuracy %"] if grouped else []), "macro-F1 %",
            *[f"top-{k} %" for k in tops]]
    if n_classes == 2:
        head += [f"sens. {merged['classes'][1]} %", f"spec. {merged['classes'][1]} %"]
    lines = [
        f"protocol {p.get('protocol')} ({', '.join(f'{k}={v}' for k, v in p.items() if k != 'protocol')}), "
        f"{merged.get('data', {}).get('spectra')} spectra, {n_classes} classes; {grouping_text(merged.get('grouping'))}",
        *(["", f"**Warning**: {leak}."] if (leak := leakage_text(merged.get("leakage"))) else []),
        *(["", training_text(merged["train_config"])] if "ramannet" in merged.get("models", {})
          and merged.get("train_config") else []),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, r in merged.get("models", {}).items():
        s = r["summary"]
        row = [name, _pm(s.get("accuracy")), *([_pm(s.get("group_accuracy"))] if grouped else []),
               _pm(s.get("macro_f1")), *[_pm(s.get(f"top{k}")) for k in tops]]
        if n_classes == 2:
            pos = merged["classes"][1]
            row += [_pm(s["sensitivity"].get(pos)), _pm(s["specificity"].get(pos))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def training_text(train_config: dict[str, Any]) -> str:
    """One line for results.md: how RamanNet chose its weights and whether its batches were augmented."""
    from trainer.augment import AugmentConfig
    from trainer.selection import SelectionConfig

    sel = SelectionConfig.model_validate(train_config.get("selection", {})).describe()
    aug = AugmentConfig.model_validate(train_config.get("augment", {})).describe()
    return f"RamanNet: model selection {sel}; augmentation {aug}."


def open_set_evaluation(
    ds: SpectralDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    unknown_classes: Sequence[str] | None = None,
    test_fraction: float = 0.3,
    force: bool = False,
    log: LogFn | None = None,
) -> dict[str, Any]:
    """Hold each class of ``unknown_classes`` (default: all) out of training in turn and measure open-set flags.

    For each held-out class: the known classes are split (by group when the data carry groups, else stratified)
    into training, validation and test parts; RamanNet is trained on the training part, its unknown thresholds
    calibrated on the validation part to ``config.unknown_rate`` (the test part is never used to fit anything);
    then

    - ``known_false_unknown``: the fraction of known-class test spectra flagged unknown (the rate the thresholds
      aim at; lower is better), and ``known_false_unknown_correct`` among the correctly classified ones;
    - ``unknown_flagged``: the fraction of the held-out class's spectra flagged unknown (higher is better);
    - ``known_accuracy``: accuracy on the known test spectra (flagged ones counted as wrong);
    - ``auroc``: how well the distance to the predicted class's centroid separates the held-out class from the
      known test spectra, whatever the threshold (0.5: not at all, 1: perfectly).

    Returns the document also written to ``DIR/openset.json``; ``DIR/results.json`` and ``DIR/results.md``
    hold the same numbers with how the data were split.
    """
    from sklearn.metrics import roc_auc_score

    from spectral_core.openset import own_distances
    from trainer.checkpoint import load_run
    from trainer.openset import flag_unknown
    from trainer.train import predict, train

    cfg = config or TrainConfig()
    say = log or (lambda _msg: None)
    check_labelled(ds, what="evaluation data")
    if ds.y is None:
        raise DataError("evaluation data is unlabelled")
    names = list(unknown_classes) if unknown_classes else list(ds.classes)
    missing = [n for n in names if n not in ds.classes]
    if missing:
        raise DataError(f"unknown class(es) {missing}; the data has {list(ds.classes)}")
    if len(ds.classes) < 3:
        raise DataError("open-set evaluation needs at least 3 classes (2 known + 1 held out)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunExistsError(f"{out} is not empty; choose another --out or pass --force")
    cfg = with_model_axis(cfg, [ds])  # one model axis for every held-out class
    pre = Preprocessor(cfg.preprocess)
    rows: list[dict[str, Any]] = []
    for held in names:
        known = [c for c in ds.classes if c != held]
        kds = ds.select_classes(known)
        if kds.y is None:
            raise DataError("evaluation data is unlabelled")
        (split,) = holdout_splits(kds.y, kds.groups, repeats=1, test_fraction=test_fraction,
                                  val_fraction=cfg.val_fraction, seed=cfg.seed)
        tr, va, te = _idx(split, "train"), _idx(split, "val"), _idx(split, "test")
        run = out / f"without_{held}"
        train(kds.subset(tr), run, cfg, force=True, val=kds.subset(va) if va.size else None)
        model, info = load_run(run)
        if info.open_set is None:
            raise DataError(f"{run}: the run carries no open-set thresholds")
        os_ = info.open_set
        X_known = pre.transform(kds.X[te], kds.axis)
        X_unk = pre.transform(ds.X[ds.y == ds.classes.index(held)], ds.axis)
        lk, ek = predict(model, X_known)
        lu, eu = predict(model, X_unk)
        pk, pu = lk.argmax(1), lu.argmax(1)
        flag_k = flag_unknown(ek, pk, os_)
        flag_u = flag_unknown(eu, pu, os_)
        right = pk == kds.y[te]
        correct = right & ~flag_k
        # Threshold-free view: how well the distance to the predicted class's centroid separates the two.
        dk, du = own_distances(ek, pk, os_), own_distances(eu, pu, os_)
        auroc = float(roc_auc_score(np.r_[np.zeros(dk.size), np.ones(du.size)], np.r_[dk, du]))
        # The same run scored with the thresholds before calibration (the classes' training-distance quantile)
        before = os_.model_copy(update={"thresholds": os_.scales}) if os_.scales is not None else None
        row = {
            "held_out": held,
            "unknown_spectra": int(flag_u.size),
            "unknown_flagged": float(flag_u.mean()),
            "known_test_spectra": int(flag_k.size),
            "known_false_unknown": float(flag_k.mean()),
            "known_false_unknown_correct": float(flag_k[right].mean()) if right.any() else None,
            "known_false_unknown_uncalibrated": None if before is None else float(flag_unknown(ek, pk, before).mean()),
            "unknown_flagged_uncalibrated": None if before is None else float(flag_unknown(eu, pu, before).mean()),
            "known_accuracy": float(correct.mean()),
            "known_accuracy_closed_set": float(right.mean()),
            "auroc": auroc,
            "train_spectra": int(tr.size),
            "calibration_spectra": os_.calibration_spectra,
            "pooled_rule_classes": (os_.threshold_rules or []).count("pooled"),
        }
        rows.append(row)
        say(f"open set without {held}: {row['known_false_unknown']:.3f} of {flag_k.size} known test spectra "
            f"falsely flagged (target {cfg.unknown_rate:g}), {row['unknown_flagged']:.3f} of {flag_u.size} "
            f"{held} spectra flagged, AUROC {auroc:.3f}")
    keys = ("known_false_unknown", "known_false_unknown_correct", "unknown_flagged", "known_accuracy",
            "known_accuracy_closed_set", "auroc", "known_false_unknown_uncalibrated", "unknown_flagged_uncalibrated")
    summary: dict[str, Any] = {}
    for k in keys:
        vals = [r[k] for r in rows if r[k] is not None]
        summary[k] = float(np.mean(vals)) if vals else None
    # Pooled over every held-out class's run: all known test spectra counted once per run.
    n_known = sum(r["known_test_spectra"] for r in rows)
    summary["known_false_unknown_pooled"] = (
        float(sum(r["known_false_unknown"] * r["known_test_spectra"] for r in rows) / n_known) if n_known else None)
    params = {"protocol": "openset", "test_fraction": test_fraction, "val_fraction": cfg.val_fraction,
              "seed": cfg.seed, "unknown_rate": cfg.unknown_rate, "held_out": names}
    grouping = grouping_of(ds)
    doc = {"params": params, "grouping": grouping,
           "split": ("per held-out class: one hold-out split of the known classes into training, validation "
                     "(threshold calibration) and test parts; " + grouping_text(grouping)),
           "unknown_rate": cfg.unknown_rate, "quantile": cfg.open_set_quantile, "margin": cfg.open_set_margin,
           "summary": summary, "per_class": rows, "train_config": cfg.model_dump(mode="json"),
           "data": {"source": str(ds.provenance.get("source", "")), "spectra": ds.n_spectra,
                    "points": ds.n_points, "class_counts": ds.class_counts()},
           "classes": list(ds.classes)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "openset.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / RESULTS_JSON).write_text(json.dumps(doc, indent=1) + "\n")
    (out / RESULTS_MD).write_text(open_set_table(doc))
    return doc


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def open_set_table(doc: dict[str, Any]) -> str:
    """Markdown for an open-set document: per held-out class, then the mean, percentages (AUROC as is)."""
    p = doc["params"]
    head = ["held out", "known test spectra", "false unknown %", "false unknown, correct %", "unknown flagged %",
            "AUROC", "known acc. %", "calibration spectra", "before calibration: false unknown % / flagged %"]
    lines = [
        f"protocol openset (target false-unknown rate {p['unknown_rate']:g}, test_fraction={p['test_fraction']}, "
        f"val_fraction={p['val_fraction']}, seed={p['seed']}), {doc['data']['spectra']} spectra, "
        f"{len(doc['classes'])} classes; {doc['split']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in doc["per_class"]:
        lines.append("| " + " | ".join([
            str(r["held_out"]), str(r["known_test_spectra"]), _pct(r["known_false_unknown"]),
            _pct(r["known_false_unknown_correct"]), _pct(r["unknown_flagged"]), f"{r['auroc']:.3f}",
            _pct(r["known_accuracy"]), str(r["calibration_spectra"]),
            f"{_pct(r['known_false_unknown_uncalibrated'])} / {_pct(r['unknown_flagged_uncalibrated'])}",
        ]) + " |")
    s = doc["summary"]
    lines.append("| " + " | ".join([
        "mean", "", _pct(s["known_false_unknown"]), _pct(s["known_false_unknown_correct"]),
        _pct(s["unknown_flagged"]), "-" if s["auroc"] is None else f"{s['auroc']:.3f}", _pct(s["known_accuracy"]), "",
        f"{_pct(s['known_false_unknown_uncalibrated'])} / {_pct(s['unknown_flagged_uncalibrated'])}",
    ]) + " |")
    return "\n".join(lines) + "\n"
