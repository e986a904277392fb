"""Rehearse with real spectra (issue 14 item 5): ``simulate --from DATA`` and ``replay://`` with reading options.

The simulator streams a data set's own spectra on its own axis, its labels as the ground truth, with the same
fault injection as the synthetic spectra; replay:// reads files with the CLI's reading options.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from device_drivers import DeviceURLError, DriverError, RejectedFrame, SimConfig, SimulatedInstrument, open_device
from device_drivers.sim import DatasetSpectra
from spectral_core.io import read_dataset, write_npz
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset

StartSim = Callable[..., SimulatedInstrument]
REPO = Path(__file__).resolve().parents[2]


def _dataset(tmp_path: Path) -> tuple[Path, SpectralDataset]:
    """A small labelled data set on a decreasing, non-uniform axis with negative and fractional values."""
    ds = synth_dataset(3, 4, 150, seed=3)
    rng = np.random.default_rng(0)
    X = (ds.X - ds.X.mean() + rng.normal(0, 0.01, ds.X.shape)).astype(np.float32)  # real data: any sign, any scale
    order = rng.permutation(ds.n_spectra)
    out = SpectralDataset(X=X[order], axis=ds.axis ** 1.0001, y=ds.y[order] if ds.y is not None else None,
                          classes=ds.classes)
    path = write_npz(out, tmp_path / "real.npz")
    return path, read_dataset(path)


@pytest.mark.parametrize("protocol", ["framed", "ascii"])
def test_a_data_set_streams_intact_with_its_labels(start_sim: StartSim, tmp_path: Path, protocol: str) -> None:
    _, ds = _dataset(tmp_path)
    sim = start_sim(SimConfig(rate_hz=500, protocol=protocol, faults={4: "short", 6: "saturate"}),
                    transport="tcp", spectra=DatasetSpectra(ds))
    with open_device(sim.url) as dev:
        it = dev.events()
        got = [next(it) for _ in range(ds.n_spectra + 3)]  # wraps round to the start after the last row
        it.close()
        info = dev.info
    assert info.pixels == ds.n_points
    np.testing.assert_array_equal(info.axis, ds.axis)
    truth = list(sim.truth)[: len(got)]
    assert [r.index for r in truth] == [i % ds.n_spectra for i in range(len(got))]
    assert ds.y is not None
    assert [r.class_name for r in truth] == [ds.classes[int(ds.y[r.index or 0])] for r in truth]
    for item, rec in zip(got, truth, strict=True):
        if rec.seq == 4:
            assert isinstance(item, RejectedFrame) and item.seq == 4 and "75 " in item.reason
            continue
        assert not isinstance(item, RejectedFrame)
        assert item.metadata["seq"] == rec.seq
        if rec.seq == 6:
            assert item.metadata["saturated"] is True
            continue
        assert item.metadata["saturated"] is False
        np.testing.assert_array_equal(item.intensities, ds.X[rec.index or 0])  # float32 exact, both protocols


def _simulator(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ramanedge", "simulate", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def test_simulate_from_cli_with_reading_options(tmp_path: Path) -> None:
    """A .npy without an axis, its labels and class names given as reading options, over TCP, ASCII, no SEQ."""
    _, ds = _dataset(tmp_path)
    assert ds.y is not None
    np.save(tmp_path / "X.npy", ds.X)
    np.save(tmp_path / "y.npy", ds.y)
    truth = tmp_path / "truth.jsonl"
    n = ds.n_spectra
    proc = _simulator("--tcp", "127.0.0.1:0", "--from", str(tmp_path / "X.npy"), "--axis",
                      f"400:1800:{ds.n_points}", "--labels", str(tmp_path / "y.npy"), "--class-names",
                      ",".join(ds.classes), "--protocol", "ascii", "--no-seq", "--count", str(n),
                      "--fault", "nan@2", "--truth", str(truth), "--rate", "200")
    try:
        assert proc.stdout is not None
        where = proc.stdout.readline().strip()
        assert where.startswith("127.0.0.1:"), _stop(proc)
        with open_device(f"tcp://{where}?protocol=ascii") as dev:
            it = dev.events()
            got = [next(it) for _ in range(n)]
            it.close()
            axis = dev.info.axis
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err
    np.testing.assert_allclose(axis, np.linspace(400, 1800, ds.n_points))
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [r["class_name"] for r in records] == [ds.classes[int(k)] for k in ds.y]
    assert isinstance(got[2], RejectedFrame) and got[2].seq == 2 and "non-finite" in got[2].reason
    for i, item in enumerate(got):
        if i != 2:
            assert not isinstance(item, RejectedFrame) and item.metadata["seq"] == i
            np.testing.assert_array_equal(item.intensities, ds.X[i])


@pytest.mark.data
def test_simulate_a_real_table_with_its_labels(start_sim: StartSim, data_dir: Path) -> None:
    """The melanoma SERS NH2 tables (one per class folder), read as `--from DIR --pattern NH2.csv --axis 100:4278:2090` would."""
    folder = data_dir / "melanoma-sers-erzina"
    ds = read_dataset(folder, pattern="NH2.csv", axis="100:4278:2090")
    assert ds.y is not None and len(ds.classes) == 12
    rows = np.flatnonzero(ds.y == ds.y[-1])[:3]  # the last class: proves the labels travel, not just row 0
    sim = start_sim(SimConfig(rate_hz=0, protocol="framed", faults={1: "crc"}), transport="tcp",
                    spectra=DatasetSpectra(ds))
    sim.gen._i = int(rows[0])  # type: ignore[attr-defined]
    with open_device(sim.url) as dev:
        it = dev.events()
        got = [next(it) for _ in range(3)]
        it.close()
    truth = list(sim.truth)[:3]
    assert [r.index for r in truth] == [int(rows[0]) + k for k in range(3)]
    assert [r.class_name for r in truth] == [ds.classes[int(ds.y[r.index or 0])] for r in truth]
    assert isinstance(got[1], RejectedFrame) and "CRC" in got[1].reason
    for item, rec in ((got[0], truth[0]), (got[2], truth[2])):
        assert not isinstance(item, RejectedFrame)
        np.testing.assert_array_equal(item.intensities, ds.X[rec.index or 0])
        np.testing.assert_array_equal(item.axis, ds.axis)


# ----------------------------------------------------------------------------------------------- replay://


def test_replay_takes_the_reading_options(tmp_path: Path) -> None:
    X = np.abs(np.random.default_rng(1).normal(100, 10, (5, 40))).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1, 0]))
    base = f"replay://{tmp_path}/X.npy"
    with pytest.raises(DriverError, match="axis="):
        open_device(base)  # the reader says to give axis= ...
    url = f"{base}?axis=400:1800:40&labels={tmp_path}/y.npy&class-names=a,b,c"
    with open_device(url) as dev:  # ... and replay:// now takes it
        got = [dev.acquire() for _ in range(5)]
    assert [s.metadata["label"] for s in got] == ["a", "b", "c", "b", "a"]
    np.testing.assert_array_equal(got[0].axis, np.linspace(400, 1800, 40))
    np.testing.assert_array_equal(got[3].intensities, X[3])


def test_replay_reads_a_semicolon_table_by_columns(tmp_path: Path) -> None:
    axis = np.linspace(500, 1500, 30)
    X = np.random.default_rng(2).uniform(10, 20, (3, 30))
    lines = ["cm-1;s1;s2;s3"] + [";".join(f"{v:.6f}" for v in (axis[i], *X[:, i])) for i in range(30)]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    with open_device(f"replay://{tmp_path}/t.txt?delimiter=;&layout=columns") as dev:
        got = [dev.acquire() for _ in range(3)]
    np.testing.assert_allclose(np.stack([s.intensities for s in got]), X, rtol=1e-6)


@pytest.mark.parametrize(("query", "match"), [
    ("layout=diagonal", "layout must be"),
    ("axis=1:2:3&axis_var=x&bogus=1", "unknown option"),
    ("class_names=a&classes=b", "given twice"),
])
def test_replay_refuses_bad_reading_options(tmp_path: Path, query: str, match: str) -> None:
    np.save(tmp_path / "X.npy", np.ones((2, 3), dtype=np.float32))
    with pytest.raises(DeviceURLError, match=match):
        open_device(f"replay://{tmp_path}/X.npy?{query}")


# ----------------------------------------------------------------------------------------- long simulate runs


def test_a_long_simulation_keeps_bounded_ground_truth(start_sim: StartSim, tmp_path: Path) -> None:
    """`simulate` runs for days: in memory only the latest truth records and commands; the file gets them all."""
    truth_file = tmp_path / "truth.jsonl"
    sim = start_sim(SimConfig(rate_hz=0, pixels=16, truth_keep=5), transport="tcp", truth_path=truth_file)
    with open_device(sim.url) as dev:
        got = [dev.acquire().metadata["seq"] for _ in range(12)]
    assert got == list(range(12))
    assert sim.emitted == 12 and [r.seq for r in sim.truth] == [7, 8, 9, 10, 11]
    assert len(truth_file.read_text().splitlines()) == 12
    assert sim.commands.maxlen is not None and len(sim.commands) <= sim.commands.maxlen
