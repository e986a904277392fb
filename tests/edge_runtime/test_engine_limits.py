"""Bounded work and bounded text: a spectrum longer than ``max_points`` is an error record refused before any
allocation that grows with it; one failing group never takes the batch down; error text is cut to 2 KiB in
records with the cut stated (an earlier cut's note is added up, not lost)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engine import PREPROCESS_IN_CALLER_POINTS, Engine
from edge_runtime.ledger import Ledger
from edge_runtime.records import MAX_ERROR_BYTES, Frame, Outcome, bounded_text
from edge_runtime.settings import load_settings, request_bytes_for
from edge_runtime.sinks import JsonlSink
from spectral_core.synth import instrument_axis, synth_dataset


@pytest.fixture(scope="module")
def engine(model: Path) -> Engine:
    return Engine(model, provider="cpu", max_points=5000)


def test_too_long_spectrum_is_an_error_record_naming_size_and_limit(engine: Engine) -> None:
    ds = synth_dataset(classes=4, per_class=1, seed=2, axis=instrument_axis(1024))
    long_axis = np.linspace(300.0, 1900.0, 6000)
    out = engine.classify([Frame("t", "long", long_axis, np.ones(6000, np.float32)),
                           Frame("t", "ok", ds.axis, ds.X[0])])
    assert not out[0].ok and out[0].error_kind == "input"
    assert "6,000 points" in (out[0].error or "") and "5,000" in (out[0].error or "")
    assert out[1].ok, "the other spectrum of the batch is classified"
    assert engine.prepare(long_axis) is not None and "5,000" in (engine.prepare(long_axis) or "")


def test_the_size_is_checked_before_anything_grows_with_it(engine: Engine) -> None:
    """10 M points held as a zero-copy view: refused without converting or resampling them (80 MB+)."""
    n = 10_000_000
    axis = np.broadcast_to(np.float32(1.0), (n,))  # float32: a float64 copy alone would be 80 MB
    x = np.broadcast_to(np.float32(2.0), (n,))
    tracemalloc.start()
    try:
        out = engine.classify([Frame("t", "huge", axis, x)])  # type: ignore[arg-type]
        engine.prepare_frame(Frame("t", "huge", axis, x))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not out[0].ok and "10,000,000 points" in (out[0].error or "")
    assert peak < 5e6, f"{peak / 1e6:.1f} MB allocated for a spectrum that is refused"


def test_one_failing_group_becomes_error_records_not_a_crash(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = synth_dataset(classes=4, per_class=1, seed=2, axis=instrument_axis(1024))
    other = instrument_axis(900)
    ds2 = synth_dataset(classes=4, per_class=1, seed=3, axis=other)
    real = engine.preprocessor.transform_rows

    def boom(X, axis):  # type: ignore[no-untyped-def]
        if np.asarray(axis).size == 900:
            raise MemoryError("simulated: no memory for this one")
        return real(X, axis)

    monkeypatch.setattr(engine.preprocessor, "transform_rows", boom)
    out = engine.classify([Frame("t", "a", ds.axis, ds.X[0]), Frame("t", "b", ds2.axis, ds2.X[0])])
    assert out[0].ok
    assert not out[1].ok and out[1].error_kind == "internal" and "MemoryError" in (out[1].error or "")


def test_bounded_text_states_the_cut() -> None:
    assert bounded_text("short") == "short"
    big = "x" * 50_000_000
    cut = bounded_text(big)
    assert len(cut.encode()) <= MAX_ERROR_BYTES
    assert cut.endswith(f"... [cut {50_000_000 - len(cut.split(' ... ')[0]):,} bytes]")
    multi = "é" * 5000  # 2 bytes a character: never split inside one
    c2 = bounded_text(multi)
    assert len(c2.encode()) <= MAX_ERROR_BYTES and c2.startswith("é" * 900)
    again = bounded_text(bounded_text(big, 64 << 10))  # cut twice: the note counts both cuts
    assert again.endswith(f"[cut {50_000_000 - len(again.split(' ... ')[0]):,} bytes]")


def test_a_50_mb_error_line_is_2_kib_in_the_ledger_and_the_sinks(tmp_path: Path) -> None:
    line = "parse error near: " + "7," * 25_000_000  # 50 MB of quoted content
    o = Outcome.failed(Frame("watch://x", "big.csv", None, None), "input", line)
    ledger = Ledger(tmp_path / "r.sqlite")
    sink = JsonlSink(tmp_path / "out.jsonl")
    try:
        records = [c.record for c in ledger.commit([o]) if c.record is not None]
        sink.write(records)
        stored = ledger.since(0)[0]["error"]
    finally:
        sink.close(0.0)
        ledger.close()
    assert len(stored.encode()) <= MAX_ERROR_BYTES and stored.startswith("parse error near: 7,7,")
    assert f"[cut {len(line.encode()) - len(stored.split(' ... [cut')[0].encode()):,} bytes]" in stored
    assert len(records[0]["error"].encode()) <= MAX_ERROR_BYTES
    assert (tmp_path / "out.jsonl").stat().st_size < 4 * MAX_ERROR_BYTES
    assert json.loads((tmp_path / "out.jsonl").read_text())["error"] == stored


def test_max_points_setting_defaults_to_65536(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings({"model": "m"}).max_points == 65_536
    monkeypatch.setenv("RAMANEDGE_MAX_POINTS", "20000")
    assert load_settings({"model": "m"}).max_points == 20_000


def _worst_json(points: int) -> bytes:
    """A POST /classify body of ``points`` points with its axis, every value as long as json.dumps writes one."""
    v = [-4.8637569375037456e-301] * points  # 24 characters: the longest float64 repr
    return json.dumps({"axis": v, "intensities": v, "ref": "x" * 256}).encode()


def test_the_default_request_limit_fits_a_request_of_max_points(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """The body limit is derived from ``max_points``, so no spectrum the point limit allows is refused for its
    bytes (1 MiB, the old default, refused any 65,536-point JSON request with its axis)."""
    s = load_settings({"model": "m"})
    assert s.max_points == 65_536 and s.max_request_bytes == request_bytes_for(65_536)
    worst = len(_worst_json(65_536))
    assert worst > 1 << 20 and worst <= s.max_request_bytes
    assert s.max_request_bytes >= 2 * 8 * 65_536  # a binary float64 body with its axis
    # the default follows max_points, from a flag or the environment
    small = load_settings({"model": "m", "max_points": 1000})
    assert small.max_request_bytes == request_bytes_for(1000) < s.max_request_bytes
    assert len(_worst_json(1000)) <= small.max_request_bytes
    monkeypatch.setenv("RAMANEDGE_MAX_POINTS", "200000")
    assert load_settings({"model": "m"}).max_request_bytes == request_bytes_for(200_000)
    # from a config file too
    (tmp_path / "serve.toml").write_text("[serve]\nmax_points = 3000\n")
    (tmp_path / "limit.toml").write_text("[serve]\nmax_points = 3000\nmax_request_bytes = 8192\n")
    monkeypatch.delenv("RAMANEDGE_MAX_POINTS")
    assert load_settings({"model": "m"}, tmp_path / "serve.toml").max_request_bytes == request_bytes_for(3000)
    assert load_settings({"model": "m"}, tmp_path / "limit.toml").max_request_bytes == 8192
    # an explicit limit is kept as given
    assert load_settings({"model": "m", "max_request_bytes": 4096}).max_request_bytes == 4096
    monkeypatch.setenv("RAMANEDGE_MAX_REQUEST_BYTES", "50000")
    assert load_settings({"model": "m"}).max_request_bytes == 50_000


def test_a_long_spectrum_is_preprocessed_in_its_callers_thread_and_only_inferred_by_the_worker(
        engine: Engine, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_frame (an HTTP request's thread) preprocesses a spectrum marked preprocess_ahead longer than
    PREPROCESS_IN_CALLER_POINTS; classify (the worker) then runs inference only, with the same result. A row
    prepared by another engine (a model swap in between) is preprocessed again; sources' frames are left to the
    worker's batches."""
    n = PREPROCESS_IN_CALLER_POINTS + 400
    axis = np.linspace(300.0, 1900.0, n)
    ds = synth_dataset(classes=4, per_class=1, seed=3, axis=axis)
    bad_y = ds.X[1].copy()
    bad_y[7] = np.nan
    unmarked = Frame("t", "source", axis, ds.X[0])  # a source's frame: batched by the worker
    engine.prepare_frame(unmarked)
    assert unmarked.prepared is None
    frames = [Frame("t", "long", axis, ds.X[0], preprocess_ahead=True),
              Frame("t", "nan", axis, bad_y, preprocess_ahead=True)]
    for f in frames:
        engine.prepare_frame(f)
        assert f.prepared is not None and f.prepared.owner is engine
    reference = engine.classify([Frame("t", "ref", axis, ds.X[0])])[0]
    with monkeypatch.context() as m:  # the worker must not preprocess them again
        m.setattr(engine.preprocessor, "transform_rows", lambda *a, **k: pytest.fail("preprocessed twice"))
        ok, nan = engine.classify(frames)
    assert ok.ok and ok.class_name == reference.class_name, ok
    np.testing.assert_allclose(ok.probabilities, reference.probabilities, rtol=0, atol=1e-6)
    assert ok.preprocess_s > 0
    assert not nan.ok and nan.error_kind == "input" and "NaN" in (nan.error or "")
    short = Frame("t", "short", ds.axis[:PREPROCESS_IN_CALLER_POINTS], ds.X[0][:PREPROCESS_IN_CALLER_POINTS],
                  preprocess_ahead=True)
    engine.prepare_frame(short)
    assert short.prepared is None  # short spectra: only the operator is built ahead
    other = Engine(model, provider="cpu", max_points=5000)
    stale = Frame("t", "swapped", axis, ds.X[0], preprocess_ahead=True)
    other.prepare_frame(stale)
    assert stale.prepared is not None and stale.prepared.owner is other
    again = engine.classify([stale])[0]
    assert again.ok and again.probabilities == reference.probabilities
