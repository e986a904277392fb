"""Ledger and drop-folder units: the exactly-once key, crash recovery paths, temp files and half-written files."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from edge_runtime.engine import Frame, Outcome
from edge_runtime.ledger import Ledger
from edge_runtime.sources import WatchSource
from spectral_core.synth import instrument_axis

SRC = "watch:///drop"


def _ok(ref: str, sha: str | None) -> Outcome:
    f = Frame(SRC, ref, None, None, content_sha256=sha, metadata={"seq": 3, "device_serial": "S1", "lens": "x"})
    return Outcome(frame=f, ok=True, class_name="a", class_index=0, confidence=0.9, probabilities=[0.9, 0.1],
                   unknown=False, inference_s=0.001, batch_size=1)


def test_ledger_records_every_field_and_never_a_drop_twice(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite", model_sha256="m" * 64, preprocess_hash="p" * 64, provider="CPU")
    first = [_ok("a.csv", "h1"), _ok("b.csv", "h2"), _ok("seq=1", None), _ok("seq=1", None)]
    recs = led.commit(first)
    assert [o.record_id for o in first] == [1, 2, 3, 4] and len(recs) == 4
    again = [_ok("a.csv", "h1"), _ok("a.csv", "h-other")]  # same drop again; same name, new content
    recs = led.commit(again)
    assert again[0].duplicate and again[0].record_id == 1
    assert not again[1].duplicate and again[1].record_id == 5 and len(recs) == 1
    assert led.count() == 5
    hit = led.lookup(SRC, "a.csv", "h1")
    assert hit is not None and hit.id == 1 and hit.status == "ok"
    assert led.lookup(SRC, "a.csv", "nope") is None
    r = led.since(0, 1)[0]
    assert r["probabilities"] == [0.9, 0.1] and r["unknown"] is False and r["seq"] == 3
    assert r["device_serial"] == "S1" and r["metadata"] == {"lens": "x"} and r["model_sha256"] == "m" * 64
    assert r["completed_at"] >= r["received_at"] and r["inference_ms"] == 1.0
    assert led._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    led.close()
    assert Ledger(tmp_path / "l.sqlite").count() == 5  # durable across reopen


def _csv(path: Path) -> bytes:
    axis = instrument_axis(1024)
    data = "".join(f"{a:.4f},{100 + 50 * np.sin(a / 40):.2f}\n" for a in axis).encode()
    path.write_bytes(data)
    return data


def _run_source(src: WatchSource, until, timeout_s: float = 20.0) -> list[Frame]:
    got: list[Frame] = []
    src.start(got.append)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(got):
            time.sleep(0.02)
    finally:
        src.stop()
        src.join(5)
    return got


def test_recovery_moves_on_a_file_already_recorded_and_classifies_one_that_was_not(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "processing").mkdir(parents=True)
    url = f"watch://{drop}"
    led = Ledger(tmp_path / "l.sqlite")
    data = _csv(drop / "processing" / "recorded.csv")
    o = _ok("recorded.csv", hashlib.sha256(data).hexdigest())
    o.frame.source = url
    led.commit([o])  # crash after the commit, before the move
    _csv(drop / "processing" / "claimed.csv")  # crash after the claim, before the commit
    src = WatchSource(url, led, settle_s=0.05, poll_s=0.1)
    got = _run_source(src, lambda g: len(g) >= 1)
    assert [f.ref for f in got] == ["claimed.csv"] and got[0].error is None and got[0].axis is not None
    assert (drop / "done" / "recorded.csv").exists() and src.already_recorded == 1 and src.recovered == 2
    assert led.count() == 1


def test_temp_files_are_ignored_and_half_written_files_wait(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    for name in ("a.csv.part", "b.tmp", ".hidden.csv", "c.csv~"):
        _csv(drop / name)
    writing = drop / "slow.csv"
    full = _csv(tmp_path / "full.csv")
    stop = threading.Event()

    def slow_writer() -> None:
        with open(writing, "wb") as f:
            for k in range(0, len(full), len(full) // 10):
                f.write(full[k : k + len(full) // 10])
                f.flush()
                os.fsync(f.fileno())
                if stop.wait(0.05):
                    return

    t = threading.Thread(target=slow_writer)
    t.start()
    src = WatchSource(f"watch://{drop}", led, settle_s=0.3, poll_s=0.1)
    got = _run_source(src, lambda g: len(g) >= 1)
    stop.set()
    t.join()
    assert [f.ref for f in got] == ["slow.csv"]
    assert got[0].error is None, got[0].error  # read only once complete
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == [".hidden.csv", "a.csv.part", "b.tmp", "c.csv~"]


def test_quarantine_writes_the_reason_beside_the_file(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    (drop / "junk.csv").write_bytes(b"\x00\x01garbage")
    src = WatchSource(f"watch://{drop}", led, settle_s=0.05, poll_s=0.1, use_events=False)
    got = _run_source(src, lambda g: len(g) >= 1)
    f = got[0]
    assert f.error is not None and f.error[0] == "read"
    o = Outcome.failed(f, *f.error)
    led.commit([o])
    assert f.on_done is not None
    f.on_done(o)
    info = json.loads((drop / "quarantine" / "junk.csv.error.json").read_text())
    assert info["record_id"] == o.record_id and "binary" in info["reason"] and info["kind"] == "read"
    assert (drop / "quarantine" / "junk.csv").read_bytes() == b"\x00\x01garbage"
