"""What a well-kept HTTP server would cost the daemon, measured beside the shipped one in one run.

For each variant, ``ramanedge serve`` (a full-size RamanNet, CPU, HTTP on loopback) is started REPEATS times,
interleaved, and measured:

1. start-up: process spawn -> ``GET /readyz`` answers 200;
2. RSS (VmRSS) once ready, and after 50 concurrent clients made 20 requests each;
3. with 300 idle connections held open: the daemon's open descriptors (shipped server only: the bound).

Variants: ``stdlib`` is the shipped server (``edge_runtime/httpapi.py``). ``+uvicorn/starlette`` and
``+cheroot`` run the same daemon after importing those libraries first (from ``--candidates DIR``, e.g.
``pip install --target DIR uvicorn starlette cheroot``): the cost of carrying the dependency in the process,
a lower bound for a port to it (the server loop itself is not swapped in).

Usage: python bench/bench_http_server.py [--candidates DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime import REPO, build_model, machine

PRELUDE = ("import sys, runpy; sys.path.append({cand!r}); {imports}; sys.argv = ['ramanedge'] + {argv!r}; "
           "runpy.run_module('ramanedge', run_name='__main__', alter_sys=True)")
VARIANTS = {
    "stdlib (shipped)": "pass",
    "+uvicorn/starlette": "import uvicorn, uvicorn.server, starlette.applications, starlette.routing, "
                          "starlette.responses",
    "+cheroot": "import cheroot.wsgi",
}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _get(url: str, path: str) -> int:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.request("GET", path)
        r = con.getresponse()
        r.read()
        return r.status
    finally:
        con.close()


def run_once(model: Path, workdir: Path, imports: str, cand: str) -> dict[str, float]:
    argv = ["serve", "--model", str(model), "--db", str(workdir / "r.sqlite"), "--http", "127.0.0.1:0",
            "--provider", "cpu", "--model-poll", "0"]
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE.format(cand=cand, imports=imports, argv=argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    url = ""
    got = threading.Event()

    def pump() -> None:
        nonlocal url
        assert proc.stderr is not None
        for line in proc.stderr:
            m = re.search(r"ready in .*(http://[\d.]+:\d+)", line)
            if line.startswith("ramanedge serve: ready") and m:
                url = m.group(1)
                got.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not got.wait(120):
            raise RuntimeError("the daemon did not start")
        while _get(url, "/readyz") != 200:
            time.sleep(0.005)
        ready_s = time.monotonic() - t0
        rss_ready = _rss_mb(proc.pid)
        statuses: list[int] = []

        def client() -> None:
            for _ in range(20):
                statuses.append(_get(url, "/readyz"))

        threads = [threading.Thread(target=client) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss_load = _rss_mb(proc.pid)
        u = urlsplit(url)
        idle = []
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((u.hostname, u.port))
            idle.append(s)
        time.sleep(2.0)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        for s in idle:
            s.close()
        return {"ready_s": ready_s, "rss_ready_mb": rss_ready, "rss_load_mb": rss_load, "fds_300_idle": fds,
                "ok": float(statuses.count(200) == len(statuses))}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", default="", help="folder with uvicorn, starlette, cheroot (pip --target)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    variants = dict(VARIANTS) if args.candidates else {"stdlib (shipped)": "pass"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_model(work)
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
        for i in range(args.repeats):
            for name, imports in variants.items():
                d = work / f"{i}-{len(rows[name])}-{abs(hash(name))}"
                d.mkdir()
                rows[name].append(run_once(model, d, imports, args.candidates))
    print(f"machine: {machine()}")
    print(f"{'variant':22} {'ready s (median)':>17} {'RSS ready MB':>13} {'RSS after load MB':>18} "
          f"{'fds, 300 idle':>14} all 200")
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:22} {med['ready_s']:17.3f} {med['rss_ready_mb']:13.1f} {med['rss_load_mb']:18.1f} "
              f"{med['fds_300_idle']:14.0f} {'yes' if all(r['ok'] for r in runs) else 'NO'}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
