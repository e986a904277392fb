"""The honest side-by-side: RamanNet and every classical baseline on identical group-aware splits, on every
shared data set, written to the ``## Honest comparison (group-aware splits)`` section of docs/results.md.

Each set is evaluated with ``ramanedge evaluate`` (a subprocess, so RamanNet options that other parts of the
project add are passed through verbatim with ``--ramannet-args``), k-fold, grouped by the best grouping its
files allow (stated in the table):

- ``melanoma_nh2`` / ``melanoma_cooh`` / ``melanoma_cooh2``: no sample id in the files (SOURCE.md), so copies
  of one spectrum are joined (``similar``, Pearson r > 0.9999); 4 folds, as in the paper.
- ``covid``: repeat acquisitions of 177 serum samples without a sample id (SOURCE.md), written sample by
  sample (for 63% of the spectra the most similar other one is the row before or after): consecutive rows
  with r > 0.99 and the same label are one group (``adjacent``), plus copies: 166 groups for 177 samples, so
  on average a group is a little larger than a sample, but a sample whose repeats correlate below 0.99 is
  still cut in two; 3 classes, 5 folds.
- ``rruff``: the RRUFF specimen id (one specimen measured with several lasers is one group). The ids are in
  ``file_liste_excellent.xlsx``, not aligned with ``obs.npy`` row by row; the per-mineral counts of the list
  match the labels exactly and, taken in list order, every bit-identical pair of rows maps to one specimen
  (17 of the 19 are one file under two mineral names, 2 one diamond at two lasers; checked at each run), so
  the i-th row of a mineral is its i-th file of the list. Classes with at least 3 specimens; 3 folds.
- ``microplastics``: the particle variant (``PS V1``) of the RaMPP tables, one group across the fresh-water
  and sea-water files, each pristine reference on its own, plus copies; 3 folds.

The baselines run first (one ``evaluate``), RamanNet second into the same directory, so both use the same
``splits.json``. ``--common-args`` go to both calls (e.g. preprocessing), ``--ramannet-args`` to RamanNet's
only (not ``--seed`` or ``--val-fraction``: they make other splits, which evaluate refuses to mix).
``--contrast`` also runs the baselines split spectrum by spectrum (groups dropped), a last column that shows
how optimistic an ungrouped split is. Sets run one after the other; each writes ``OUT/<set>/`` (``data.npz`` with its groups, ``eval/``,
``honest.json``) and a finished step is not repeated when the same command is run again. A set that fails is
recorded (``honest.json`` and a row of the table saying why) and the next one runs.

Usage::

    .venv/bin/python bench/honest.py --out runs/honest --contrast           # every set, data-size defaults
    .venv/bin/python bench/honest.py --out runs/honest_swa --ramannet-args "--select swa"
    .venv/bin/python bench/honest.py --out runs/honest --doc-only           # re-render the section
    .venv/bin/python bench/honest.py --quick --set syn=FILE.npz --groups similar --out /tmp/h --doc /tmp/r.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._docs import cpu_model, write_section  # noqa: E402
from spectral_core.errors import DataError  # noqa: E402
from spectral_core.io import read_dataset, write_npz  # noqa: E402
from spectral_core.spectrum import SpectralDataset  # noqa: E402
from trainer.grouping import apply_derived_grouping, parse_derived_grouping  # noqa: E402

logger = logging.getLogger("honest")

DOC = ROOT / "docs" / "results.md"
SECTION = "## Honest comparison (group-aware splits)"
SET_JSON = "honest.json"
BASELINES = ("svm", "logreg", "pca-svm", "knn", "anova-svm", "library")
QUICK_BASELINES = ("svm", "knn", "library")
QUICK_RAMANNET = ("--epochs", "3", "--early-stopping", "3", "--threads", "1")
#: RRUFF: classes kept need this many specimens (groups), so that each of 3 folds can test one
MIN_GROUPS_PER_CLASS = 3


@dataclass(frozen=True)
class SetSpec:
    """One data set of the comparison: how to read it with its best grouping, and its fold count."""

    name: str
    title: str
    folds: int
    load: Callable[[Path], SpectralDataset]
    grouping: str  # a short label for the table; the full description comes from the data's provenance


def _shared_data() -> Path:
    env = os.environ.get("RAMANEDGE_DATA")  # as the tests' fixtures
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _derived(ds: SpectralDataset, *steps: str) -> SpectralDataset:
    for step in steps:
        parsed = parse_derived_grouping(step)
        if parsed is None:
            raise DataError(f"not a derived grouping: {step!r}")
        ds = apply_derived_grouping(ds, *parsed)
    return ds


def _with_groups(ds: SpectralDataset, groups: list[str], how: str) -> SpectralDataset:
    return SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=np.asarray(groups, dtype=str),
                           provenance={**ds.provenance, "groups_from": how}, meta=ds.meta)


def _melanoma(variant: str) -> Callable[[Path], SpectralDataset]:
    def load(data: Path) -> SpectralDataset:
        return _derived(read_dataset(data / "melanoma-sers-erzina" / f"dataset_{variant}.npz"), "similar")

    return load


def _covid(data: Path) -> SpectralDataset:
    return _derived(read_dataset(data / "covid19-serum-yin" / "dataset.npz"), "adjacent", "similar")


def _xlsx_rows(path: Path, sheet: str) -> list[list[str]]:
    """The cells of one sheet of an .xlsx file as text rows (the standard library's zip and XML only)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
          "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}
    rel_ns = "{http://schemas.openxmlformats.org/package/2006/relationships}"
    with zipfile.ZipFile(path) as z:
        shared = [
            "".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t"))
            for si in ElementTree.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)
        ]
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = {r.get("Id"): r.get("Target") for r in
                ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels")).iter(f"{rel_ns}Relationship")}
        target = next((rels.get(s.get(f"{{{ns['r']}}}id")) for s in book.iter(f"{{{ns['m']}}}sheet")
                       if s.get("name") == sheet), None)
        if target is None:
            raise DataError(f"{path.name}: no sheet {sheet!r}")
        root = ElementTree.fromstring(z.read("xl/" + str(target).lstrip("/").removeprefix("xl/")))
    rows = []
    for row in root.iter(f"{{{ns['m']}}}row"):
        cells: list[str] = []
        for c in row.findall("m:c", ns):
            v = c.find("m:v", ns)
            text = "" if v is None or v.text is None else v.text
            letters = re.match(r"[A-Z]+", c.get("r", "")) if c.get("r") else None
            col = len(cells)
            if letters:  # empty cells are left out of the file: place each cell by its reference (A1, C1...)
                col = 0
                for ch in letters.group(0):
                    col = col * 26 + ord(ch) - ord("A") + 1
                col -= 1
            cells += [""] * (col - len(cells))
            cells.append(shared[int(text)] if c.get("t") == "s" and text else text)
        rows.append(cells)
    return rows


def _rruff(data: Path) -> SpectralDataset:
    folder = data / "rruff-ramin-27class"
    ds = read_dataset(folder / "dataset.npz")
    rows = _xlsx_rows(folder / "file_liste_excellent.xlsx", "liste")
    head = rows[0]
    col = {k: head.index(k) for k in ("mineral", "number", "laserfreq")}
    if ds.y is None:
        raise DataError("the RRUFF file is unlabelled")
    ids = np.empty(ds.n_spectra, dtype=object)
    laser = np.empty(ds.n_spectra, dtype=object)
    for c, mineral in enumerate(ds.classes):
        listed = [r for r in rows[1:] if len(r) > col["laserfreq"] and r[col["mineral"]] == mineral]
        members = np.flatnonzero(ds.y == c)
        if len(listed) != members.size:
            raise DataError(f"RRUFF {mineral}: {members.size} spectra but {len(listed)} files listed: the specimen "
                            "ids cannot be aligned")
        for i, r in zip(members.tolist(), listed, strict=True):
            ids[i], laser[i] = r[col["number"]], r[col["laserfreq"]]
    # the check that the alignment is right: copies of one spectrum must be one specimen at one laser
    from trainer.leakage import near_identical_pairs

    pairs = near_identical_pairs(ds.X)
    bad = [(int(a), int(b)) for a, b in pairs.tolist() if ids[a] != ids[b]]
    if bad:
        raise DataError(f"RRUFF: {len(bad)} identical pair(s) map to different specimens (e.g. rows {bad[0]}): "
                        "the list order does not follow the rows")
    same_laser = sum(laser[a] == laser[b] for a, b in pairs.tolist())
    ds = _with_groups(ds, [str(i) for i in ids], f"RRUFF specimen id ({len(set(ids))} specimens, every laser of a "
                      f"specimen in its group; the list order checked: all {pairs.shape[0]} identical pairs of rows "
                      f"are one specimen, {same_laser} of them at one laser)")
    ds = _derived(ds, "similar")
    n_groups = {c: np.unique(ds.groups[ds.y == i]).size for i, c in enumerate(ds.classes)} if ds.groups is not None \
        else {}
    keep = [c for c in ds.classes if n_groups.get(c, 0) >= MIN_GROUPS_PER_CLASS]
    return ds.select_classes(keep)


def _csv_columns(path: Path) -> tuple[list[str], np.ndarray]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    head = [h.strip() for h in rows[0]]
    keep = [k for k in range(1, len(head)) if head[k]]
    values = np.array([[float(r[k]) for k in keep] for r in rows[1:] if r], dtype=np.float64)
    return [head[k] for k in keep], values.T


def _microplastics(data: Path) -> SpectralDataset:
    folder = data / "microplastics-rampp"
    ds = read_dataset(folder / "dataset.npz")
    names: list[str] = []
    blocks = []
    for fname, kind in (("References.CSV", "reference"), ("Microplasbial MP variants FW.CSV", "variant"),
                        ("Microplasbial MP variants SW.CSV", "variant")):
        cols, values = _csv_columns(folder / fname)
        names += [f"{c} (pristine reference)" if kind == "reference" else re.sub(r"\s+", " ", c) for c in cols]
        blocks.append(values)
    X = np.concatenate(blocks)
    if X.shape != ds.X.shape or not np.allclose(X, ds.X, rtol=0, atol=1e-4):
        raise DataError("RaMPP: the CSV columns (references, FW, SW) do not match dataset.npz row by row")
    ds = _with_groups(ds, names, f"RaMPP particle variant ({len(set(names))} groups: one variant across the FW "
                      "and SW files, each pristine reference alone)")
    return _derived(ds, "similar")


_COPIES = "copies only (similar r > 0.9999)"
SETS: dict[str, SetSpec] = {s.name: s for s in (
    SetSpec("melanoma_nh2", "Melanoma SERS NH2", 4, _melanoma("nh2"), _COPIES),
    SetSpec("melanoma_cooh", "Melanoma SERS COOH", 4, _melanoma("cooh"), _COPIES),
    SetSpec("melanoma_cooh2", "Melanoma SERS (COOH)2", 4, _melanoma("cooh2"), _COPIES),
    SetSpec("covid", "COVID-19 serum", 5, _covid, "runs of repeats (adjacent r > 0.99) + copies"),
    SetSpec("rruff", "RRUFF minerals (>= 3 specimens a class)", 3, _rruff, "RRUFF specimen id + copies"),
    SetSpec("microplastics", "Microplastics (RaMPP)", 3, _microplastics, "RaMPP particle variant + copies"),
)}


def _custom(path: Path, groups: str | None) -> Callable[[Path], SpectralDataset]:
    def load(_data: Path) -> SpectralDataset:
        ds = read_dataset(path)
        return _derived(ds, *([groups] if groups else []))

    return load


def _evaluate(data: Path, out: Path, folds: int, *, models: list[str], extra: list[str], log: Path,
              in_process: bool = False) -> int:
    """``ramanedge evaluate`` on one set, its output appended to ``log``; the exit status. A subprocess by
    default (a crash or a leak of one set stays there); ``in_process`` saves the interpreter start (--quick)."""
    argv = ["evaluate", "--data", str(data), "--out", str(out), "--protocol", "kfold", "--folds", str(folds),
            "--model", ",".join(models), *extra]
    cmd = [sys.executable, "-m", "ramanedge", *argv]
    shown = " ".join(shlex.quote(c) for c in ["ramanedge", *argv])
    logger.info("%s", shown)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {shown}\n")
        f.flush()
        if not in_process:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
        from ramanedge.cli import main as ramanedge_main

        with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                return ramanedge_main(argv)
            except SystemExit as exc:  # argparse's refusal of an option
                return int(exc.code or 0) if isinstance(exc.code, int) else 2


def _commit() -> str:
    """The checkout's commit (short), "unknown" outside git: defaults change, so a table names the code."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _read_json(p: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def eval_dir_name(seed: int) -> str:
    """The evaluation folder of one split seed: ``eval`` for seed 0 (evaluate's default), ``eval_seedS`` else."""
    return "eval" if seed == 0 else f"eval_seed{seed}"


def _step_key(step: str, seed: int) -> str:
    return step if seed == 0 else f"{step}@seed{seed}"


def run_set(spec: SetSpec, out: Path, *, data: Path, folds: int | None, baselines: list[str],
            common: list[str], ramannet: list[str], in_process: bool = False,
            seeds: list[int] | None = None) -> dict[str, Any]:
    """Evaluate one set (baselines, then RamanNet, on the same splits) once per split seed; returns and writes
    its ``honest.json``.

    ``seeds`` (default ``[0]``): each seed is ``evaluate --seed S``, a new partition into folds (and new
    RamanNet initialisations), in ``OUT/<set>/eval`` for seed 0 and ``eval_seedS`` otherwise. A step done
    before with the same models and options is skipped. When the data, their grouping, the folds or the
    common options changed, the set starts again (its old splits and results are replaced)."""
    seeds = list(seeds or [0])
    sdir = out / spec.name
    sdir.mkdir(parents=True, exist_ok=True)
    old = _read_json(sdir / SET_JSON)
    k = folds or spec.folds
    state: dict[str, Any] = {"set": spec.name, "title": spec.title, "label": spec.grouping, "folds": k,
                             "baselines": baselines, "common_args": common, "ramannet_args": ramannet,
                             "seeds": seeds}

    def save() -> None:
        (sdir / SET_JSON).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")

    t0 = time.perf_counter()
    try:
        ds = spec.load(data)
        state.update(grouping=str(ds.provenance.get("groups_from", "none")),
                     groups=None if ds.groups is None else int(np.unique(ds.groups).size),
                     spectra=ds.n_spectra, classes=len(ds.classes), fingerprint=ds.fingerprint())
        same = ("set", "folds", "common_args", "grouping", "groups", "fingerprint")
        fresh = any(old.get(key) != state[key] for key in same)
        state["done"] = {} if fresh else dict(old.get("done", {}))
        write_npz(ds, sdir / "data.npz")
        save()
        log = sdir / "evaluate.log"
        for seed in seeds:
            edir = sdir / eval_dir_name(seed)
            seed_arg = ["--seed", str(seed)] if seed else []
            steps = [("baselines", baselines, common), ("ramannet", ["ramannet"], [*common, *ramannet])]
            for i, (step, models, extra) in enumerate(steps):
                key = _step_key(step, seed)
                done = state["done"].get(key, {})
                if done.get("models") == models and done.get("args") == extra:
                    logger.info("%s: %s done before, skipped", spec.name, key)
                    continue
                force = ["--force"] if fresh and i == 0 and edir.exists() else []  # new splits
                t1 = time.perf_counter()
                rc = _evaluate(sdir / "data.npz", edir, k, models=models, extra=[*extra, *seed_arg, *force],
                               log=log, in_process=in_process)
                if rc != 0:
                    tail = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                            if ln.strip()]
                    raise DataError(f"ramanedge evaluate ({key}) exited with {rc}: {tail[-1][:200] if tail else ''}")
                state["done"][key] = {"models": models, "args": extra, "seconds": round(time.perf_counter() - t1, 1),
                                      "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                                      "commit": _commit()}
                save()
    except Exception as exc:  # one set's failure is recorded, the next set still runs
        logger.exception("%s failed", spec.name)
        state["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    state["seconds"] = round(time.perf_counter() - t0, 1)
    save()
    return state


def run_contrast(spec: SetSpec, out: Path, *, data: Path, folds: int | None, baselines: list[str],
                 common: list[str], in_process: bool = False) -> str | None:
    """The baselines once more on the same spectra split spectrum by spectrum (groups dropped), into
    ``OUT/<set>/ungrouped``: how optimistic an ungrouped split would have been. Skipped when done; returns an
    error text, or None."""
    udir = out / spec.name / "ungrouped"
    results = _read_json(udir / "results.json")
    k = folds or spec.folds
    if set(baselines) <= set(results.get("models", {})) and results.get("params", {}).get("folds") == k:
        return None
    udir.mkdir(parents=True, exist_ok=True)
    try:
        ds = spec.load(data)
        plain = SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=None,
                                provenance={**ds.provenance, "groups_from": "none (the contrast)"}, meta=ds.meta)
        write_npz(plain, udir / "data.npz")
        rc = _evaluate(udir / "data.npz", udir, k, models=baselines, extra=[*common, "--force"],
                       log=udir / "evaluate.log", in_process=in_process)
        return None if rc == 0 else f"ramanedge evaluate (ungrouped baselines) exited with {rc}"
    except Exception as exc:  # recorded; the grouped results stand without the contrast
        logger.exception("%s: the ungrouped contrast failed", spec.name)
        return f"{type(exc).__name__}: {str(exc)[:300]}"


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


def pooled_results(sdir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The set's ``results.json`` for one split seed; for several, the same shape with every model's summary
    pooled over all folds of all seeds (mean ± std, ddof 1, as evaluate's) and ``per_repeat``: its mean
    accuracy per seed, in ``seeds`` order. A model missing from any seed is left out (not a partial mean)."""
    seeds = [int(s) for s in state.get("seeds") or [0]]
    first = _read_json(sdir / eval_dir_name(seeds[0]) / "results.json")
    if len(seeds) == 1:
        return first
    per: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for seed in seeds:
        edir = sdir / eval_dir_name(seed)
        for m in _read_json(edir / "results.json").get("models", {}):
            splits = _read_json(edir / m / "results.json").get("per_split", [])
            if splits:
                per.setdefault(m, {})[seed] = splits
    models: dict[str, Any] = {}
    for m, by_seed in per.items():
        if set(by_seed) != set(seeds):
            continue
        summary: dict[str, Any] = {
            "splits": sum(len(v) for v in by_seed.values()),
            "accuracy": _mean_std([s["accuracy"] for seed in seeds for s in by_seed[seed]]),
            "per_repeat": [float(np.mean([s["accuracy"] for s in by_seed[seed]])) for seed in seeds],
        }
        groups = [s.get("group_accuracy") for seed in seeds for s in by_seed[seed]]
        if all(g is not None for g in groups):
            summary["group_accuracy"] = _mean_std([float(g) for g in groups if g is not None])
        models[m] = {"summary": summary}
    return {**first, "models": models, "seeds": seeds}


def _pm(v: dict[str, Any] | None) -> str:
    if not v or v.get("mean") is None:
        return "-"
    return f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"


def ramannet_name(state: dict[str, Any]) -> str:
    """The model name evaluate reports RamanNet under for this set's options: "ramannet", or "ramannet-xK" for
    ``--ensemble K``."""
    args = [str(a) for a in state.get("ramannet_args", [])]
    k = "1"
    for i, a in enumerate(args):
        if a == "--ensemble" and i + 1 < len(args):
            k = args[i + 1]
        elif a.startswith("--ensemble="):
            k = a.split("=", 1)[1]
    return "ramannet" if k.strip() in ("", "1") else f"ramannet-x{k.strip()}"


def _baselines(models: dict[str, Any]) -> dict[str, Any]:
    """The classical models' summaries: every model but RamanNet (single or ensemble)."""
    return {m: r["summary"] for m, r in models.items() if not m.startswith("ramannet")}


def _best(models: dict[str, Any]) -> str:
    base = _baselines(models)
    if not base:
        return "-"
    best = max(base, key=lambda m: base[m]["accuracy"]["mean"])
    return f"{best} {_pm(base[best].get('accuracy'))}"


def repeat_differences(rn: dict[str, Any] | None, best: dict[str, Any] | None) -> list[float]:
    """RamanNet minus the best baseline, in points, per split seed (empty for a single seed)."""
    a, b = (rn or {}).get("per_repeat") or [], (best or {}).get("per_repeat") or []
    return [100 * (x - y) for x, y in zip(a, b, strict=True)] if len(a) > 1 and len(a) == len(b) else []


def _ahead(rn: dict[str, Any] | None, best: dict[str, Any] | None) -> str:
    d = repeat_differences(rn, best)
    return f" (>= in {sum(x >= 0 for x in d)} of {len(d)} seeds)" if d else ""


def set_row(state: dict[str, Any], results: dict[str, Any],
            ungrouped: dict[str, Any] | None = None) -> tuple[list[str], float | None]:
    """One table row of a set, and RamanNet's lead over the best baseline in points (None when missing);
    with ``ungrouped`` results, a last cell with their best baseline."""
    models = results.get("models", {})
    known = SETS.get(str(state.get("set")))
    title = known.title if known else str(state.get("title", state.get("set", "?")))
    grouping = results.get("grouping")
    n_groups = state.get("groups") if grouping is None else grouping.get("groups") if grouping.get("grouped") else None
    spectra = results.get("data", {}).get("spectra", state.get("spectra"))
    size = f"{spectra} / {n_groups if n_groups is not None else 'ungrouped'}"
    label = state.get("label") or (known.grouping if known else str(state.get("grouping", "-")).split(":")[0])
    seeds = results.get("seeds") or [0]
    folds = str(state.get("folds", "-")) + (f" × {len(seeds)} seeds" if len(seeds) > 1 else "")
    head = [title, str(state.get("classes", "-")), label, folds, size]
    rn_name = ramannet_name(state)
    if state.get("error") and rn_name not in models:
        return [*head, f"failed: {state['error']}", "", "", "", "", *([""] if ungrouped is not None else [])], None
    rn = models.get(rn_name, {}).get("summary")
    base = _baselines(models)
    best = max(base, key=lambda m: base[m]["accuracy"]["mean"]) if base else None
    diff = None
    if rn is not None and best is not None:
        diff = 100 * (rn["accuracy"]["mean"] - base[best]["accuracy"]["mean"])
    row = [
        *head,
        _pm(rn.get("accuracy")) if rn else "not run yet",
        _pm(rn.get("group_accuracy")) if rn else "-",
        f"{best} {_pm(base[best].get('accuracy'))}" if best else "not run yet",
        _pm(base[best].get("group_accuracy")) if best else "-",
        "-" if diff is None else f"{diff:+.1f}" + _ahead(rn, base[best] if best else None),
    ]
    if ungrouped is not None:
        row.append(_best(ungrouped.get("models", {})))
    return row, diff


def render_section(out: Path, command: str, expected: list[str] | None = None) -> str:
    """The docs section for every set found under ``out`` (known sets first, in their order); ``expected``
    sets without any result are listed as not measured."""
    found = [p for p in out.iterdir() if (p / SET_JSON).is_file()] if out.is_dir() else []
    order = {name: i for i, name in enumerate(SETS)}
    found.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    rows, diffs, notes, leaks = [], [], [], []
    n_seeds, seed_sets = 1, set()
    ramannet_args = set()
    steps = [step for p in found for step in _read_json(p / SET_JSON).get("done", {}).values()]
    finished = [str(step["finished"])[:10] for step in steps if step.get("finished")]
    commits = sorted({str(step["commit"]) for step in steps if step.get("commit")})
    contrast = any((p / "ungrouped" / "results.json").is_file() for p in found)
    for sdir in found:
        state = _read_json(sdir / SET_JSON)
        results = pooled_results(sdir, state)
        seeds = [int(x) for x in state.get("seeds") or [0]]
        if len(seeds) > 1:
            n_seeds = max(n_seeds, len(seeds))
            seed_sets.add(",".join(map(str, seeds)))
        row, diff = set_row(state, results, _read_json(sdir / "ungrouped" / "results.json") if contrast else None)
        rows.append("| " + " | ".join(row) + " |")
        diffs.append(diff)
        ramannet_args.add(" ".join(state.get("ramannet_args", [])) or "none")
        rn_dir = sdir / eval_dir_name(seeds[0]) / ramannet_name(state)
        epochs = [str(m.get("best_epoch")) for m in _read_json(rn_dir / "results.json").get("per_split", [])]
        kept = f" RamanNet's kept epochs per fold: {', '.join(epochs)}." if epochs else ""
        if len(seeds) > 1 and epochs:
            kept = kept.replace("per fold", f"per fold (seed {seeds[0]})")
        models = results.get("models", {})
        base = _baselines(models)
        best = max(base, key=lambda m: base[m]["accuracy"]["mean"]) if base else None
        per_seed = repeat_differences(models.get(ramannet_name(state), {}).get("summary"),
                                      base.get(best) if best else None)
        if per_seed:
            kept += (f" RamanNet minus {best} per split seed ({', '.join(map(str, seeds))}): "
                     f"{', '.join(f'{d:+.1f}' for d in per_seed)}; their mean {np.mean(per_seed):+.1f}, "
                     f"standard error {np.std(per_seed, ddof=1) / np.sqrt(len(per_seed)):.1f}.")
        notes.append(textwrap.fill(f"- {row[0]}: {state.get('grouping', '-')}.{kept}", width=115,
                                   subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
        leak = results.get("leakage") or {}
        if leak.get("pairs_across"):
            leaks.append(f"{row[0]}: {leak['distinct_pairs_across']} near-identical pair(s) across splits")
    missing = [n for n in (expected or []) if n not in {p.name for p in found}]
    measured = [d for d in diffs if d is not None]
    wins = sum(d >= 0 for d in measured)
    plus2 = sum(d >= 2 for d in measured)
    def wrap(text: str) -> str:
        return textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False)

    lines = [
        SECTION,
        "",
        wrap(f"Accuracy %, mean ± std over k folds{f' × {n_seeds} split seeds' if seed_sets else ''}, RamanNet "
        "beside every classical baseline (svm, logreg, pca-svm, knn, anova-svm, library search) on the same "
        "`splits.json` per set; a group never straddles a split (training, validation, test). Group accuracy: "
        "each group's prediction is the argmax of its spectra's mean probability. Best baseline: the highest mean "
        "spectrum accuracy. Difference: RamanNet minus best baseline, in points. From `bench/honest.py` (why each "
        "grouping: its docstring; `similar`/`adjacent`: `trainer/grouping.py`)." + (
            f" Split seeds {'; '.join(sorted(seed_sets))}: each seed is a new partition into folds (`evaluate "
            "--seed`) with new RamanNet initialisations, both models on the same splits in every seed; the "
            "difference cell says in how many seeds RamanNet was at or above the best baseline, and the notes "
            "below give the difference per seed." if seed_sets else "")),
        "",
        "```",
        command,
        "```",
        "",
        wrap(f"RamanNet options beyond the data-size defaults: {', '.join(sorted(ramannet_args)) or 'none'}. "
             f"Measured {max(finished) if finished else 'not yet'} on {cpu_model()} ({os.cpu_count()} cores, "
             f"shared with other jobs), code at commit {', '.join(commits) or 'not recorded'}."),
        "",
        "| data set | classes | grouping | folds | spectra / groups | RamanNet | RamanNet, groups | best baseline | "
        "best baseline, groups | difference |" + (" best baseline, split by spectrum |" if contrast else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if contrast else ""),
        *rows,
        "",
        f"RamanNet >= best baseline on {wins} of {len(measured)} sets measured; >= +2 points on {plus2}.",
        *([f"Not measured yet: {', '.join(missing)}."] if missing else []),
        *(["", wrap("Last column (`--contrast`): the same baselines on the same spectra with the same number of folds, split "
                    "spectrum by spectrum (groups dropped), as the tables further down were: how much of their "
                    "accuracy the grouping takes away.")] if contrast else []),
        "",
        wrap("For files of your own without sample ids, `ramanedge train`/`evaluate` take the two derived groupings "
        "used here: `--groups similar[:R]` joins spectra whose Pearson correlation exceeds R (default 0.9999: "
        "copies) into connected components; `--groups adjacent[:R]` joins consecutive rows above R (default "
        "0.99) with the same label, for files written sample by sample. Both merge with the groups the data "
        "carry; the largest group is reported (single linkage chains at low R)."),
        "",
        wrap("Groupings as recorded in each `splits.json`, and the epoch of the checkpoint RamanNet kept in each "
             "fold (with `--select best-loss`, the epoch of the best validation loss; with `swa`, the last epoch of "
             "the fixed schedule whose final quarter was averaged):"),
        "",
        *notes,
    ]
    if leaks:
        lines += ["", "Near-identical spectra still across splits (trainer/leakage.py): " + "; ".join(leaks) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (one folder per set; resumable)")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=FILE",
                    help="an extra data set (any file ramanedge reads); replaces --sets when given")
    ap.add_argument("--groups", help="derived grouping of --set files: similar[:R] or adjacent[:R]")
    ap.add_argument("--data-dir", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--folds", type=int, help="folds for every set (default: per set)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="split seeds per set (each a new partition into folds); pooled in the table")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="the first split seed (seeds FIRST..FIRST+REPEATS-1; 0 is evaluate's default)")
    ap.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated baseline models")
    ap.add_argument("--ramannet-args", default="", help="extra `ramanedge evaluate` options for RamanNet only")
    ap.add_argument("--common-args", default="", help="extra `ramanedge evaluate` options for every model")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 folds, 3 epochs, svm/knn/library, evaluate in this process (tiny data only)")
    ap.add_argument("--contrast", action="store_true",
                    help="also the baselines split spectrum by spectrum (groups dropped), a column of the table")
    ap.add_argument("--contrast-only", action="store_true", help="only that contrast, for sets evaluated before")
    ap.add_argument("--doc", type=Path, default=DOC, help="the results document to update")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave the document alone")
    ap.add_argument("--doc-only", action="store_true", help="only re-render the section from OUT")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    if args.groups is not None and parse_derived_grouping(args.groups) is None:
        ap.error(f"--groups {args.groups!r}: choose similar[:R] or adjacent[:R]")
    if args.set:
        specs = []
        for item in args.set:
            name, eq, path = item.partition("=")
            if not eq or not name or not path:
                ap.error(f"--set takes NAME=FILE, got {item!r}")
            specs.append(SetSpec(name, name, 2 if args.quick else 3, _custom(Path(path), args.groups),
                                 args.groups or "the file's own groups"))
    else:
        unknown = [s for s in args.sets.split(",") if s and s not in SETS]
        if unknown:
            ap.error(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
        specs = [SETS[s] for s in args.sets.split(",") if s]
    if args.repeats < 1 or args.first_seed < 0:
        ap.error("--repeats must be >= 1 and --first-seed >= 0")
    seeds = list(range(args.first_seed, args.first_seed + args.repeats))
    folds = args.folds or (2 if args.quick else None)
    baselines = [m for m in (",".join(QUICK_BASELINES) if args.quick else args.baselines).split(",") if m]
    ramannet = [*(QUICK_RAMANNET if args.quick else ()), *shlex.split(args.ramannet_args)]
    common = shlex.split(args.common_args)
    data = args.data_dir or _shared_data()
    if not args.doc_only:
        for spec in specs:
            if not args.contrast_only:
                state = run_set(spec, out, data=data, folds=folds, baselines=baselines, common=common,
                                ramannet=ramannet, in_process=args.quick, seeds=seeds)
                logger.info("%s: %s", spec.name, state.get("error") or f"done in {state['seconds']} s")
            if args.contrast or args.contrast_only:
                error = run_contrast(spec, out, data=data, folds=folds, baselines=baselines, common=common,
                                     in_process=args.quick)
                logger.info("%s, ungrouped contrast: %s", spec.name, error or "done")
    shown = ["--out", "OUT"] + (["--quick"] if args.quick else []) + (["--contrast"] if args.contrast or args.contrast_only else [])
    if seeds != [0]:
        shown += ["--repeats", str(args.repeats)] + (["--first-seed", str(args.first_seed)] if args.first_seed else [])
    if args.ramannet_args:
        shown += ["--ramannet-args", shlex.quote(args.ramannet_args)]
    if args.common_args:
        shown += ["--common-args", shlex.quote(args.common_args)]
    text = render_section(out, ".venv/bin/python bench/honest.py " + " ".join(shown), [s.name for s in specs])
    print(text)
    if not args.no_write:
        write_section(SECTION, text, doc=args.doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
