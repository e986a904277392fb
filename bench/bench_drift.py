"""Drift detection on the shared data sets: held-out false-flag rates of the cross-validated limits in force
against the textbook limits (F for T^2, Box's chi-square for Q), and how often drifted spectra are flagged.

Each set is split 70/30 at random (seed 1); the drift model is fitted on the 70% after the default
preprocessing (minmax, no baseline correction) and scores the 30% as measured, with an uncorrected axis shift
(5 and 10 cm^-1), and with an added baseline (oscillating 10% of the peak, quadratic and sloped 30%).
``alarm`` is the window test over all held-out spectra (binomial, p < 0.001). Prints a markdown table.

    .venv/bin/python bench/bench_drift.py [DATA_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from spectral_core.drift import DriftModel, drift_scores, fit_drift, window_alarm
from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.synth import synth_dataset

PRE = Preprocessor(PreprocessConfig())
SETS = {
    "melanoma NH2": "melanoma-sers-erzina/dataset_nh2.npz",
    "melanoma COOH": "melanoma-sers-erzina/dataset_cooh.npz",
    "RRUFF 27 minerals": "rruff-ramin-27class/dataset.npz",
}


def _rate(X: np.ndarray, axis: np.ndarray, m: DriftModel) -> tuple[float, bool]:
    f = drift_scores(PRE.transform(X.astype(np.float32), axis), m).flag
    return float(f.mean()), window_alarm(int(f.sum()), f.size, m.expected_flag_rate)


def row(name: str, X: np.ndarray, axis: np.ndarray) -> str:
    rng = np.random.default_rng(1)
    te = np.zeros(len(X), dtype=bool)
    te[rng.permutation(len(X))[: int(0.3 * len(X))]] = True
    Z = PRE.transform(X.astype(np.float32), axis)
    m = fit_drift(Z[~te])
    s = drift_scores(Z[te], m)
    textbook = float(np.mean((s.t2 > (m.t2_limit_f or np.inf)) | (s.q > (m.q_limit_box or np.inf))))
    held = X[te].astype(np.float64)
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    peak = held.max(axis=1, keepdims=True)
    cells = [name, f"{m.n_components} ({m.explained_variance:.0%})", f"{len(m.model_dump_json()) / 1024:.0f}",
             f"{s.flag.mean():.1%}", f"{textbook:.1%}"]
    for shift in (5.0, 10.0):
        r, alarm = _rate(np.stack([np.interp(axis, axis + shift, y) for y in held]), axis, m)
        cells.append(f"{r:.0%}{' alarm' if alarm else ''}")
    for b, a in ((np.sin(2 * np.pi * 4 * t), 0.1), (t**2, 0.3), (1 - t, 0.3)):
        cells.append(f"{_rate(held + a * peak * b, axis, m)[0]:.0%}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    print("| set | k (variance) | KiB in contract | held-out flagged (limits in force) | held-out flagged (F / Box) "
          "| shift 5 cm^-1 | shift 10 cm^-1 | ripple 10% | quadratic 30% | slope 30% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        ds = synth_dataset(classes=4, per_class=100, seed=0)
        print(row("synthetic 4 x 100", ds.X, ds.axis), flush=True)
        for name, rel in SETS.items():
            path = data / rel
            if path.is_file():
                d = np.load(path, allow_pickle=False)
                print(row(name, d["X"], d["axis"]), flush=True)


if __name__ == "__main__":
    main()
