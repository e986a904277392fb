"""Score an evaluated ensemble's members alone and its sub-ensembles, on the very splits ``evaluate`` used.

``ramanedge evaluate --ensemble K --out DIR`` keeps every split's members under ``DIR/ramannet-xK/<split>/
members/<i>``. Member 0 has the seed and the split of the single RamanNet that ``evaluate`` (no --ensemble)
trains into the same DIR (tests/trainer/test_ensemble.py checks the weights are identical), so scoring it here
is the single-model row without training it again. Prints, per number of members k = 1..K (the first k, mean
of their softmax), the test accuracy mean ± std across splits, and the members' own accuracies.

    .venv/bin/python bench/ensemble_members.py DIR --data FILE [--classes A,B,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--classes", help="the --classes given to evaluate")
    args = ap.parse_args(argv)
    import torch

    from spectral_core.io import read_dataset
    from spectral_core.preprocess import Preprocessor
    from trainer.ensemble import load_ensemble

    ds = read_dataset(args.data)
    if args.classes:
        ds = ds.select_classes(args.classes.split(","))
    doc = json.loads((args.dir / "splits.json").read_text())
    if doc["fingerprints"]["data"] != ds.fingerprint():
        raise SystemExit("the data are not those the splits were made from (check --data and --classes)")
    ens_dirs = sorted(p for p in args.dir.iterdir() if p.is_dir() and p.name.startswith("ramannet-x"))
    if not ens_dirs or ds.y is None:
        raise SystemExit(f"{args.dir}: no ramannet-xK results")
    for ens_dir in ens_dirs:
        acc: dict[int, list[float]] = {}
        member_acc: list[list[float]] = []
        for s in doc["splits"]:
            net, info = load_ensemble(ens_dir / s["name"])
            te = np.asarray(s["test"], dtype=np.int64)
            X = torch.from_numpy(Preprocessor(info.preprocess).transform(ds.X[te], ds.axis))
            y = ds.y[te]
            with torch.no_grad():
                probs = [torch.softmax(m.eval()(X)[0], dim=1).numpy() for m in net.member_nets()]
            member_acc.append([float((p.argmax(1) == y).mean()) for p in probs])
            for k in range(1, len(probs) + 1):
                acc.setdefault(k, []).append(float((np.mean(probs[:k], axis=0).argmax(1) == y).mean()))
        print(f"{ens_dir.name}: {len(doc['splits'])} splits ({doc['params']})")
        for k, v in acc.items():
            print(f"  first {k} member(s): accuracy {100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1) if len(v) > 1 else 0:.1f} "
                  f"(per split {', '.join(f'{100 * a:.1f}' for a in v)})")
        m = np.asarray(member_acc)
        print(f"  members alone: mean {100 * m.mean():.1f}, per member {', '.join(f'{100 * a:.1f}' for a in m.mean(0))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
