"""Should despike be on by default? Measured on the shared data sets.

For each data set: how many spectra the despiker (default threshold 7, width 2) changes, and how many pixels;
then classical baselines evaluated with despike off and on, on the very same k-fold splits (the splits'
grouping is the data's own: grouped where the file carries groups), THE preprocessing otherwise as in
docs/results.md (min-max on the file's own axis). RamanNet is left out: the question is whether removing the
spikes changes what any model can see, and the baselines answer it in seconds.

    .venv/bin/python bench/bench_despike.py --out eval/despike [--models svm,logreg] [--jobs 1]

Prints a markdown table (data set, spectra changed, pixels changed, accuracy off -> on per model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectral_core.io import read_dataset  # noqa: E402
from spectral_core.preprocess import DespikeConfig, PreprocessConfig, Preprocessor  # noqa: E402
from trainer.evaluate import evaluate  # noqa: E402
from trainer.train import TrainConfig  # noqa: E402

# (name, file, folds, smallest class kept): the protocols of docs/results.md, k-fold throughout.
SETS = (
    ("melanoma NH2", "melanoma-sers-erzina/dataset_nh2.npz", 4, 0),
    ("melanoma COOH", "melanoma-sers-erzina/dataset_cooh.npz", 4, 0),
    ("melanoma (COOH)2", "melanoma-sers-erzina/dataset_cooh2.npz", 4, 0),
    ("COVID-19 serum", "covid19-serum-yin/dataset.npz", 5, 0),
    ("RRUFF", "rruff-ramin-27class/dataset.npz", 5, 5),
    ("microplastics", "microplastics-rampp/dataset.npz", 3, 0),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="svm,logreg")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    models = args.models.split(",")
    print("| data set | spectra | changed by despike | pixels changed | grouped | "
          + " | ".join(f"{m} off -> on %" for m in models) + " |")
    print("|---|---|---|---|---|" + "---|" * len(models))
    for name, file, folds, min_per_class in SETS:
        ds = read_dataset(Path(args.data) / file)
        if min_per_class:
            counts = ds.class_counts()
            ds = ds.select_classes([c for c in ds.classes if counts[c] >= min_per_class])
        raw = np.asarray(ds.X, dtype=np.float32)
        off = Preprocessor(PreprocessConfig(normalise="none")).transform(raw, ds.axis)
        on = Preprocessor(PreprocessConfig(despike=DespikeConfig(), normalise="none")).transform(raw, ds.axis)
        changed = off != on
        cells = []
        for despike in (None, DespikeConfig()):
            cfg = TrainConfig(preprocess=PreprocessConfig(despike=despike))
            tag = "on" if despike else "off"
            res = evaluate(ds, Path(args.out) / f"{Path(file).parent.name}_{Path(file).stem}_{tag}", cfg,
                           protocol="kfold", models=models, folds=folds, force=True, jobs=args.jobs)
            cells.append({m: res["models"][m]["summary"]["accuracy"]["mean"] for m in models})
        print(f"| {name} | {ds.n_spectra} | {int(changed.any(axis=1).sum())} | {int(changed.sum())} | "
              f"{'yes' if ds.groups is not None else 'no'} | "
              + " | ".join(f"{100 * cells[0][m]:.1f} -> {100 * cells[1][m]:.1f}" for m in models) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
