"""onnxruntime latency of an ensemble graph (``ramanedge train --ensemble K``) against its single member, in
one run on this machine.

RamanNet at the paper's sizes (L = 1000 points, 30 classes, 39 windows, n2 512, embedding 256), random weights
(a different seed per member: identical members would let the exporter's optimiser merge them), each exported
fp32 by :func:`export.onnx_export.export_run`: member 0 alone, then ensembles of 3 and 5. Every model is timed
at batch 1 and 32 in interleaved rounds, so a background load spike hits them all alike; the table gives the
median ms per spectrum and the ratio to the single model. Prints a markdown table (docs/benchmarks.md,
"Ensembles").

    .venv/bin/python bench/bench_ensemble.py [--rounds 5] [--sizes 3,5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

L, CLASSES = 1000, 30
CALLS = {1: 300, 32: 40}


def _member(path: Path, seed: int) -> str:
    """A random RamanNet run at the paper's sizes; returns its weights hash."""
    import torch

    from spectral_core.preprocess import PreprocessConfig
    from trainer.checkpoint import RunInfo, save_run
    from trainer.model import RamanNet, RamanNetConfig

    torch.manual_seed(seed)
    cfg = RamanNetConfig(input_length=L, n_classes=CLASSES)
    model = RamanNet(cfg).eval()
    info = RunInfo(model=cfg, preprocess=PreprocessConfig(normalise="minmax"),
                   classes=[f"c{i}" for i in range(CLASSES)], axis=np.linspace(400.0, 1800.0, L).tolist(),
                   created="2026-01-01T00:00:00+00:00")
    return save_run(path, model, info).weights_sha256


def _ensemble(workdir: Path, size: int) -> Path:
    """An ensemble directory of ``size`` random members with an open set on the ensemble embedding."""
    from spectral_core.atomic import write_json_atomic
    from spectral_core.contract import OpenSet
    from spectral_core.preprocess import PreprocessConfig
    from trainer.ensemble import ENSEMBLE_JSON, EnsembleInfo, ensemble_weights_sha256

    out = workdir / f"ens{size}"
    hashes = [_member(out / "members" / str(i), i) for i in range(size)]
    rng = np.random.default_rng(0)
    cen = rng.normal(size=(CLASSES, 256 * size))
    cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    pre = PreprocessConfig(normalise="minmax")
    info = EnsembleInfo(
        size=size, members=[f"members/{i}" for i in range(size)], member_weights_sha256=hashes,
        member_seeds=list(range(size)), preprocess=pre, preprocess_hash=pre.hash(),
        classes=[f"c{i}" for i in range(CLASSES)], axis=np.linspace(400.0, 1800.0, L).tolist(),
        weights_sha256=ensemble_weights_sha256(hashes),
        open_set=OpenSet(centroids=cen.tolist(), thresholds=[0.5] * CLASSES), created="2026-01-01T00:00:00+00:00",
    )
    write_json_atomic(out / ENSEMBLE_JSON, json.loads(info.model_dump_json()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="3,5")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import onnxruntime as ort

    from export.onnx_export import export_run

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models: dict[str, Path] = {}
        biggest = _ensemble(work, max(sizes))
        models["single"] = export_run(biggest / "members" / "0", work / "single.onnx")
        for k in sizes:
            src = biggest if k == max(sizes) else _ensemble(work, k)
            models[f"ensemble x{k}"] = export_run(src, work / f"ens{k}.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = {n: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for n, p in models.items()}
        rng = np.random.default_rng(1)
        load0 = os.getloadavg()
        times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in sess for b in CALLS}
        for _ in range(args.rounds):
            for b, calls in CALLS.items():
                x = rng.random((b, L), dtype=np.float32)
                for n, s in sess.items():
                    s.run(None, {"spectrum": x})  # warm
                    t = time.perf_counter()
                    for _ in range(calls):
                        s.run(None, {"spectrum": x})
                    times[(n, b)].append((time.perf_counter() - t) / calls / b * 1e3)
        load1 = os.getloadavg()
        print(f"measured {datetime.now(UTC).isoformat(timespec='minutes')} on {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, onnxruntime {ort.__version__}, {args.threads} intra-op thread(s); load "
              f"{load0[0]:.1f} before, {load1[0]:.1f} after; median of {args.rounds} interleaved rounds")
        print()
        print("| model | file MB | ms/spectrum, batch 1 | ratio | ms/spectrum, batch 32 | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        base = {b: float(np.median(times[("single", b)])) for b in CALLS}
        for n, p in models.items():
            cells = [n, f"{p.stat().st_size / 1e6:.1f}"]
            for b in CALLS:
                med = float(np.median(times[(n, b)]))
                cells += [f"{med:.3f}", f"{med / base[b]:.2f}"]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
