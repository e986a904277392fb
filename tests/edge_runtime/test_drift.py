"""Drift at the edge: the trained and exported model carries its drift model, every record gets T^2, Q and a
drift flag with the limits they were compared with, old contracts and old ledgers still work, /metrics counts
the flags, and each record's unknown and drift decisions are explained against their thresholds."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.engine import Engine
from edge_runtime.ledger import SCHEMA_VERSION, Ledger, explain
from edge_runtime.metrics import Metrics
from edge_runtime.records import Frame, Outcome
from spectral_core.contract import METADATA_KEY
from spectral_core.drift import window_alarm
from spectral_core.synth import synth_dataset


@pytest.fixture(scope="module")
def engine(model: Path) -> Engine:
    return Engine(model, provider="cpu")


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """100 new spectra of the tiny model's training distribution (same classes and axis, another seed)."""
    ds = synth_dataset(classes=4, per_class=25, points=300, seed=11)
    return ds.axis, ds.X.astype(np.float64)


def _classify(engine: Engine, axis: np.ndarray, X: np.ndarray) -> list[Outcome]:
    frames = [Frame(source="test", ref=f"s{i}", axis=axis, intensities=row) for i, row in enumerate(X)]
    out = engine.classify(frames)
    assert all(o.ok for o in out), [o.error for o in out if not o.ok]
    return out


def test_exported_model_carries_a_drift_model_and_scores_every_spectrum(engine, held_out):
    d = engine.contract.drift
    assert d is not None and len(d.mean) == engine.contract.n_points and d.n_spectra == 160
    info = engine.describe()["drift"]
    assert info["t2_limit"] == d.t2_limit and info["q_limit"] == d.q_limit
    axis, X = held_out
    out = _classify(engine, axis, X)
    for o in out:
        assert o.drift is not None and o.drift_t2 is not None and o.drift_q is not None
        assert o.drift == (o.drift_t2 > d.t2_limit or o.drift_q > d.q_limit)
        assert (o.drift_t2_limit, o.drift_q_limit) == (d.t2_limit, d.q_limit)
        assert o.open_set_threshold is not None and o.open_set_distance is not None
        assert o.unknown == (o.open_set_distance > o.open_set_threshold)
    # 160 training spectra only: a looser bound than the 5% of the larger sets (spectral_core tests, melanoma)
    assert np.mean([o.drift for o in out]) <= 0.08


def test_drifted_spectra_are_flagged_by_the_engine(engine, held_out):
    axis, X = held_out
    base = np.mean([o.drift for o in _classify(engine, axis, X)])
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    ripple = X + 0.1 * X.max(axis=1, keepdims=True) * np.sin(2 * np.pi * 4 * t)
    assert np.mean([o.drift for o in _classify(engine, axis, ripple)]) >= 0.6
    shifted = np.stack([np.interp(axis, axis + 10.0, row) for row in X])  # axis calibration off by 10 cm^-1
    flags = [bool(o.drift) for o in _classify(engine, axis, shifted)]
    # one by one a quarter of them (bands 8-30 cm^-1 wide, 4.7 cm^-1 steps); as a run, far beyond chance
    assert np.mean(flags) >= max(0.15, 4 * base)
    assert window_alarm(sum(flags), len(flags), engine.contract.drift.expected_flag_rate)
    assert not window_alarm(int(base * len(flags)), len(flags), engine.contract.drift.expected_flag_rate)


def _without_drift(src: Path, dst: Path) -> Path:
    """The model as exported before drift models existed: the contract JSON has no "drift" key at all."""
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == METADATA_KEY:
            doc = json.loads(p.value)
            del doc["drift"]
            p.value = json.dumps(doc)
    onnx.save(m, str(dst))
    return dst


