"""Fit time and accuracy of the classical baselines: the previous settings vs the current ones, side by side.

For each baseline of trainer.baselines and each data set (melanoma NH2 from ../shared/data, 632 x 2,090, and a
synthetic 600 x 2,000 set), interleaved old / new in one run on the same machine:

- ``grid s``: ``fit_predict_baseline`` on the first split of a stratified 4-fold (the hyper-parameter chosen on
  the split's validation part, the model fitted on its training part), and the test accuracy it reached;
- ``fit s``: one fit of the chosen hyper-parameter on every spectrum of the set (600 x 2,000 for the synthetic
  one);
- a whole ``evaluate`` (stratified 4-fold, every baseline) with ``jobs=1`` and with ``jobs=2`` processes.

"Old" is the code before issue 16: logistic regression on all points, BLAS threads left at their default; "new"
is trainer.baselines as it is (logistic regression on the row-space coordinates, one BLAS thread a fit). The
preprocessing is THE preprocessing (TrainConfig defaults: min-max). Times are wall seconds; on a shared machine
read the ratios, not the absolute numbers.

Writes the "## Baselines" section of docs/benchmarks.md; ``--no-write`` prints it only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _docs import cpu_model, publish  # noqa: E402

from spectral_core.io import read_dataset  # noqa: E402
from spectral_core.preprocess import Preprocessor  # noqa: E402
from spectral_core.spectrum import SpectralDataset  # noqa: E402
from spectral_core.synth import synth_dataset  # noqa: E402
from trainer import baselines  # noqa: E402
from trainer.evaluate import make_splits  # noqa: E402
from trainer.train import TrainConfig  # noqa: E402

SECTION = "## Baselines"
NH2 = Path("melanoma-sers-erzina") / "dataset_nh2.npz"


def _old_logreg(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


@contextlib.contextmanager
def _old_settings(name: str) -> Iterator[None]:
    """The baseline as it was: the old logistic regression factory; no thread limit (see _fit)."""
    saved = baselines.BASELINES[name]
    if name == "logreg":
        baselines.BASELINES[name] = (_old_logreg, saved[1], saved[2])
    try:
        yield
    finally:
        baselines.BASELINES[name] = saved


def _fit(name: str, old: bool, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    if old:
        with _old_settings(name):
            return baselines._fit_predict(name, **kw)
    return baselines.fit_predict_baseline(name, **kw)


def _one_fit(name: str, old: bool, param: float, X: np.ndarray, y: np.ndarray) -> float:
    from threadpoolctl import threadpool_limits

    make = _old_logreg if (old and name == "logreg") else baselines.BASELINES[name][0]
    limit = contextlib.nullcontext() if old else threadpool_limits(limits=1)
    t0 = time.perf_counter()
    with limit:
        make(param).fit(X, y)
    return time.perf_counter() - t0


def measure(title: str, ds: SpectralDataset, names: list[str], say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Old vs new per baseline on one data set, interleaved (old then new for each baseline)."""
    X = Preprocessor(TrainConfig().preprocess).transform(ds.X, ds.axis)
    y = ds.y if ds.y is not None else np.zeros(0, np.int64)
    split = make_splits(ds, protocol="kfold", folds=4, val_fraction=TrainConfig().val_fraction, seed=0)["splits"][0]
    tr, va, te = (np.asarray(split[k], dtype=np.int64) for k in ("train", "val", "test"))
    rows = []
    for name in names:
        row: dict[str, Any] = {"data": title, "baseline": name}
        for old in (True, False):
            tag = "old" if old else "new"
            t0 = time.perf_counter()
            scores, info = _fit(name, old, X_train=X[tr], y_train=y[tr], X_val=X[va], y_val=y[va], X_test=X[te],
                                n_classes=len(ds.classes))
            row[f"{tag}_grid_s"] = time.perf_counter() - t0
            row[f"{tag}_correct"] = int((scores.argmax(1) == y[te]).sum())
            pname = baselines.BASELINES[name][2]
            row[f"{tag}_param"] = info[pname]
            row[f"{tag}_fit_s"] = _one_fit(name, old, float(info[pname]), X, y)
            say(f"{title} {name} {tag}: grid {row[f'{tag}_grid_s']:.2f} s, {row[f'{tag}_correct']}/{te.size} correct, "
                f"{pname}={info[pname]}, one fit on {X.shape[0]} x {X.shape[1]} {row[f'{tag}_fit_s']:.2f} s")
        row["n_test"] = int(te.size)
        row["shape"] = f"{X.shape[0]} x {X.shape[1]}"
        rows.append(row)
    return rows


def warm_up(names: list[str]) -> None:
    """Import and run every baseline once on a tiny set, so first-use costs land in neither column."""
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 50)).astype(np.float32), np.arange(40) % 2
    for name in names:
        for old in (True, False):
            _fit(name, old, X_train=X[:30], y_train=y[:30], X_val=X[30:35], y_val=y[30:35], X_test=X[35:], n_classes=2)


def evaluate_wall(ds: SpectralDataset, names: list[str], jobs: int) -> float:
    """Wall seconds of a stratified 4-fold ``evaluate`` of ``names`` in ``jobs`` processes."""
    import tempfile

    from trainer.evaluate import evaluate

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        evaluate(ds, d, protocol="kfold", folds=4, models=names, jobs=jobs)
        return time.perf_counter() - t0


