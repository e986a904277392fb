"""Edge runtime benchmarks: `ramanedge serve` as a real process, measured from outside.

1. start-up: process spawn -> GET /readyz answers 200 (model load, self-test, ledger, HTTP, sources).
2. file-drop throughput: N pre-written two-column CSV spectra (1024 points, the simulated instrument's axis)
   are moved into the watched folder by another process as fast as it can rename; records per second from
   the first claim to the last commit.
3. end-to-end latency: a simulated instrument on a pty streaming at 100 spectra/s through the real pyserial
   driver; latency from frame received (the driver's arrival timestamp) to result committed.
4. resident memory of the daemon process (VmRSS at the end of each run, VmHWM peak).

Writes the "## Edge runtime (daemon)" section of docs/benchmarks.md (other sections are left alone).
The model is a full-size RamanNet (paper defaults, 1000 points, 8 classes) exported to fp32 ONNX; its weights
are untrained (timing does not depend on them). torch is used here to build it; the daemon never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _docs import cpu_model, publish

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Edge runtime (daemon)"
CLASSES = 8
L = 1000


def machine() -> str:
    import onnxruntime as ort

    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{cpu_model()}, {os.cpu_count()} cores{mem}, Linux {platform.release()}, Python {platform.python_version()}, "
            f"onnxruntime {ort.__version__} (CPUExecutionProvider), SQLite {sqlite3.sqlite_version}")


def build_model(workdir: Path) -> Path:
    """A full-size RamanNet exported to fp32 ONNX with its contract (untrained weights)."""
    from _models import random_run

    from export.onnx_export import export_run

    _, run, _ = random_run(workdir, L, CLASSES)
    return export_run(run, workdir / "ramannet.onnx", precision="fp32")

class Daemon:
    """`ramanedge serve` in a subprocess with its HTTP API on a free loopback port."""

    def __init__(self, args: list[str]) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ramanedge", "serve", "--http", "127.0.0.1:0", "--provider", "cpu", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        self.url = ""
        self.ready_line = ""
        self.log: list[str] = []
        got = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                if line.startswith("ramanedge serve: ready"):
                    m = re.search(r"(http://[\d.]+:\d+)", line)
                    self.url = m.group(1) if m else ""
                    self.ready_line = line.strip()
                    got.set()

        threading.Thread(target=pump, daemon=True).start()
        if not got.wait(120):
            self.stop()
            raise RuntimeError("daemon did not start:\n" + "".join(self.log))

    def wait_ready(self) -> float:
        """Seconds from spawn until GET /readyz answered 200."""
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.002)

    def readyz(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/readyz", timeout=10) as r:
            return dict(json.loads(r.read()))

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            return str(r.read().decode())

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the daemon, MB."""
        vals = {}
        with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as f:
            for ln in f:
                if ln.startswith(("VmRSS", "VmHWM")):
                    vals[ln.split(":")[0]] = int(ln.split()[1]) / 1024
        return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)

    def finish(self) -> dict[str, Any]:
        """Memory at the end of the run, then SIGTERM: ``rss_mb``, ``hwm_mb`` and the ``exit`` status."""
        rss, hwm = self.rss_mb()
        return {"rss_mb": rss, "hwm_mb": hwm, "exit": self.stop()}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=10)
        try:
            return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _query(db: Path, sql: str) -> list[Any]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _wait_count(db: Path, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _count(db) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_count(db)} of {n} records after {timeout_s} s")
        time.sleep(0.05)


def bench_startup(model: Path, tmp: Path, rounds: int, *, device: bool = False) -> dict[str, Any]:
    """Spawn -> /readyz 200; with ``device`` a simulated instrument on a pty is a source (its axis's
    resampling operator is built before ready)."""
    from device_drivers.sim import SimConfig, SimulatedInstrument

    times, reported = [], []
    for k in range(rounds):
        sim = SimulatedInstrument(SimConfig(classes=CLASSES, rate_hz=10.0), transport="pty").start() if device else None
        try:
            extra = ["--source", sim.url] if sim is not None else []
            d = Daemon(["--model", str(model), "--db", str(tmp / f"startup{k}{device}.sqlite"), *extra])
            times.append(d.wait_ready())
            m = re.search(r"ready in ([\d.]+) s", d.ready_line)
            reported.append(float(m.group(1)) if m else float("nan"))
            d.stop()
        finally:
            if sim is not None:
                sim.stop()
    return {"spawn_to_readyz_s": times, "median_s": float(np.median(times)), "max_s": float(np.max(times)),
            "self_reported_median_s": float(np.median(reported))}


