"""File drop, exactly once across a crash: 2,000 files written by another process (a tenth bad), the daemon
killed with SIGKILL in the middle and restarted. Every file ends with exactly one record - a result (file in
done/) or an error (file in quarantine/ with its .error.json) - none twice, none lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N = 2000


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=10)
        try:
            return int(con.execute("SELECT COUNT(DISTINCT input_ref) FROM results").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _wait_for(db: Path, n: int, proc: subprocess.Popen | None, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    got = 0
    while time.monotonic() < deadline:
        got = _count(db)
        if got >= n or (proc is not None and proc.poll() is not None):
            return got
        time.sleep(0.05)
    return got


def test_two_thousand_drops_sigkill_restart_exactly_once(model: Path, tmp_path: Path, serve) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    db = tmp_path / "results.sqlite"
    args = ["--model", str(model), "--source", f"watch://{drop}", "--db", str(db), "--http", "off",
            "--provider", "cpu", "--settle", "0.1", "--poll", "0.5"]
    # a few files wait from before start-up
    writer = subprocess.Popen([sys.executable, str(HERE / "_dropwriter.py"), str(drop), str(N), "7", "10", "50"])
    try:
        first = serve(args).wait_ready()
        got = _wait_for(db, 600, first.proc, 120)
        assert got >= 600, first.log
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        assert writer.wait(120) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
    at_kill = _count(db)
    assert at_kill < N, "the kill should come in the middle"

    second = serve(args).wait_ready()
    got = _wait_for(db, N, second.proc, 180)
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.log
    assert got == N, second.log

    manifest: dict[str, str] = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest) == N
    con = sqlite3.connect(db)
    rows = con.execute("SELECT input_ref, status, error_kind, error, content_sha256, id FROM results").fetchall()
    con.close()
    refs = [r[0] for r in rows]
    assert len(refs) == len(set(refs)) == N, "one record per file, none twice"
    assert set(refs) == set(manifest), "none lost"
    by = {r[0]: r for r in rows}
    done = {p.name for p in (drop / "done").iterdir()}
    quarantined = {p.name for p in (drop / "quarantine").iterdir() if not p.name.endswith(".error.json")}
    assert not list((drop / "processing").iterdir()), "nothing left claimed"
    assert not [p for p in drop.iterdir() if p.is_file()], "nothing left waiting"
    for name, kind in manifest.items():
        status = by[name][1]
        if kind.startswith("ok"):
            assert status == "ok", (name, by[name])
            assert name in done
        else:
            assert status == "error", (name, kind, by[name])
            assert name in quarantined
            info = json.loads((drop / "quarantine" / f"{name}.error.json").read_text())
            assert info["record_id"] == by[name][5] and info["reason"] == by[name][3] and info["reason"]
    assert len(done) + len(quarantined) == N
    bad = [k for k in manifest.values() if not k.startswith("ok")]
    assert len(bad) == N // 10
    # accuracy on the good drops, against what the writer put in them
    con = sqlite3.connect(db)
    cls = dict(con.execute("SELECT input_ref, class FROM results WHERE status = 'ok'").fetchall())
    con.close()
    names = ["compound_A", "compound_B", "compound_C", "compound_D"]
    good = [n for n, k in manifest.items() if k.startswith("ok")]
    acc = sum(cls[n] == names[int(manifest[n].split(":")[1])] for n in good) / len(good)
    assert acc > 0.6


def _table(axis: np.ndarray, rows: np.ndarray) -> bytes:
    """A transposed table: the wavenumber column, then one column a spectrum."""
    head = "wavenumber," + ",".join(f"s{k}" for k in range(len(rows)))
    body = "".join(f"{a:.4f}," + ",".join(f"{v:.2f}" for v in rows[:, i]) + "\n" for i, a in enumerate(axis))
    return (head + "\n" + body).encode()


def test_multi_spectrum_drops_sigkill_restart_each_spectrum_exactly_once(model: Path, tmp_path: Path, serve) -> None:
    """40 files of 20 spectra (every 4th file with one flat spectrum, which the model's normalisation refuses):
    killed in the middle, restarted; every (file, k) has exactly one record, the files move on whole."""
    from spectral_core.synth import SyntheticCatalog, instrument_axis

    n_files, per_file = 40, 20
    drop = tmp_path / "drop"
    drop.mkdir()
    db = tmp_path / "results.sqlite"
    axis = instrument_axis(1024)
    cat = SyntheticCatalog(4, 0)
    templates = np.stack([cat.clean(c, axis) for c in range(4)])
    rng = np.random.default_rng(5)
    flat: dict[str, int] = {}
    for i in range(n_files):
        rows = 100 + 1500 * templates[rng.integers(0, 4, per_file)] + rng.normal(0, 15, (per_file, axis.size))
        name = f"map_{i:03d}.csv"
        if i % 4 == 3:
            flat[name] = int(rng.integers(0, per_file))
            rows[flat[name]] = 500.0
        (drop / f"{name}.part").write_bytes(_table(axis, rows))
        os.rename(drop / f"{name}.part", drop / name)
    args = ["--model", str(model), "--source", f"watch://{drop}", "--db", str(db), "--http", "off",
            "--provider", "cpu", "--settle", "0.05", "--poll", "0.5"]
    first = serve(args).wait_ready()
    got = _wait_records(db, 50, first.proc, 120)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    assert got >= 50, first.log
    total = n_files * per_file
    assert _wait_records(db, 0, None, 0) < total, "the kill should come in the middle"

    second = serve(args).wait_ready()
    got = _wait_records(db, total, second.proc, 180)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (list((drop / "processing").iterdir()) or
                                           [p for p in drop.iterdir() if p.is_file()]):
        time.sleep(0.05)
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.log
    assert got == total, second.log

    con = sqlite3.connect(db)
    rows = con.execute("SELECT input_ref, status, error, id FROM results").fetchall()
    con.close()
    refs = [r[0] for r in rows]
    expected = {f"map_{i:03d}.csv#{k}" for i in range(n_files) for k in range(per_file)}
    assert len(refs) == len(set(refs)) == total and set(refs) == expected, "each spectrum once, none lost"
    status = {r[0]: r for r in rows}
    assert not list((drop / "processing").iterdir()) and not [p for p in drop.iterdir() if p.is_file()]
    done = {p.name for p in (drop / "done").iterdir()}
    quarantined = {p.name for p in (drop / "quarantine").iterdir() if not p.name.endswith(".error.json")}
    assert quarantined == set(flat) and len(done) == n_files - len(flat)
    for name, k in flat.items():
        assert status[f"{name}#{k}"][1] == "error" and "flat" in status[f"{name}#{k}"][2]
        info = json.loads((drop / "quarantine" / f"{name}.error.json").read_text())
        assert [e["k"] for e in info["failed"]] == [k] and info["spectra"] == per_file
        assert info["failed"][0]["record_id"] == status[f"{name}#{k}"][3]
    bad = {f"{n}#{k}" for n, k in flat.items()}
    assert all(status[r][1] == "ok" for r in expected - bad)


def _wait_records(db: Path, n: int, proc: subprocess.Popen | None, timeout_s: float) -> int:
    """Records (not distinct names) in the ledger, waiting until there are ``n`` or the daemon exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = 0
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=10)
                try:
                    got = int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
                finally:
                    con.close()
            except sqlite3.OperationalError:
                got = 0
        if got >= n or time.monotonic() >= deadline or (proc is not None and proc.poll() is not None):
            return got
        time.sleep(0.01)
