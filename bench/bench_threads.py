"""The trainer's thread policy, measured: ``train()`` under each thread setting against a minimal loop.

Each configuration runs in its own process (OpenMP reads ``OMP_WAIT_POLICY`` once, at start), on a quiet
machine and with one core kept busy by a spinning process, interleaved over rounds. The data: a synthetic set
of the melanoma NH2 shape (12 classes x 53 spectra x 2,090 points), RamanNet with the small-data settings
(batch 32). The minimal loop is plain PyTorch on one thread: the same model, batches and epochs, no validation,
no batch-norm recalibration, no checkpointing; the reference the issue measured against.

    .venv/bin/python bench/bench_threads.py [--epochs 10] [--rounds 2] [--no-write]

Writes the "## Training threads (trainer.threads)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _docs import cpu_model, publish

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Training threads (trainer.threads)"
# (threads, OpenMP waiting); "auto"/"policy" is what `ramanedge train` does by default (trainer.threads)
CONFIGS = (("auto", "policy"), ("1", "PASSIVE"), ("2", "PASSIVE"), ("1", "ACTIVE"), ("2", "ACTIVE"),
           ("minimal", "ACTIVE"))

_CHILD = r"""
import json, sys, time, tempfile
import numpy as np
threads, epochs = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
if threads == "auto":
    from trainer.threads import set_wait_policy
    set_wait_policy()
import torch
from spectral_core.synth import synth_dataset
ds = synth_dataset(classes=12, per_class=53, points=2090, seed=0)
t0 = time.perf_counter()
if threads == "minimal":
    import torch.nn.functional as F
    from trainer.losses import triplet_semihard_loss
    from trainer.model import RamanNet, RamanNetConfig
    from spectral_core.preprocess import normalise
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X = torch.from_numpy(normalise(ds.X, "minmax")[0]); y = torch.from_numpy(ds.y)
    model = RamanNet(RamanNetConfig(input_length=ds.n_points, n_classes=12, window=50, step=25, bn_momentum=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    n_train = int(0.9 * len(y))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train, 32):
            idx = perm[i:i + 32]
            logits, emb = model(X[idx])
            loss = 0.5 * F.cross_entropy(logits, y[idx]) + 0.5 * triplet_semihard_loss(y[idx], emb, 1.0)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    chosen = 1
else:
    from trainer.train import TrainConfig, train
    cfg = TrainConfig(epochs=epochs, batch_size=32, model={"window": 50, "step": 25, "bn_momentum": 0.1},
                      num_threads=None if threads == "auto" else int(threads))
    with tempfile.TemporaryDirectory() as d:
        train(ds, d + "/run", cfg)
    chosen = torch.get_num_threads()
import os
print(json.dumps({"seconds": time.perf_counter() - t0, "threads": chosen,
                  "wait": os.environ.get("OMP_WAIT_POLICY", "default")}))
"""


def _run(threads: str, wait: str, epochs: int) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if wait != "policy":
        env["OMP_WAIT_POLICY"] = wait
    out = subprocess.run([sys.executable, "-c", _CHILD, threads, str(epochs), str(REPO)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=1800, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    chosen: dict[str, set[str]] = {}
    loads: dict[str, list[float]] = {}
    for busy in (False, True):
        cond = "one core busy" if busy else "quiet"
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            if spinner is not None:
                time.sleep(1)
            for _ in range(args.rounds):
                for threads, wait in CONFIGS:
                    key = f"{threads} / {wait}"
                    got = _run(threads, wait, args.epochs)
                    results.setdefault(cond, {}).setdefault(key, []).append(float(got["seconds"]))  # type: ignore[arg-type]
                    if threads == "auto":
                        chosen.setdefault(cond, set()).add(f"{got['threads']} thread(s), {str(got['wait']).lower()}")
                    loads.setdefault(cond, []).append(os.getloadavg()[0])
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    lines = [SECTION, "", f"Machine: {cpu_model()}, {os.cpu_count()} cores; `python bench/bench_threads.py "
             f"--epochs {args.epochs} --rounds {args.rounds}`; median wall time of `train()` (or the minimal loop) "
             f"per setting, each in its own process, interleaved. Load average seen during the quiet rounds "
             f"{statistics.median(loads['quiet']):.1f}, during the busy rounds "
             f"{statistics.median(loads['one core busy']):.1f} (other work on the machine adds to both).", "",
             "| machine | threads / OpenMP waiting | seconds | x minimal loop |", "|---|---|---:|---:|"]
    for cond, per in results.items():
        base = statistics.median(per["minimal / ACTIVE"])
        for key, secs in per.items():
            med = statistics.median(secs)
            what = f"{key} ({'; '.join(sorted(chosen.get(cond, set())))})" if key.startswith("auto") else key
            lines.append(f"| {cond} | {what} | {med:.1f} | {med / base:.2f} |")
    text = "\n".join(lines) + "\n"
    return publish(SECTION, text, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
