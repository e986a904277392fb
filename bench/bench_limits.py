"""Bounded work per spectrum: the cost of the resampling operator for long source axes, and whether one long
spectrum on a new axis holds up everything else in a running daemon.

1. operator build: time (median of rounds) and traced memory peak of building the preprocessing operator of
   a source axis of n points onto a 1,000- and a 2,000-point model axis, for the sparse construction in
   ``spectral_core.preprocess`` and, side by side where it fits in memory, the dense construction it replaced
   (the spline of every unit vector, then banded).
2. concurrency: ``ramanedge serve`` as a real process; a client POSTs small spectra on the model axis back to
   back while another POSTs 65,536-point spectra, each on an axis the daemon has not seen. Latency
   percentiles of the small requests with and without the long ones in flight.

Prints its results; run from the repository root: ``.venv/bin/python bench/bench_limits.py``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _dense_operator(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The construction before the sparse one: the not-a-knot spline of every unit vector, 128 at a time."""
    from scipy.interpolate import CubicSpline

    n = src.size
    m = np.empty((dst.size, n))
    for j0 in range(0, n, 128):
        j1 = min(n, j0 + 128)
        unit = np.zeros((n, j1 - j0))
        unit[np.arange(j0, j1), np.arange(j1 - j0)] = 1.0
        m[:, j0:j1] = CubicSpline(src, unit, axis=0, bc_type="not-a-knot")(dst)
    return m


def _measure(fn: Any, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def bench_operator(rounds: int, dense_max: int) -> list[dict[str, Any]]:
    from spectral_core.linop import BandedOperator
    from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor, SmoothConfig

    rows = []
    for targets in (1000, 2000):
        cfg = PreprocessConfig(target_axis=AxisSpec(start=400.0, stop=1800.0, points=targets),
                               smooth=SmoothConfig(window=9, polyorder=3))
        Preprocessor(cfg).preload()
        for n in (1024, 8192, 65536, 1_000_000):
            src = np.linspace(300.0, 1900.0, n)
            new_s, new_mb = _measure(lambda c=cfg, a=src: Preprocessor(c).output_axis(a), rounds)
            row: dict[str, Any] = {"targets": targets, "points": n, "sparse_ms": new_s * 1e3, "sparse_peak_mib": new_mb}
            if n <= dense_max:
                dst = cfg.target_axis.values()  # type: ignore[union-attr]
                old_s, old_mb = _measure(lambda a=src, d=dst: BandedOperator(_dense_operator(a, d)), max(1, rounds // 2))
                row.update(dense_ms=old_s * 1e3, dense_peak_mib=old_mb)
            else:
                row.update(dense_ms=None, dense_peak_mib=targets * n * 8 / 2**20)  # its matrix alone
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _post(host: str, port: int, obj: dict[str, Any]) -> tuple[int, float]:
    body = json.dumps(obj).encode()
    t = time.perf_counter()
    con = http.client.HTTPConnection(host, port, timeout=120)
    try:
        con.request("POST", "/classify", body=body, headers={"Content-Type": "application/json"})
        r = con.getresponse()
        r.read()
        return r.status, time.perf_counter() - t
    finally:
        con.close()


def bench_concurrency(model: Path, big: int, seconds: float, *, new_axes: bool = True) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_limits_"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ramanedge", "serve", "--model", str(model), "--db", str(tmp / "r.sqlite"),
         "--http", "127.0.0.1:0", "--provider", "cpu", "--max-request-bytes", str(16 << 20), "--model-poll", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            m = re.search(r"ready .*(http://[\d.]+:(\d+))", line)
            if m:
                url = m.group(1)
                port = int(m.group(2))
                break
        if url is None:
            raise RuntimeError("the daemon did not start")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        with urllib_open(url + "/readyz") as r:
            points = json.loads(r.read())["model"]["points"]
        rng = np.random.default_rng(0)
        small = {"intensities": [round(float(v), 3) for v in 100 + rng.random(points) * 50]}
        lat: list[tuple[float, float]] = []
        stop = threading.Event()

        def small_loop() -> None:
            while not stop.is_set():
                status, dt = _post("127.0.0.1", port, small)
                lat.append((time.monotonic(), dt if status == 200 else float("inf")))

        t = threading.Thread(target=small_loop, daemon=True)
        t.start()
        time.sleep(seconds)  # baseline
        t_big0 = time.monotonic()
        big_lat = []
        for k in range(5):  # each on an axis the daemon has not seen: a new operator every time
            shift = k if new_axes else 0  # the same axis every time: the operator is built once, then cached
            axis = np.linspace(200.0 + shift, 2000.0 - shift, big)
            y = 100 + 50 * np.sin(axis / 37.0)
            status, dt = _post("127.0.0.1", port, {"axis": [round(float(v), 4) for v in axis],
                                                   "intensities": [round(float(v), 3) for v in y]})
            big_lat.append((status, dt))
        t_big1 = time.monotonic()
        time.sleep(0.5)
        stop.set()
        t.join(30)

        def pct(xs: list[float], q: float) -> float:
            return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")

        base = [d for (ts, d) in lat if ts < t_big0]
        during = [d for (ts, d) in lat if t_big0 <= ts <= t_big1 + 0.05]
        return {"big_points": big, "new_axes": new_axes, "big_status": [s for s, _ in big_lat],
                "big_ms": [round(d * 1e3, 1) for _, d in big_lat],
                "small_baseline": {"n": len(base), "p50_ms": pct(base, 50), "p99_ms": pct(base, 99)},
                "small_during_big": {"n": len(during), "p50_ms": pct(during, 50), "p99_ms": pct(during, 99),
                                     "max_ms": max(during) * 1e3 if during else None}}
    finally:
        proc.terminate()
        proc.wait(30)


def urllib_open(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an exported ONNX model (default: build a full-size RamanNet)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="baseline period of the concurrency round")
    ap.add_argument("--dense-max", type=int, default=8192, help="largest axis built the old dense way too")
    ap.add_argument("--skip-daemon", action="store_true")
    ap.add_argument("--skip-operator", action="store_true")
    args = ap.parse_args()
    if not args.skip_operator:
        bench_operator(args.rounds, args.dense_max)
    if not args.skip_daemon:
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO / "bench"))
            from bench_runtime import build_model

            model = build_model(Path(tempfile.mkdtemp(prefix="bench_limits_model_")))
        for new_axes in (True, False):
            print(json.dumps(bench_concurrency(model, 65_536, args.seconds, new_axes=new_axes)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