def _write_csv_files(stage: Path, n: int, *, preamble: str = "") -> None:
    from spectral_core.synth import SyntheticCatalog, instrument_axis

    axis = instrument_axis(1024)
    cat = SyntheticCatalog(CLASSES, 0)
    rng = np.random.default_rng(0)
    templates = [cat.clean(c, axis) for c in range(CLASSES)]
    head = preamble + "wavenumber,intensity\n"
    for i in range(n):
        y = 100 + 1500 * templates[i % CLASSES] + rng.normal(0, 15, axis.size)
        (stage / f"s{i:06d}.csv").write_text(head + "".join(f"{a:.5f},{v:.2f}\n" for a, v in zip(axis, y, strict=True)))


READERS = 2
HEADER = "##NAMES=Sample 17\n##INSTRUMENT=QE-Pro 785 nm\n##INTEGRATION_TIME_US=100000\n"


def bench_throughput(model: Path, tmp: Path, n: int, *, busy_cores: int = 0, preamble: str = "") -> dict[str, Any]:
    """Files/s through a drop folder; ``busy_cores`` other processes spin on the CPU meanwhile; ``preamble``
    starts every file (instrument header lines)."""
    stage, drop = tmp / "stage", tmp / "drop"
    stage.mkdir()
    drop.mkdir()
    _write_csv_files(stage, n, preamble=preamble)
    db = tmp / "throughput.sqlite"
    d = Daemon(["--model", str(model), "--source", f"watch://{drop}", "--db", str(db), "--settle", "0.02",
                "--poll", "0.5", "--max-batch", "64", "--watch-readers", str(READERS)])
    d.wait_ready()
    events = [src.get("events_via") for src in d.readyz().get("sources", []) if "events_via" in src]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_cores)]
    try:
        mover = subprocess.Popen([sys.executable, "-c", (
            "import os, sys\n"
            "src, dst = sys.argv[1], sys.argv[2]\n"
            "for name in sorted(os.listdir(src)):\n"
            "    os.rename(os.path.join(src, name), os.path.join(dst, name))\n"
        ), str(stage), str(drop)])
        mover.wait(600)
        _wait_count(db, n, 900)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    end = d.finish()
    rows = _query(db, "SELECT received_at, completed_at, read_ms, preprocess_ms, inference_ms, queue_ms, batch_size, "
                      "status FROM results ORDER BY completed_at")
    rec = np.array([r[0] for r in rows])
    comp = np.array([r[1] for r in rows])
    span = float(comp.max() - rec.min())
    lo, hi = np.quantile(comp, [0.1, 0.9])
    steady = 0.8 * len(rows) / float(hi - lo) if hi > lo else float("nan")
    batches = np.array([r[6] or 1 for r in rows], dtype=float)
    return {
        "files": n, "ok": sum(r[7] == "ok" for r in rows), "files_per_s": len(rows) / span,
        "steady_files_per_s": steady, "read_ms_mean": float(np.mean([r[2] for r in rows])),
        "preprocess_ms_per_file": float(np.mean([r[3] / b for r, b in zip(rows, batches, strict=True)])),
        "inference_ms_per_file": float(np.mean([r[4] / b for r, b in zip(rows, batches, strict=True)])),
        "batch_mean": float(batches.mean()), **end,
        "events_via": ",".join(str(e) for e in events) or "?", "busy_cores": busy_cores,
    }


def bench_backlog(model: Path, tmp: Path, n: int) -> dict[str, Any]:
    """``n`` files already waiting when the daemon starts (it was down): spawn -> last record, and memory."""
    drop = tmp / "backlog"
    drop.mkdir()
    _write_csv_files(drop, min(n, 200))
    names = sorted(drop.iterdir())
    for i in range(len(names), n):
        shutil.copyfile(names[i % len(names)], drop / f"s{i:06d}.csv")
    db = tmp / "backlog.sqlite"
    d = Daemon(["--model", str(model), "--source", f"watch://{drop}", "--db", str(db), "--max-batch", "64",
                "--watch-readers", str(READERS)])
    _wait_count(db, n, 900)
    took = time.monotonic() - d.t0
    return {"files": n, "spawn_to_last_s": took, "files_per_s": n / took, **d.finish()}


