"""Writes N spectrum files into a drop folder, as instrument software would (also used by the benchmark).

Usage: python _dropwriter.py DROPDIR N SEED [BAD_EVERY] [SLOW_EVERY]

Good files are two-column CSV on the simulated instrument's axis, written under a temporary ``.part`` name and
renamed, except every SLOW_EVERY-th, which is written in place in two halves with a pause (the daemon must
wait for it to settle). Every BAD_EVERY-th file is bad, cycling through: truncated, NaN, wrong length (a
ragged row), binary junk, empty. A manifest ``DROPDIR/../manifest.json`` lists {name: kind}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from spectral_core.synth import SyntheticCatalog, instrument_axis

BAD_KINDS = ("truncated", "nan", "wrong_length", "junk", "empty")


def _csv(axis: np.ndarray, y: np.ndarray) -> bytes:
    return ("wavenumber,intensity\n" + "".join(f"{a:.5f},{v:.2f}\n" for a, v in zip(axis, y, strict=True))).encode()


def main() -> int:
    drop = Path(sys.argv[1])
    n = int(sys.argv[2])
    seed = int(sys.argv[3])
    bad_every = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    slow_every = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    rng = np.random.default_rng(seed)
    axis = instrument_axis(1024)
    cat = SyntheticCatalog(4, 0)
    templates = [cat.clean(c, axis) for c in range(4)]
    manifest: dict[str, str] = {}
    for i in range(n):
        name = f"spec_{seed}_{i:05d}.csv"
        label = int(rng.integers(0, 4))
        y = 100 + 1500 * templates[label] + rng.normal(0, 15, axis.size)
        data = _csv(axis, y)
        kind = "ok"
        if bad_every and i % bad_every == bad_every - 1:
            kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)]
            if kind == "truncated":
                data = data[: int(len(data) * 0.4) + 3]  # cut mid-line, 40 % of the axis
            elif kind == "nan":
                lines = data.split(b"\n")
                lines[500] = lines[500].split(b",")[0] + b",nan"
                data = b"\n".join(lines)
            elif kind == "wrong_length":
                lines = data.split(b"\n")
                lines[300] = lines[300].split(b",")[0]
                data = b"\n".join(lines)
            elif kind == "junk":
                data = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
            else:
                data = b""
        manifest[name] = kind if kind != "ok" else f"ok:{label}"
        path = drop / name
        if slow_every and i % slow_every == slow_every - 2 and len(data) > 2:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(0.05)
                f.write(data[len(data) // 2 :])
        else:
            tmp = drop / (name + ".part")
            tmp.write_bytes(data)
            os.rename(tmp, path)
    (drop.parent / "manifest.json").write_text(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
