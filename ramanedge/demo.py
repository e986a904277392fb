"""``make demo``: the main job end to end on the embedded default, each step a real ``ramanedge`` command.

synthetic instrument data -> info -> train -> export -> validate -> a simulated instrument on a real
pseudo-terminal streaming spectra to ``ramanedge serve`` -> every result scored against the simulator's
ground truth. The commands are printed as they run, so the demo doubles as a tutorial.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

__all__ = ["main"]

CLASSES = 8
PIXELS = 1024  # the simulated instrument's detector, a non-uniform cm^-1 axis resampled onto the model axis
MODEL_AXIS = "400:1800:1000"


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _ramanedge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ramanedge", *args]
    print("$ ramanedge " + " ".join(shlex.quote(a) for a in args), flush=True)
    r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE)
    if r.stdout:
        print(r.stdout.rstrip(), flush=True)
    if check and r.returncode != 0:
        raise SystemExit(f"demo: `ramanedge {args[0]}` failed with exit status {r.returncode}")
    return r


def _score(db: Path, truth_file: Path) -> dict[str, object]:
    truth = {}
    for line in truth_file.read_text().splitlines():
        rec = json.loads(line)
        truth[int(rec["seq"])] = rec
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM results ORDER BY id")]
    con.close()
    results = [r for r in rows if r.get("status") == "ok"]
    errors = [r for r in rows if r.get("status") != "ok"]
    correct = unknown = scored = 0
    for r in results:
        seq = r.get("seq")
        t = truth.get(int(seq)) if seq is not None else None
        if t is None:
            continue
        scored += 1
        correct += int(r.get("class") == t.get("class_name"))
        unknown += int(bool(r.get("unknown")))
    return {
        "emitted": len(truth),
        "results": len(results),
        "errors": len(errors),
        "error_reasons": dict(Counter(str(e.get("error")) for e in errors)),
        "scored": scored,
        "accuracy": round(correct / scored, 4) if scored else None,
        "flagged_unknown": unknown,
        "provider": results[0].get("provider") if results else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="demo_out", help="working folder (recreated)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--stream", type=int, default=300, help="spectra the simulated instrument emits")
    ap.add_argument("--rate", type=float, default=100.0, help="simulated instrument rate, spectra/s")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    _say("1. synthetic instrument data (train and an independent test set, same classes)")
    _ramanedge("synth", "--out", str(out / "train.npz"), "--classes", str(CLASSES), "--per-class", "150",
               "--points", str(PIXELS), "--instrument-axis", "--seed", "0")
    _ramanedge("synth", "--out", str(out / "test.npz"), "--classes", str(CLASSES), "--per-class", "40",
               "--points", str(PIXELS), "--instrument-axis", "--seed", "1")
    _ramanedge("info", str(out / "test.npz"))

    _say("2. train RamanNet (cross-entropy + semi-hard triplet loss)")
    _ramanedge("train", "--data", str(out / "train.npz"), "--out", str(out / "run"), "--force", "--quiet",
               "--epochs", str(args.epochs), "--target-axis", MODEL_AXIS, "--normalise", "minmax")

    _say("3. export one ONNX file carrying classes, axis, preprocessing and hashes")
    _ramanedge("export", str(out / "run"), "--out", str(out / "model.onnx"))

    _say("4. validate: onnxruntime vs PyTorch on the independent test spectra")
    _ramanedge("validate", str(out / "model.onnx"), "--run", str(out / "run"), "--data", str(out / "test.npz"))

    _say("5. a simulated instrument on a pseudo-terminal, classified by the daemon through real pyserial")
    truth = out / "truth.jsonl"
    truth.unlink(missing_ok=True)
    db = out / "results.sqlite"
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    sim_args = ["simulate", "--pty", "--protocol", "framed", "--classes", str(CLASSES), "--pixels", str(PIXELS),
                "--rate", str(args.rate), "--count", str(args.stream), "--seed", "2", "--truth", str(truth)]
    print("$ ramanedge " + " ".join(sim_args) + " &", flush=True)
    sim = subprocess.Popen([sys.executable, "-m", "ramanedge", *sim_args], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        device = sim.stdout.readline().strip()
        if not device:
            raise SystemExit("demo: the simulator did not report its device path")
        _ramanedge("serve", "--model", str(out / "model.onnx"), "--require-validated",
                   "--source", f"serial://{device}?protocol=framed", "--count", str(args.stream),
                   "--db", str(db), "--jsonl", str(out / "results.jsonl"), "--http", "off")
    finally:
        sim.terminate()
        sim.wait(timeout=10)

    _say("6. every emitted spectrum has one result (or one recorded error), scored against the ground truth")
    summary = _score(db, truth)
    print(json.dumps(summary, indent=2))
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; everything is in {out}/")
    ok = summary["results"] == summary["emitted"] and summary["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
