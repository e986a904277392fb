"""End to end: a simulated instrument on a real pty -> `ramanedge serve` (a real process) -> the ledger.

Every spectrum the simulator emitted has exactly one record; the corrupted and the malformed ones are recorded
errors with their seq, and the classes are scored against the simulator's ground truth. The same invariant,
records (ok + error) == spectra sent, is checked at the DeviceSource with random faults on both protocols.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from _er_daemon import query_ledger

from device_drivers.sim import SimConfig, SimulatedInstrument
from edge_runtime.engine import Frame
from edge_runtime.sources import DeviceSource

N = 150


def test_pty_instrument_to_ledger_every_spectrum_exactly_once(model: Path, tmp_path: Path, serve) -> None:
    cfg = SimConfig(classes=4, catalog_seed=0, seed=21, rate_hz=100.0, count=N,
                    faults={7: "garbage", 40: "crc", 60: "short", 90: "saturate"})
    db = tmp_path / "results.sqlite"
    jsonl = tmp_path / "out.jsonl"
    with SimulatedInstrument(cfg, transport="pty") as sim:
        d = serve(["--model", str(model), "--source", sim.url, "--db", str(db), "--jsonl", str(jsonl),
                   "--http", "off", "--provider", "cpu"]).wait_ready()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and d.proc.poll() is None:
            if sim.done.is_set() and len(query_ledger(db, "SELECT id FROM results")) >= N:
                break
            time.sleep(0.1)
        truth = list(sim.truth)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
    assert len(truth) == N
    delivered = {r.seq: r for r in truth if r.delivered}
    lost = [r.seq for r in truth if not r.delivered]
    assert lost == [40, 60]

    rows = query_ledger(db, "SELECT input_ref, seq, status, class, error_kind, error, device_serial, integration_time_us, "
                     "provider, model_sha256, total_ms, saturated FROM results ORDER BY id")
    ok = [r for r in rows if r[2] == "ok"]
    seqs = [r[1] for r in ok]
    assert sorted(seqs) == sorted(delivered), "every delivered spectrum exactly once"
    assert len(seqs) == len(set(seqs))
    errors = [r for r in rows if r[2] == "error"]
    assert [(r[1], r[4]) for r in errors] == [(40, "device"), (60, "device")], errors
    assert "CRC" in errors[0][5] and "512 pixels, the device has 1024" in errors[1][5]
    assert len(rows) == N, "records (ok + error) == spectra sent"
    correct = sum(delivered[r[1]].class_name == r[3] for r in ok)
    assert correct / len(ok) > 0.6, f"accuracy {correct / len(ok):.2f} (chance 0.25)"
    r0 = ok[0]
    assert r0[6] == cfg.serial and r0[7] == cfg.integration_time_us
    assert r0[8] == "CPUExecutionProvider" and len(r0[9]) == 64 and r0[10] >= 0
    assert any(r[11] for r in ok if r[1] == 90), "the saturated spectrum is flagged"
    assert len(jsonl.read_text().splitlines()) == len(rows)
    assert "stopped (SIGTERM)" in d.log


def test_bad_device_url_fails_start_up(model: Path, tmp_path: Path, serve) -> None:
    d = serve(["--model", str(model), "--source", "serial:///dev/does-not-exist-ramanedge", "--db",
               str(tmp_path / "r.sqlite"), "--http", "off", "--provider", "cpu"])
    rc = d.wait(60)
    assert rc != 0
    assert "does-not-exist" in d.log


@pytest.mark.parametrize("url", ["nope://x", "watch:///definitely/not/here"])
def test_unknown_scheme_or_missing_folder_fails_start_up(model: Path, tmp_path: Path, serve, url: str) -> None:
    d = serve(["--model", str(model), "--source", url, "--db", str(tmp_path / "r.sqlite"), "--http", "off"])
    assert d.wait(60) == 2, d.log
    assert "error" in d.log


@pytest.mark.parametrize(("protocol", "numbered"), [("framed", True), ("ascii", True), ("ascii", False)])
def test_device_source_records_every_spectrum_sent(protocol: str, numbered: bool) -> None:
    """Random faults of every lossy kind: one frame submitted per spectrum sent, the bad ones as errors."""
    n = 80
    cfg = SimConfig(classes=3, seed=5, rate_hz=400.0, pixels=200, protocol=protocol, ascii_seq=numbered, count=n,
                    fault_rate=0.3, random_faults=("crc", "truncate", "short", "nan", "text", "saturate"))
    frames: list[Frame] = []
    lock = threading.Lock()

    def submit(f: Frame) -> None:
        with lock:
            frames.append(f)

    with SimulatedInstrument(cfg, transport="tcp") as sim:
        src = DeviceSource(f"{sim.url}&timeout=0.5&retries=6")
        src.start(submit)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(frames) < n:
            time.sleep(0.02)
        src.stop()
        src.join(10)
        truth = list(sim.truth)
    assert src.finished
    assert len(truth) == n
    bad = {r.seq for r in truth if not r.delivered}
    assert bad, "the seed injects lossy faults"
    assert len(frames) == n, [(f.ref, f.error) for f in frames if f.error]
    assert [f.metadata.get("seq") for f in frames] == list(range(n)), "each spectrum once, in order"
    assert {f.metadata["seq"] for f in frames if f.error is not None} == bad
    assert all(f.error[0] == "device" and f.ref == f"seq={f.metadata['seq']}" for f in frames if f.error)
    assert src.status()["errors"] == len(bad)