def _hist_fraction(metrics: str, stage: str, le: str) -> tuple[float, int]:
    cnt = re.search(rf'ramanedge_latency_seconds_count{{stage="{stage}"}} (\d+)', metrics)
    b = re.search(rf'ramanedge_latency_seconds_bucket{{stage="{stage}",le="{le}"}} (\d+)', metrics)
    total = int(cnt.group(1)) if cnt else 0
    return (int(b.group(1)) / total if b and total else float("nan")), total


def bench_latency(model: Path, tmp: Path, n: int, rate: float) -> dict[str, Any]:
    from device_drivers.sim import SimConfig, SimulatedInstrument

    db = tmp / "latency.sqlite"
    with SimulatedInstrument(SimConfig(classes=CLASSES, rate_hz=rate, count=n, seed=5), transport="pty") as sim:
        d = Daemon(["--model", str(model), "--source", sim.url, "--db", str(db)])
        d.wait_ready()
        _wait_count(db, n, n / rate * 3 + 60)
        metrics = d.metrics()
        end = d.finish()
    rows = _query(db, "SELECT total_ms, read_ms, preprocess_ms, inference_ms, queue_ms, batch_size FROM results "
                      "WHERE status = 'ok' ORDER BY id")
    total = np.array([r[0] for r in rows])
    within5, observed = _hist_fraction(metrics, "total", "0.005")
    within2, _ = _hist_fraction(metrics, "total", "0.002")
    return {
        "spectra": len(rows), "rate_hz": rate, "p50_ms": float(np.percentile(total, 50)),
        "p90_ms": float(np.percentile(total, 90)), "p99_ms": float(np.percentile(total, 99)),
        "max_ms": float(total.max()), "mean_batch": float(np.mean([r[5] for r in rows])),
        "preprocess_ms_mean": float(np.mean([r[2] for r in rows])),
        "inference_ms_mean": float(np.mean([r[3] for r in rows])),
        "committed_within_5ms": within5, "committed_within_2ms": within2, "observed": observed,
        **end,
    }


