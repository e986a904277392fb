"""``ramanedge devices | acquire | simulate``: the simulator as a real process on a pty, recorded by acquire."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_drivers import read_truth
from ramanedge.cli import main
from spectral_core.io import read_dataset

REPO = Path(__file__).resolve().parents[2]


def _simulator(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ramanedge", "simulate", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_simulate_pty_then_acquire_records_what_was_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.jsonl"
    proc = _simulator("--pty", "--rate", "100", "--pixels", "128", "--count", "6", "--fault", "crc@2",
                      "--truth", str(truth))
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert Path(path).exists()
        out = tmp_path / "rec.npz"
        rc = main(["acquire", "--source", f"serial://{path}?timeout=2", "--count", "5", "--out", str(out)])
        assert rc == 0
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            _stop(proc)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["spectra"] == 5 and summary["stats"]["crc_errors"] == 1 and summary["stats"]["lost"] == 1
    ds = read_dataset(out)
    assert ds.X.shape == (5, 128)
    assert ds.provenance["seq"] == [0, 1, 3, 4, 5]
    records = read_truth(truth)
    assert [r.seq for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r.status for r in records].count("corrupted") == 1


def test_simulate_tcp_stops_on_sigterm(tmp_path: Path) -> None:
    proc = _simulator("--tcp", "127.0.0.1:0", "--protocol", "ascii")
    try:
        assert proc.stdout is not None
        hostport = proc.stdout.readline().strip()
        assert hostport.startswith("127.0.0.1:")
        out = tmp_path / "rec.npz"
        assert main(["acquire", "--source", f"tcp://{hostport}?protocol=ascii", "--count", "2",
                     "--out", str(out)]) == 0
    finally:
        rc = _stop(proc)
    assert rc == 0
    assert read_dataset(out).n_spectra == 2


def test_acquire_from_sim_url_keeps_the_true_labels(tmp_path: Path) -> None:
    out = tmp_path / "sim.npz"
    assert main(["acquire", "--source", "sim://?classes=3&rate=0&pixels=40", "--count", "6", "--out", str(out)]) == 0
    ds = read_dataset(out)
    assert ds.classes == ("compound_A", "compound_B", "compound_C")
    assert ds.y is not None and ds.y.shape == (6,)
    assert ds.provenance["seq"] == list(range(6))
    assert np.all(np.isfinite(ds.X))


def test_devices_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["serial"], list)
    assert all(p["url"].startswith("serial://") for p in out["serial"])


def test_unknown_scheme_is_a_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acquire", "--source", "nope://x", "--count", "1", "--out", str(tmp_path / "x.npz")]) == 2
    assert "no driver for scheme 'nope'" in capsys.readouterr().err


def test_acquire_from_a_short_recording_keeps_what_there_is(tmp_path: Path) -> None:
    src, out = tmp_path / "src.npz", tmp_path / "out.npz"
    assert main(["acquire", "--source", "sim://?classes=2&rate=0&pixels=30", "--count", "3", "--out", str(src)]) == 0
    assert main(["acquire", "--source", f"replay://{src}", "--count", "10", "--out", str(out)]) == 0
    np.testing.assert_array_equal(read_dataset(out).X, read_dataset(src).X)
