"""End to end: a simulated instrument on a real pty -> `ramanedge serve` (a real process) -> the ledger.

Every spectrum the simulator emitted has exactly one record; the corrupted and the malformed ones are recorded
errors with their seq, and the classes are scored against the simulator's ground truth. The same invariant,
records (ok + error) == spectra sent, is checked at the DeviceSource with random faults on both protocols.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from _er_daemon import query_ledger

from device_drivers.sim import SimConfig, SimulatedInstrument
from edge_runtime.records import Frame
from edge_runtime.sources import DeviceSource
from spectral_core.io import write_npz
from spectral_core.synth import synth_dataset

N = 150
REPO = Path(__file__).resolve().parents[2]


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


def test_simulate_from_a_data_set_rehearses_the_served_model(model: Path, tmp_path: Path, serve) -> None:
    """`simulate --from` a labelled .npz (the model's task, fresh samples) -> `serve` over TCP: the served classes
    match the file's labels, and the malformed frame is an error record with its seq."""
    n = 40
    ds = synth_dataset(4, 10, 300, seed=11)  # the tiny model's classes and axis, other noise
    assert ds.y is not None
    data = write_npz(ds, tmp_path / "rehearsal.npz")
    truth = tmp_path / "truth.jsonl"
    sim = subprocess.Popen(
        [sys.executable, "-m", "ramanedge", "simulate", "--tcp", "127.0.0.1:0", "--from", str(data), "--count",
         str(n), "--rate", "100", "--fault", "short@5", "--fault", "crc@9", "--truth", str(truth)],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = tmp_path / "results.sqlite"
    try:
        assert sim.stdout is not None
        where = sim.stdout.readline().strip()
        d = serve(["--model", str(model), "--source", f"tcp://{where}", "--db", str(db), "--http", "off",
                   "--provider", "cpu"]).wait_ready()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and d.proc.poll() is None:
            if len(query_ledger(db, "SELECT id FROM results")) >= n:
                break
            time.sleep(0.1)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.communicate()
    sent = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(sent) == n
    assert [r["class_name"] for r in sent] == [ds.classes[int(ds.y[r["index"]])] for r in sent], "labels = truth"
    rows = query_ledger(db, "SELECT seq, status, class, error FROM results ORDER BY id")
    assert len(rows) == n and sorted(r[0] for r in rows) == list(range(n)), "records (ok + error) == sent"
    errors = {r[0]: r[3] for r in rows if r[1] == "error"}
    assert sorted(errors) == [5, 9] and "150 pixels" in errors[5] and "CRC" in errors[9], errors
    ok = [r for r in rows if r[1] == "ok"]
    label = {r["seq"]: ds.classes[int(ds.y[r["index"]])] for r in sent}
    correct = sum(label[r[0]] == r[2] for r in ok)
    assert correct / len(ok) > 0.6, f"accuracy {correct / len(ok):.2f} against the file's labels (chance 0.25)"


def test_device_source_bounds_a_driver_error_message() -> None:
    """A link error whose message quotes what the device sent (here 1 MB) is recorded cut, with its size."""
    frames: list[Frame] = []
    src = DeviceSource("test://")

    class _Dev:
        info = None
        stats: ClassVar[dict[str, int]] = {}

        def events(self):  # type: ignore[no-untyped-def]
            yield from ()
            raise OSError("device said: " + "x" * 1_000_000)

        def close(self) -> None:
            src.stop()

    src._dev = _Dev()
    src.start(frames.append)
    src.join(10)
    assert src.finished and len(frames) == 1 and frames[0].error is not None
    kind, reason = frames[0].error
    assert kind == "device" and len(reason.encode()) <= 2000 and reason.endswith(" bytes]") and "[cut 99" in reason
