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
import os
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


def _post(host: str, port: int, body: bytes, ctype: str = "application/json",
          headers: dict[str, str] | None = None) -> tuple[int, float]:
    t = time.perf_counter()
    con = http.client.HTTPConnection(host, port, timeout=120)
    try:
        con.request("POST", "/classify", body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = con.getresponse()
        r.read()
        return r.status, time.perf_counter() - t
    finally:
        con.close()


def _big_bodies(points: int, kind: str, n: int, new_axes: bool) -> list[tuple[bytes, str, dict[str, str]]]:
    """``n`` request bodies of ``points`` points (JSON as a client writes it, or float64 binary)."""
    out = []
    for k in range(n):  # each on an axis the daemon has not seen (a new operator every time), or one axis
        shift = k if new_axes else 0
        axis = np.linspace(200.0 + shift, 2000.0 - shift, points)
        y = 100 + 50 * np.sin(axis / 37.0)
        if kind == "json":
            body = json.dumps({"axis": [round(float(v), 4) for v in axis],
                               "intensities": [round(float(v), 3) for v in y]}).encode()
            out.append((body, "application/json", {}))
        else:
            out.append((np.concatenate([axis, y]).astype("<f8").tobytes(), "application/octet-stream",
                        {"X-Spectrum-Layout": "axis,intensities"}))
    return out


def big_sender(port: int, points: int, kind: str, n: int, new_axes: bool) -> None:
    """The client of the long spectra, in its own process: its bodies are encoded before the timed part, and
    its own work never competes with the measuring client for one interpreter lock."""
    bodies = _big_bodies(points, kind, n, new_axes)
    print("ready", flush=True)
    sys.stdin.readline()
    res = [_post("127.0.0.1", port, b, c, h) for b, c, h in bodies]
    print(json.dumps({"status": [s for s, _ in res], "ms": [round(d * 1e3, 1) for _, d in res],
                      "body_bytes": len(bodies[0][0])}), flush=True)


class _Serve:
    """``ramanedge serve`` from a source tree (this one, or another checkout for a side-by-side run)."""

    def __init__(self, model: Path, src: Path, switch_s: float | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_limits_"))
        env = {**os.environ, "PYTHONPATH": str(src)}
        args = ["serve", "--model", str(model), "--db", str(self.tmp / "r.sqlite"), "--http", "127.0.0.1:0",
                "--provider", "cpu", "--max-request-bytes", str(16 << 20), "--model-poll", "0"]
        # the interpreter's thread switch interval (5 ms by default), set before the daemon starts
        run = (["-m", "ramanedge"] if switch_s is None else
               ["-c", f"import runpy, sys; sys.setswitchinterval({switch_s}); sys.argv[0] = 'ramanedge'; "
                      "runpy.run_module('ramanedge', run_name='__main__')"])
        self.proc = subprocess.Popen(
            [sys.executable, *run, *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=src, env=env,
        )
        if self.proc.stderr is None:
            raise RuntimeError("no stderr pipe")
        self.port = 0
        for line in self.proc.stderr:
            m = re.search(r"ready .*http://[\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.stop()
            raise RuntimeError("the daemon did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        with urllib_open(f"http://127.0.0.1:{self.port}/readyz") as r:
            self.points = int(json.loads(r.read())["model"]["points"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)) * 1e3, 1) if xs else float("nan")


def bench_concurrency(model: Path, big: int, seconds: float, *, kind: str = "json", new_axes: bool = True,
                      src: Path = REPO, n_big: int = 5, switch_s: float | None = None) -> dict[str, Any]:
    """p50/p99 of small POSTs alone, then while another process POSTs ``n_big`` spectra of ``big`` points."""
    srv = _Serve(model, src, switch_s)
    sender = subprocess.Popen(
        [sys.executable, __file__, "--big-sender", str(srv.port), str(big), kind, str(n_big), str(int(new_axes))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    stop = threading.Event()
    try:
        if sender.stdout is None or sender.stdin is None or sender.stdout.readline().strip() != "ready":
            raise RuntimeError("the sender of long spectra did not start")
        rng = np.random.default_rng(0)
        small = json.dumps({"intensities": [round(float(v), 3) for v in 100 + rng.random(srv.points) * 50]}).encode()
        lat: list[tuple[float, float]] = []

        def small_loop() -> None:
            while not stop.is_set():
                try:
                    status, dt = _post("127.0.0.1", srv.port, small)
                except OSError:  # the daemon is being stopped
                    return
                lat.append((time.monotonic(), dt if status == 200 else float("inf")))

        t = threading.Thread(target=small_loop, daemon=True)
        t.start()
        time.sleep(seconds)  # baseline
        load0 = os.getloadavg()[0]
        t_big0 = time.monotonic()
        sender.stdin.write("go\n")
        sender.stdin.flush()
        big_res = json.loads(sender.stdout.readline())
        t_big1 = time.monotonic()
        load1 = os.getloadavg()[0]
        time.sleep(0.3)
        stop.set()
        t.join(30)
        base = [d for (ts, d) in lat if ts < t_big0]
        # a small request counts as "during" when it ended while long ones were being sent
        during = [d for (ts, d) in lat if t_big0 <= ts <= t_big1]
        return {"src": "this tree" if src == REPO else str(src), "switch_s": switch_s, "big_points": big, "big_kind": kind,
                "new_axes": new_axes, "big_status": big_res["status"], "big_ms": big_res["ms"],
                "big_body_bytes": big_res["body_bytes"], "load_avg_1min": [round(load0, 2), round(load1, 2)],
                "small_baseline": {"n": len(base), "p50_ms": _pct(base, 50), "p99_ms": _pct(base, 99)},
                "small_during_big": {"n": len(during), "p50_ms": _pct(during, 50), "p99_ms": _pct(during, 99),
                                     "max_ms": round(max(during) * 1e3, 1) if during else None}}
    finally:
        stop.set()
        sender.kill()
        sender.wait(30)
        srv.stop()


def _summary(rows: list[dict[str, Any]]) -> None:
    """Medians over the repeats of each configuration's p99 (small requests alone / beside long ones)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if "failed" not in r and all(s == 200 for s in r["big_status"]):
            groups.setdefault((r["src"], r["big_kind"], r["new_axes"], r["switch_s"]), []).append(r)
    for (src, kind, new_axes, switch_s), rs in groups.items():
        print(json.dumps({
            "summary": src, "big_kind": kind, "new_axes": new_axes, "switch_s": switch_s, "repeats": len(rs),
            "load_avg_1min": [min(r["load_avg_1min"][0] for r in rs), max(r["load_avg_1min"][1] for r in rs)],
            "big_ms_median": statistics.median(d for r in rs for d in r["big_ms"]),
            "small_alone_p99_ms": statistics.median(r["small_baseline"]["p99_ms"] for r in rs),
            "small_beside_big_p50_ms": statistics.median(r["small_during_big"]["p50_ms"] for r in rs),
            "small_beside_big_p99_ms": statistics.median(r["small_during_big"]["p99_ms"] for r in rs),
        }), flush=True)


def urllib_open(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=30)


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--big-sender":  # the child process of bench_concurrency
        big_sender(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an exported ONNX model (default: build a full-size RamanNet)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="baseline period of the concurrency round")
    ap.add_argument("--dense-max", type=int, default=8192, help="largest axis built the old dense way too")
    ap.add_argument("--n-big", type=int, default=5, help="long spectra sent per concurrency round")
    ap.add_argument("--kinds", default="json,binary", help="bodies of the long spectra: json, binary or both")
    ap.add_argument("--compare-src", type=Path, action="append", default=[],
                    help="another source tree (e.g. `git archive main | tar -x -C DIR`) measured in the same run")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all configurations, interleaved")
    ap.add_argument("--switch-interval", type=float, action="append", default=[],
                    help="also run the daemon with this sys.setswitchinterval, s")
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
        rows = []
        for _ in range(args.repeat):  # configurations interleaved, so a change of load hits them all alike
            for src in (*args.compare_src, REPO):
                for kind in args.kinds.split(","):
                    for new_axes in (True, False):
                        for switch_s in (None, *args.switch_interval):
                            try:
                                row = bench_concurrency(model, 65_536, args.seconds, kind=kind, new_axes=new_axes,
                                                        src=src.resolve(), n_big=args.n_big, switch_s=switch_s)
                            except (RuntimeError, KeyError, ValueError) as exc:  # e.g. no binary bodies there
                                row = {"src": str(src), "big_kind": kind, "new_axes": new_axes, "failed": str(exc)}
                            rows.append(row)
                            print(json.dumps(row), flush=True)
        _summary(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
