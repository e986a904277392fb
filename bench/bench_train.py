"""Training speed of RamanNet on CPU: spectra per second, forward + backward + Adam step.

The paper's architecture (w 50, dw 25, n1 25, n2 512, nf 256) on L = 1000 points, 30 classes, batches of 256
spectra, the real loss (0.5 cross-entropy + 0.5 semi-hard triplet). One "epoch" is 10 batches (2,560
spectra); we report the median of several epochs after warm-up, for 1 and 2 torch threads, plus the
inference-mode forward pass and the triplet loss alone for scale.

Writes the "## Training speed (trainer)" section of docs/benchmarks.md (other sections are left untouched);
``--no-write`` prints it only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _docs import cpu_model, publish  # noqa: E402

from trainer.losses import triplet_semihard_loss  # noqa: E402
from trainer.model import RamanNet, RamanNetConfig  # noqa: E402

SECTION = "## Training speed (trainer)"
L, CLASSES, BATCH, BATCHES = 1000, 30, 256, 10


def _epoch_seconds(model: RamanNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    t0 = time.perf_counter()
    for i in range(BATCHES):
        xb, yb = x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]
        logits, emb = model(xb)
        loss = 0.5 * F.cross_entropy(logits, yb) + 0.5 * triplet_semihard_loss(yb, emb, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def measure(threads: int, rounds: int) -> dict[str, float]:
    """Median spectra/s of a training epoch, of inference and of the triplet loss, with ``threads`` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = RamanNet(RamanNetConfig(input_length=L, n_classes=CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH * BATCHES, L, generator=gen)
    y = torch.randint(0, CLASSES, (BATCH * BATCHES,), generator=gen)
    model.train()
    _epoch_seconds(model, opt, x[: 2 * BATCH].repeat(5, 1), y[: 2 * BATCH].repeat(5))  # warm-up
    train_s = [_epoch_seconds(model, opt, x, y) for _ in range(rounds)]
    model.eval()
    infer_s = []
    with torch.inference_mode():
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(BATCHES):
                model(x[i * BATCH : (i + 1) * BATCH])
            infer_s.append(time.perf_counter() - t0)
    emb = F.normalize(torch.randn(BATCH, 256, generator=gen), dim=1).requires_grad_(True)
    trip_s = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(BATCHES):
            triplet_semihard_loss(y[i * BATCH : (i + 1) * BATCH], emb).backward()
        trip_s.append(time.perf_counter() - t0)
    n = BATCH * BATCHES
    return {
        "threads": threads,
        "train_sps": n / statistics.median(train_s),
        "train_min_sps": n / max(train_s),
        "train_max_sps": n / min(train_s),
        "infer_sps": n / statistics.median(infer_s),
        "triplet_ms": 1000 * statistics.median(trip_s) / BATCHES,
        "batch_ms": 1000 * statistics.median(train_s) / BATCHES,
    }


def render(rows: list[dict[str, float]], load: tuple[float, float, float], rounds: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Measured {now} by `bench/bench_train.py` on {cpu_model()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}. Load average when it started: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(1 / 5 / 15 min): the machine was shared with other jobs, so absolute numbers are pessimistic and noisy.",
        "",
        f"RamanNet with the paper's sizes (w 50, dw 25, n1 25, n2 512, nf 256; 39 windows) on L = {L} points, "
        f"{CLASSES} classes, batches of {BATCH}; one training step = forward, 0.5 CE + 0.5 semi-hard triplet loss, "
        f"backward, Adam. Median of {rounds} epochs of {BATCHES} batches after warm-up (min-max in brackets).",
        "",
        "| torch threads | training spectra/s | ms per batch of 256 | inference spectra/s | triplet loss fwd+bwd ms/batch |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['threads'])} | {r['train_sps']:,.0f} ({r['train_min_sps']:,.0f}-{r['train_max_sps']:,.0f}) "
            f"| {r['batch_ms']:.1f} | {r['infer_sps']:,.0f} | {r['triplet_ms']:.2f} |"
        )
    lines += [
        "",
        "Reproduce: `.venv/bin/python bench/bench_train.py` (`--no-write` to print only).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed epochs per thread count")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    load = os.getloadavg()
    rows = [measure(int(t), args.rounds) for t in args.threads.split(",")]
    text = render(rows, load, args.rounds)
    return publish(SECTION, text, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