def render(rows: list[dict[str, Any]], walls: list[tuple[str, float, float]], load0: tuple[float, ...], load1: tuple[float, ...], cmd: str) -> str:
    import numpy
    import sklearn

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Measured {now} by `bench/bench_baselines.py` on {cpu_model()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
        f"numpy {numpy.__version__}. Load average when it started: {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} "
        f"(1 / 5 / 15 min), when it ended: {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}"
        + (": the machine was shared with other jobs, so read the ratios (old and new ran interleaved in one run), "
           "not the absolute numbers. Old ran first for each baseline, after a warm-up of both." if load0[0] > 0.5 * (os.cpu_count() or 1) else "."),
        "",
        "Old: the settings before issue 16 (logistic regression on all points, BLAS threads at their default); "
        "new: trainer.baselines now (logistic regression on the row-space coordinates of the standardised spectra, "
        "one BLAS thread a fit). Grid: choose the hyper-parameter on the validation part of the first split of a "
        "stratified 4-fold, fit on its training part, score its test part (the same spectra for old and new). "
        "Fit: one fit of the chosen value on every spectrum of the set.",
        "",
        "| data | baseline | grid s old | grid s new | ratio | fit s old | fit s new | ratio | correct old | correct new |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} ({r['shape']}) | {r['baseline']} | {r['old_grid_s']:.2f} | {r['new_grid_s']:.2f} | "
            f"{r['old_grid_s'] / max(r['new_grid_s'], 1e-9):.1f}x | {r['old_fit_s']:.2f} | {r['new_fit_s']:.2f} | "
            f"{r['old_fit_s'] / max(r['new_fit_s'], 1e-9):.1f}x | {r['old_correct']}/{r['n_test']} | "
            f"{r['new_correct']}/{r['n_test']} |"
        )
    if walls:
        lines += ["", "A whole `evaluate` (stratified 4-fold, the baselines above, new settings), one process vs two, "
                  "run one after the other:", "", "| data | jobs=1 s | jobs=2 s | ratio |", "|---|---:|---:|---:|"]
        lines += [f"| {t} | {a:.1f} | {b:.1f} | {a / max(b, 1e-9):.2f}x |" for t, a, b in walls]
    worst = max(rows, key=lambda r: r["new_fit_s"])
    worst_grid = max(rows, key=lambda r: r["new_grid_s"])
    same = all(r["old_correct"] == r["new_correct"] for r in rows)
    lines += [
        "",
        f"Reading: the slowest single fit with the new settings was {worst['baseline']} on {worst['data']} "
        f"({worst['new_fit_s']:.2f} s; goal <= 2 s), the slowest grid search {worst_grid['baseline']} on "
        f"{worst_grid['data']} ({worst_grid['new_grid_s']:.2f} s for the whole grid). "
        + ("Every baseline classified the same number of test spectra correctly with old and new settings. "
           if same else "Some baselines' test results differ between old and new settings (see the table). ")
        + "The logistic regression gains most from fitting in the row space (each lbfgs step costs the number of "
        "training spectra instead of the number of points per spectrum; with small C lbfgs needs hundreds of "
        "steps); the other baselines' code is unchanged, and what they gain comes from one BLAS thread a fit "
        "(two threads spinning against other jobs for a busy core are slower than one). Running folds and models "
        "in worker processes pays only when a core is free: each worker imports scikit-learn first, and on a "
        "2-core machine with another job running two processes share one core, so `evaluate` defaults to the "
        "cores not busy (CPUs minus the 1-minute load average, at least 1) and `--jobs` overrides it.",
    ]
    lines += ["", f"Reproduce: `{cmd}` (`--no-write` to print only)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="where the real data sets are")
    ap.add_argument("--models", default=",".join(baselines.BASELINES), help="comma-separated baselines")
    ap.add_argument("--no-evaluate", action="store_true", help="skip the whole-evaluate timing")
    ap.add_argument("--no-write", action="store_true", help="print the section only")
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    warm_up(names)
    sets: list[tuple[str, SpectralDataset]] = []
    nh2 = Path(args.data_dir) / NH2
    if nh2.is_file():
        sets.append(("melanoma NH2", read_dataset(nh2)))
    else:
        say(f"{nh2} is absent: the real data set is skipped")
    sets.append(("synthetic", synth_dataset(classes=6, per_class=100, points=2000, seed=0)))
    rows: list[dict[str, Any]] = []
    walls: list[tuple[str, float, float]] = []
    for title, ds in sets:
        rows += measure(title, ds, names, say)
    if not args.no_evaluate:
        for title, ds in sets:
            one, two = evaluate_wall(ds, names, 1), evaluate_wall(ds, names, 2)
            say(f"{title} evaluate: jobs=1 {one:.1f} s, jobs=2 {two:.1f} s")
            walls.append((title, one, two))
    load1 = os.getloadavg()
    return publish(SECTION, render(rows, walls, load0, load1, ".venv/bin/python bench/bench_baselines.py"),
                   write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