def test_old_contract_serves_with_drift_not_available(model, tmp_path, held_out):
    old = _without_drift(model, tmp_path / "old.onnx")
    e = Engine(old, provider="cpu")
    assert e.contract.drift is None and e.describe()["drift"] is None
    assert e.model_sha256 == hashlib.sha256(old.read_bytes()).hexdigest()  # the file is served as it is
    axis, X = held_out
    o = _classify(e, axis, X[:3])[0]
    assert o.drift is None and o.drift_t2 is None and o.class_name is not None
    led = Ledger(tmp_path / "r.sqlite")
    try:
        rec = led.commit([o])[0].record
    finally:
        led.close()
    assert rec is not None and rec["drift"] is None and rec["drift_t2"] is None
    assert explain(rec)["drift"] == "drift: not available (the model carries no drift model)"


def test_records_carry_t2_q_and_limits_and_explain_them(engine, held_out, tmp_path):
    axis, X = held_out
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    out = _classify(engine, axis, np.concatenate([X[:2], X[:1] + 0.3 * X[:1].max() * np.sin(2 * np.pi * 4 * t)]))
    led = Ledger(tmp_path / "r.sqlite")
    try:
        written = led.commit(out)
        read = led.since(0)
    finally:
        led.close()
    assert [r["id"] for r in read] == [c.record_id for c in written]
    d = engine.contract.drift
    for o, rec in zip(out, read, strict=True):
        assert rec["drift"] is o.drift and isinstance(rec["drift"], bool)
        assert rec["drift_t2"] == pytest.approx(o.drift_t2) and rec["drift_q"] == pytest.approx(o.drift_q)
        assert (rec["drift_t2_limit"], rec["drift_q_limit"]) == (d.t2_limit, d.q_limit)
        assert rec["open_set_threshold"] == pytest.approx(o.open_set_threshold)
    rec = read[2]
    assert rec["drift"] is True
    why = explain(rec)
    op_t2 = ">" if rec["drift_t2"] > d.t2_limit else "<="
    op_q = ">" if rec["drift_q"] > d.q_limit else "<="
    assert why["drift"] == (f"drift: T^2 {rec['drift_t2']:.3g} {op_t2} {d.t2_limit:.3g}, "
                            f"Q {rec['drift_q']:.3g} {op_q} {d.q_limit:.3g}")
    assert why["unknown"] == (f"{'unknown' if rec['unknown'] else 'known'}: distance {rec['open_set_distance']:.3f} "
                              f"{'>' if rec['unknown'] else '<='} threshold {rec['open_set_threshold']:.3f}")


def test_explain_words():
    ok = {"status": "ok", "unknown": True, "open_set_distance": 0.41, "open_set_threshold": 0.30, "drift": True,
          "drift_t2": 12.3, "drift_t2_limit": 9.5, "drift_q": 0.031, "drift_q_limit": 0.05}
    assert explain(ok) == {"unknown": "unknown: distance 0.410 > threshold 0.300",
                           "drift": "drift: T^2 12.3 > 9.5, Q 0.031 <= 0.05"}
    assert explain({**ok, "unknown": None, "open_set_distance": None})["unknown"].endswith("not available "
                                                                                        "(the model has no open-set data)")
    assert explain({"status": "error"}) == {"unknown": None, "drift": None}