def render(res: dict[str, Any], cmd: str) -> str:
    s, sd, t, la = res["startup"], res["startup_device"], res["throughput"], res["latency"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok = lambda good: "met" if good else "**missed**"  # noqa: E731
    rss_max = res["hwm_all"]
    rss_steady = res["rss_all"]
    lr = ", ".join(f"{v:.2f}" for v in res["latency_rounds"])
    tr = ", ".join(f"{v:.0f}" for v in res["throughput_rounds"])
    lb, la_ = res["load_before"], res["load_after"]
    lines = [
        SECTION,
        "",
        f"Measured {when} by `{cmd}` on {res['machine']}.",
        "",
        f"Load average {lb[0]:.1f} before and {la_[0]:.1f} after the main rounds, on 2 cores. The benchmark's own "
        "daemon, mover and instrument processes count in it (about 1 to 1.5); more means other work shared the "
        "machine and the numbers are pessimistic. The busy-core rounds below come after and load it on purpose.",
        "",
        f"Model: full-size RamanNet ({L} points, {CLASSES} classes, paper defaults), fp32 ONNX, 1 intra-op thread. "
        "The daemon is a separate process (`ramanedge serve`, CPU provider, SQLite ledger in WAL mode, "
        "synchronous=NORMAL, HTTP on loopback); load is generated by other processes.",
        "",
        "| measure | target | result | |",
        "|---|---:|---:|---|",
        f"| start-up, spawn -> /readyz 200, HTTP only (median of {len(s['spawn_to_readyz_s'])}) | <= 2 s | "
        f"{s['median_s']:.2f} s (max {s['max_s']:.2f} s) | {ok(s['median_s'] <= 2)} |",
        f"| start-up with an instrument on a pty (its operator built before ready) | <= 2 s | "
        f"{sd['median_s']:.2f} s (max {sd['max_s']:.2f} s) | {ok(sd['median_s'] <= 2)} |",
        f"| file-drop throughput, {t['files']} CSV files (1024 points each), median round | >= 1,000 files/s | "
        f"{t['files_per_s']:.0f} files/s (steady {t['steady_files_per_s']:.0f}; rounds: {tr}) | "
        f"{ok(t['files_per_s'] >= 1000)} |",
        f"| latency frame received -> committed at {la['rate_hz']:.0f} spectra/s, p99 ({la['spectra']} spectra), "
        f"median round | <= 5 ms | {la['p99_ms']:.2f} ms (p50 {la['p50_ms']:.2f}, p90 {la['p90_ms']:.2f}, "
        f"max {la['max_ms']:.1f}; p99 of each round: {lr}) | {ok(la['p99_ms'] <= 5)} |",
        f"| resident memory of the daemon, VmRSS at the end of a run (largest) | <= 200 MB | {rss_steady:.0f} MB | "
        f"{ok(rss_steady <= 200)} |",
        f"| resident memory, peak VmHWM (reached while building a cubic resampling operator) | <= 200 MB | {rss_max:.0f} MB | "
        f"{ok(rss_max <= 200)} |",
        "",
        "Details:",
        "",
        f"- Start-up as the daemon reports it (model load + self-test + ledger + HTTP + sources): median "
        f"{s['self_reported_median_s']:.2f} s HTTP only, {sd['self_reported_median_s']:.2f} s with an instrument; "
        "the rest of spawn -> ready is the interpreter and imports (the root CLI configures only the chosen "
        "command). With an instrument, most of the difference is importing "
        "scipy.interpolate and building the cubic-spline operator for the instrument's axis (shared "
        "preprocessing; once per axis).",
        "- Memory: the shared preprocessing builds the cubic-spline operator of an instrument axis in blocks of "
        "128 columns (the spline of a whole identity matrix once held a (4, n, n) coefficient array, about "
        "80 MB for 1024 pixels, and pushed the peak to ~257 MB).",
        f"- File drop (events via {t['events_via']}): claim rename + read + SHA-256 + parsing the bytes with the "
        f"shared reader (`spectral_core.io.read_spectrum`) took {t['read_ms_mean']:.2f} ms of wall time a file in "
        f"each of the {READERS} reader threads (they overlap; the time includes waiting for the GIL), "
        f"preprocessing {t['preprocess_ms_per_file']:.3f} ms and inference {t['inference_ms_per_file']:.3f} ms "
        f"(amortised over micro-batches of {t['batch_mean']:.1f} on average). VmRSS at the end "
        f"{t['rss_mb']:.0f} MB, peak {t['hwm_mb']:.0f} MB.",
        f"- The same burst of files that start with three instrument header lines (`##KEY=VALUE`, as RRUFF and "
        f"instrument exports write them): {res['header']['files_per_s']:.0f} files/s (steady "
        f"{res['header']['steady_files_per_s']:.0f}).",
        "- The same burst with other processes spinning on the CPU: "
        + "; ".join(f"{b['busy_cores']} core{'s' if b['busy_cores'] > 1 else ''} busy: {b['files_per_s']:.0f} files/s "
                    f"(steady {b['steady_files_per_s']:.0f})" for b in res["busy"])
        + ". With one core taken the daemon's threads share the other one, where handing the GIL over is cheaper "
        "than across cores, so the number can even rise; with both taken the daemon gets about half the machine.",
        f"- Backlog: {res['backlog']['files']:,} files already waiting when the daemon starts (it was down): "
        f"spawn -> last record {res['backlog']['spawn_to_last_s']:.1f} s ({res['backlog']['files_per_s']:.0f} "
        f"files/s, start-up included); VmRSS at the end {res['backlog']['rss_mb']:.0f} MB, peak "
        f"{res['backlog']['hwm_mb']:.0f} MB (at most 256 claims are queued for the readers; the rest of the "
        "backlog is only names).",
        "- History: the first version of the drop-folder source measured 346 files/s here under load and 377-385 "
        "files/s on the quiet machine (2026-11-25 15:52). A profile (py-spy, strace) showed watchdog grouping move "
        "events with a scan per event, every pending file re-examined on each wake, and files queued for a reader "
        "stat'ed again every settle interval (26 stats a file); the source now reads inotify itself, keeps a "
        "first-in first-out queue of due checks (two stats a file), parses the bytes it hashed, and the "
        "delimited reader parses plain files as one block (586 -> 233 us for a 1024-point CSV).",
        f"- Latency: the daemon's own histogram (taken after the COMMIT returns) has {la['committed_within_5ms']:.1%} "
        f"of {la['observed']} records committed within 5 ms and {la['committed_within_2ms']:.1%} within 2 ms; the "
        f"percentiles above are the ledger's `total_ms` (the timestamp written inside the transaction). Mean "
        f"preprocessing {la['preprocess_ms_mean']:.3f} ms, inference {la['inference_ms_mean']:.3f} ms, micro-batch "
        f"{la['mean_batch']:.2f}. VmRSS {la['rss_mb']:.0f} MB, peak {la['hwm_mb']:.0f} MB.",
    ]
    if t["files_per_s"] < 1000:
        lines.append(
            "- Throughput is bound by the Python work per file in the daemon (claim, read, hash, parse, commit, "
            "move, under the GIL), not by the model; whatever else runs on the two cores (see the load average "
            "above) comes straight off it."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an exported ONNX model (default: build a full-size RamanNet)")
    ap.add_argument("--files", type=int, default=5000, help="files for the throughput run")
    ap.add_argument("--spectra", type=int, default=2000, help="spectra for the latency run")
    ap.add_argument("--backlog", type=int, default=20000, help="files waiting in the drop folder at start-up")
    ap.add_argument("--rate", type=float, default=100.0, help="spectra/s for the latency run")
    ap.add_argument("--startup-rounds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="latency and throughput rounds (median reported)")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("onnxscript", "onnx_ir", "root", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    cmd = "python bench/bench_runtime.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    tmp = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        model = args.model or build_model(tmp)
        res: dict[str, Any] = {"machine": machine()}
        res["load_before"] = os.getloadavg()
        res["startup"] = bench_startup(model, tmp, args.startup_rounds)
        res["startup_device"] = bench_startup(model, tmp, args.startup_rounds, device=True)
        print(json.dumps({"startup": res["startup"], "startup_device": res["startup_device"]}), flush=True)
        lat, thr = [], []
        for k in range(args.rounds):
            sub = tmp / f"round{k}"
            sub.mkdir()
            lat.append(bench_latency(model, sub, args.spectra, args.rate))
            print(json.dumps({"latency": lat[-1]}), flush=True)
            thr.append(bench_throughput(model, sub, args.files))
            print(json.dumps({"throughput": thr[-1]}), flush=True)
        # the round with the median result is reported in full; every round's headline is listed
        res["latency"] = sorted(lat, key=lambda r: r["p99_ms"])[len(lat) // 2]
        res["throughput"] = sorted(thr, key=lambda r: r["files_per_s"])[len(thr) // 2]
        sub = tmp / "header"
        sub.mkdir()
        res["header"] = bench_throughput(model, sub, args.files, preamble=HEADER)
        print(json.dumps({"throughput_header": res["header"]}), flush=True)
        res["load_after"] = os.getloadavg()
        # the same burst while other processes keep one, then both cores busy (an edge box is rarely idle)
        res["busy"] = []
        for k in (1, 2):
            sub = tmp / f"busy{k}"
            sub.mkdir()
            res["busy"].append(bench_throughput(model, sub, args.files, busy_cores=k))
            print(json.dumps({"throughput_busy": res["busy"][-1]}), flush=True)
        sub = tmp / "backlog"
        sub.mkdir()
        res["backlog"] = bench_backlog(model, sub, args.backlog)
        print(json.dumps({"backlog": res["backlog"]}), flush=True)
        res["latency_rounds"] = [r["p99_ms"] for r in lat]
        res["throughput_rounds"] = [r["files_per_s"] for r in thr]
        every = [*lat, *thr, res["header"], *res["busy"], res["backlog"]]
        res["hwm_all"] = max(r["hwm_mb"] for r in every)
        res["rss_all"] = max(r["rss_mb"] for r in every)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = render(res, cmd)
    return publish(SECTION, text, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
