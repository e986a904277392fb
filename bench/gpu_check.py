"""The GPU checks that CI cannot run: the CUDA provider really loads, agrees with CPU, and what it buys.

Run on a machine with an NVIDIA GPU and ``onnxruntime-gpu`` installed, on models exported beforehand (the
export needs torch; this script does not)::

    python bench/gpu_check.py --models DIR --out gpu_report.json [--daemon]

For every ``*.onnx`` in DIR:

* ``Engine(provider="cuda", require_gpu=True)`` must report ``CUDAExecutionProvider`` (read back from the
  session, never assumed); the CPU engine on the same model must agree (max |p_gpu - p_cpu|, argmax);
* throughput of ``Engine.infer`` on CPU and CUDA, interleaved rounds, batches 1, 32, 256, 1024 (medians);
* ``provider="tensorrt"``: either a session that runs on TensorRT, or a :class:`ProviderError` naming why (no
  silent fallback);
* with ``--daemon``: ``ramanedge serve --provider cuda --require-gpu`` on a ``sim://`` source for a few hundred
  spectra; every ledger record must name CUDAExecutionProvider.

Everything measured goes to the JSON report and is printed; nothing is written to docs (the numbers are
copied into docs/benchmarks.md by hand, with the machine described).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCHES = (1, 32, 256, 1024)


def _median_rate(engine: Any, x: np.ndarray, seconds: float) -> float:
    """Spectra per second of ``engine.infer(x)``, median of short timed bursts within ``seconds``."""
    engine.infer(x)  # warm: kernels, arena growth for this shape
    rates: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < 3:
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:
            engine.infer(x)
            n += 1
        rates.append(n * x.shape[0] / (time.perf_counter() - t0))
    return float(np.median(rates))


def check_model(path: Path, rounds: int, seconds: float) -> dict[str, Any]:
    from edge_runtime.engine import Engine
    from edge_runtime.errors import ProviderError

    rep: dict[str, Any] = {"model": path.name}
    gpu = Engine(path, provider="cuda", require_gpu=True)
    cpu = Engine(path, provider="cpu", threads=max(1, min(8, _cores())))
    rep["provider_gpu"] = gpu.provider
    rep["provider_cpu"] = cpu.provider
    rng = np.random.default_rng(0)
    x = rng.random((512, gpu.contract.n_points)).astype(np.float32)
    pg, _ = gpu.infer(x)
    pc, _ = cpu.infer(x)
    rep["max_abs_diff_probabilities"] = float(np.max(np.abs(pg - pc)))
    rep["argmax_agreement"] = float(np.mean(pg.argmax(1) == pc.argmax(1)))
    rep["precision"] = gpu.contract.precision
    rates: dict[str, dict[str, list[float]]] = {"cpu": {}, "cuda": {}}
    for _ in range(rounds):  # interleaved: a load spike hits both providers alike
        for b in BATCHES:
            xb = np.ascontiguousarray(x[np.arange(b) % x.shape[0]])
            for name, eng in (("cpu", cpu), ("cuda", gpu)):
                rates[name].setdefault(str(b), []).append(_median_rate(eng, xb, seconds))
    rep["spectra_per_s"] = {name: {b: float(np.median(v)) for b, v in per.items()} for name, per in rates.items()}
    try:
        trt = Engine(path, provider="tensorrt", require_gpu=True)
        rep["tensorrt"] = {"provider": trt.provider}
    except ProviderError as exc:
        rep["tensorrt"] = {"refused": str(exc)[:600]}
    return rep


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_daemon(model: Path, count: int) -> dict[str, Any]:
    """``ramanedge serve --provider cuda --require-gpu`` on a simulated instrument; the ledger names the provider."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "gpu.sqlite"
        cmd = [sys.executable, "-m", "ramanedge", "serve", "--model", str(model), "--provider", "cuda",
               "--require-gpu", "--source", "sim://?classes=4&rate=500", "--count", str(count), "--http", "off",
               "--db", str(db)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
        out: dict[str, Any] = {"returncode": proc.returncode, "seconds": round(time.monotonic() - t0, 2),
                               "stderr_tail": proc.stderr[-1500:]}
        if db.exists():
            con = sqlite3.connect(db)
            out["records"] = con.execute("SELECT status, provider, COUNT(*) FROM results GROUP BY 1, 2").fetchall()
            con.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, required=True, help="folder of exported *.onnx models")
    ap.add_argument("--out", type=Path, required=True, help="JSON report")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.3, help="timing per configuration and round, s")
    ap.add_argument("--daemon", action="store_true", help="also serve a sim:// source on CUDA")
    args = ap.parse_args()
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, when the system has none on its path
    report: dict[str, Any] = {
        "onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
        "device": ort.get_device(), "python": platform.python_version(), "cpu_cores": _cores(), "models": [],
    }
    try:
        report["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                        "--format=csv,noheader"], capture_output=True, text=True,
                                       check=False).stdout.strip()
    except OSError as exc:
        report["gpu"] = f"nvidia-smi: {exc}"
    failed = False
    for path in sorted(args.models.glob("*.onnx")):
        try:
            report["models"].append(check_model(path, args.rounds, args.seconds))
        except Exception as exc:  # a report, not a test runner: every failure is written down with its type
            report["models"].append({"model": path.name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            failed = True
    if args.daemon:
        first = sorted(args.models.glob("*fp32*.onnx")) or sorted(args.models.glob("*.onnx"))
        report["daemon"] = check_daemon(first[0], 300) if first else {"error": "no model"}
        failed = failed or report["daemon"].get("returncode") != 0
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