# the ledger of schema 1, as ramanedge wrote it before drift: kept here verbatim so the migration is tested
_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, input_ref TEXT NOT NULL, content_sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), class TEXT, class_index INTEGER, confidence REAL,
    probabilities TEXT, unknown INTEGER, open_set_distance REAL, error_kind TEXT, error TEXT, acquired_at REAL,
    received_at REAL NOT NULL, completed_at REAL NOT NULL, read_ms REAL, preprocess_ms REAL, inference_ms REAL,
    queue_ms REAL, total_ms REAL, batch_size INTEGER, model_sha256 TEXT NOT NULL, preprocess_hash TEXT NOT NULL,
    provider TEXT NOT NULL, device_serial TEXT, integration_time_us INTEGER, seq INTEGER, saturated INTEGER,
    metadata TEXT
);
CREATE UNIQUE INDEX results_drop_key ON results (source, input_ref, content_sha256) WHERE content_sha256 IS NOT NULL;
CREATE TABLE outbox (id INTEGER PRIMARY KEY REFERENCES results (id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO results (source, input_ref, status, class, class_index, confidence, probabilities, unknown,
    open_set_distance, received_at, completed_at, model_sha256, preprocess_hash, provider)
    VALUES ('http', 'old-1', 'ok', 'compound_A', 0, 0.9, '[0.9, 0.1]', 0, 0.12, 1.0, 2.0, 'abc', 'def', 'cpu');
"""


def test_a_schema_1_ledger_is_migrated_and_its_records_stay_readable(engine, held_out, tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript(_SCHEMA_V1)
    con.close()
    axis, X = held_out
    led = Ledger(db)
    try:
        old = led.since(0)
        assert len(old) == 1 and old[0]["input_ref"] == "old-1" and old[0]["class"] == "compound_A"
        assert old[0]["drift"] is None and old[0]["open_set_threshold"] is None
        assert explain(old[0]) == {"unknown": "known: distance 0.120", "drift": "drift: not available "
                                   "(the model carries no drift model)"}
        led.commit(_classify(engine, axis, X[:1]))
        new = led.since(old[0]["id"])
    finally:
        led.close()
    assert new[0]["drift"] is not None and new[0]["drift_t2"] is not None
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()
    Ledger(db).close()  # and a second open finds nothing left to migrate


def test_metrics_count_drift_flags_and_raise_the_window_alarm(engine, held_out, tmp_path):
    axis, X = held_out
    m = Metrics({"model": "tiny"})
    m.set_drift_expected(engine.contract.drift.expected_flag_rate)
    led = Ledger(tmp_path / "r.sqlite")
    calm = _classify(engine, axis, X[:50])
    m.observe(led.commit(calm))
    n_calm = sum(bool(o.drift) for o in calm)
    text = m.render()
    assert f"ramanedge_drift_total {n_calm}\n" in text and "ramanedge_drift_checked_total 50\n" in text
    assert "ramanedge_drift_alarm 0\n" in text
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    rippled = _classify(engine, axis, X[50:] + 0.1 * X[50:].max(axis=1, keepdims=True) * np.sin(2 * np.pi * 4 * t))
    m.observe(led.commit(rippled))
    led.close()
    n = n_calm + sum(bool(o.drift) for o in rippled)
    text = m.render()
    assert f"ramanedge_drift_total {n}\n" in text and "ramanedge_drift_checked_total 100\n" in text
    assert "ramanedge_drift_alarm 1\n" in text
    assert f"ramanedge_drift_window_ratio {n / 100:g}\n" in text
    w = m.snapshot()["drift_window"]
    assert w["flagged"] == n and w["of"] == 100 and w["alarm"] is True
    m.set_drift_expected(None)  # a model without a drift model: no window, counters kept
    assert m.snapshot()["drift_window"] is None and "ramanedge_drift_alarm" not in m.render()


def test_metrics_keep_model_time_apart_from_queueing(engine, held_out, tmp_path):
    axis, X = held_out
    m = Metrics({"model": "tiny"})
    out = _classify(engine, axis, X[:4])
    for o in out:
        o.frame.t_received -= 0.5  # waited half a second in the queue
    led = Ledger(tmp_path / "r.sqlite")
    m.observe(led.commit(out))
    led.close()
    st = m.snapshot()["latency_ms_by_stage"]
    assert st["inference"]["p50"] < 100 and st["queue"]["p50"] >= 400
    assert m.snapshot()["latency_ms"]["p50"] >= 500


def test_export_can_refit_the_drift_model_on_given_spectra(tiny_run, tmp_path):
    pytest.importorskip("torch")
    from export.onnx_export import ExportError, export_run, read_contract

    data = synth_dataset(classes=4, per_class=15, points=300, seed=5)
    c = read_contract(export_run(tiny_run, tmp_path / "m.onnx", drift_data=data))
    assert c.drift is not None and c.drift.n_spectra == 60  # these spectra, not the run's 160
    with pytest.raises(ExportError, match="at least 20 spectra"):
        export_run(tiny_run, tmp_path / "m2.onnx", drift_data=synth_dataset(classes=4, per_class=3, points=300))
    assert not (tmp_path / "m2.onnx").exists()
