"""Throughput of the framed serial protocol over a real pty: spectra per second for 1000-pixel spectra.

The simulator runs as its own process (``ramanedge simulate --pty --rate 0 --pool 64``: spectra generated up
front so that sampling the synthetic classes is not what is measured); this process opens the pty with the real
driver (``serial://...``: pyserial, FrameParser, CRC, payload decoding, Spectrum construction) and times
``stream()``. A parse-only figure (FrameParser + decode on bytes in memory) shows the protocol's own ceiling.

Writes the "## Serial framing throughput (device_drivers)" section of docs/benchmarks.md (other sections are
left alone). Usage::

    .venv/bin/python bench/bench_serial.py [--count 2000] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import serial
from _docs import cpu_model, publish

from device_drivers import open_device
from device_drivers.framing import FrameParser, MsgType, SampleType, decode_spectrum, encode_frame, encode_spectrum

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Serial framing throughput (device_drivers)"
PIXELS = 1000


def over_pty(dtype: str, count: int) -> dict[str, float]:
    """Stream ``count`` spectra from a simulator process over a pty; spectra/s and frame MB/s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ramanedge", "simulate", "--pty", "--rate", "0", "--pixels", str(PIXELS),
         "--dtype", dtype, "--pool", "64"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        with open_device(f"serial://{path}?timeout=5") as dev:
            gen = dev.stream()
            for _ in range(50):  # warm-up: handshake done, buffers primed
                next(gen)
            t0 = time.perf_counter()
            seqs = [next(gen).metadata["seq"] for _ in range(count)]
            elapsed = time.perf_counter() - t0
            gen.close()
            stats = dev.stats
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    frame_bytes = 12 + 20 + PIXELS * (2 if dtype == "uint16" else 4) + 4
    return {
        "spectra_per_s": count / elapsed,
        "mb_per_s": count * frame_bytes / elapsed / 1e6,
        "lost": float(stats["lost"] + (seqs[-1] - seqs[0] + 1 - len(seqs))),
        "crc_errors": float(stats["crc_errors"]),
    }


def parse_only(dtype: str, count: int) -> float:
    """Spectra/s of FrameParser + decode_spectrum on in-memory bytes fed in 4 KiB reads."""
    rng = np.random.default_rng(0)
    st = SampleType.UINT16 if dtype == "uint16" else SampleType.FLOAT32
    frames = b"".join(
        encode_frame(MsgType.SPECTRUM, i, encode_spectrum(rng.uniform(0, 60000, PIXELS), sample_type=st))
        for i in range(count)
    )
    p = FrameParser()
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(frames), 4096):
        for f in p.feed(frames[i : i + 4096]):
            decode_spectrum(f.payload)
            n += 1
    elapsed = time.perf_counter() - t0
    if n != count:
        raise RuntimeError(f"parsed {n} of {count} frames")
    return count / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000, help="spectra timed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    rows = []
    for dtype in ("uint16", "float32"):
        runs = [over_pty(dtype, args.count) for _ in range(args.rounds)]
        parse = statistics.median(parse_only(dtype, args.count) for _ in range(args.rounds))
        rows.append((dtype, runs, parse))
        print(f"{dtype}: {[round(r['spectra_per_s']) for r in runs]} spectra/s over pty; parse-only {parse:.0f}/s",
              flush=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Measured {now} by `bench/bench_serial.py` on {cpu_model()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}, pyserial {serial.__version__}, "
        f"numpy {np.__version__}.",
        "",
        f"{PIXELS}-pixel spectra streamed by the simulator (its own process, `--rate 0`, pre-generated pool) "
        "through a pseudo-terminal to `open_device('serial://<pty>')` in this process: pyserial reads, "
        "FrameParser (sync, CRC-32), payload decoding and `Spectrum` construction with metadata. "
        f"Median of {args.rounds} rounds of {args.count} spectra after 50 warm-up spectra. "
        "A pty has no baud rate; on a real UART the line rate bounds throughput "
        "(115200 baud 8N1 carries about 11.5 kB/s: about 5 uint16 spectra/s of this size).",
        "",
        "| samples | frame bytes | spectra/s over pty | MB/s | lost | CRC errors | parse-only spectra/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, runs, parse in rows:
        sps = statistics.median(r["spectra_per_s"] for r in runs)
        mbs = statistics.median(r["mb_per_s"] for r in runs)
        lost = int(sum(r["lost"] for r in runs))
        crc = int(sum(r["crc_errors"] for r in runs))
        fb = 12 + 20 + PIXELS * (2 if dtype == "uint16" else 4) + 4
        lines.append(f"| {dtype} | {fb} | {sps:,.0f} | {mbs:.1f} | {lost} | {crc} | {parse:,.0f} |")
    text = "\n".join(lines) + "\n"
    return publish(SECTION, text, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
