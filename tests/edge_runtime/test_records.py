"""The record types: the JSON records are a wire format (ledger rows, results.jsonl lines, MQTT payloads and HTTP
bodies are pinned byte for byte in ``golden/records.jsonl``, written by the code before the record types
existed); the ledger returns what it made of each outcome and changes none; the model a record names is set
through :meth:`Ledger.serve`; the daemon uses sources and sinks only through their protocols."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import daemon as daemon_mod
from edge_runtime import ledger as ledger_module
from edge_runtime.daemon import Daemon
from edge_runtime.ledger import Ledger
from edge_runtime.records import RECORD_KEYS, Frame, ModelIdentity, Outcome, Record
from edge_runtime.settings import load_settings
from edge_runtime.sinks import JsonlSink
from edge_runtime.sources import WatchSource

GOLDEN = Path(__file__).parent / "golden" / "records.jsonl"
NOW_WALL = 1_700_000_000.5
NOW_MONO = 100.25
SERVED = ModelIdentity("m" * 64, "p" * 64, "CPUExecutionProvider")


def _wire(rec: Any) -> bytes:
    """How MQTT and HTTP (``/results``, ``POST /classify``) serialise a record."""
    return json.dumps(rec, separators=(",", ":"), default=str).encode()


def _outcomes() -> list[Outcome]:
    meta = {"device_serial": "SN1", "integration_time_us": 1000, "seq": 7, "saturated": False,
            "laser_nm": 785.0, "t_monotonic": 5.0}
    ok = Frame("sim://x", "seq=7", np.linspace(400.0, 1800.0, 8), np.ones(8, np.float32), metadata=meta,
               t_received=100.0, acquired_at=1_699_999_999.75, read_s=0.0005)
    bad = Frame("watch:///drop", "a.csv", None, None, t_received=100.125, error=("read", "bad"),
                content_sha256="ab" * 32)
    return [
        Outcome(frame=ok, ok=True, class_name="calcite", class_index=1, confidence=0.8123456789,
                probabilities=[0.1876543211, 0.8123456789], unknown=False, open_set_distance=0.125,
                open_set_threshold=0.3, drift=False, drift_t2=1.5, drift_q=0.25, drift_t2_limit=9.5,
                drift_q_limit=0.5, preprocess_s=0.002, inference_s=0.001, batch_size=1),
        Outcome.failed(bad, "read", "bad"),
    ]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "time", types.SimpleNamespace(time=lambda: NOW_WALL,
                                                                      monotonic=lambda: NOW_MONO))


def test_records_are_byte_identical_on_every_wire(tmp_path: Path, fixed_clock: None) -> None:
    golden = GOLDEN.read_bytes().splitlines()
    led = Ledger(tmp_path / "l.sqlite", serving=SERVED)
    try:
        records = [c.record for c in led.commit(_outcomes()) if c.record is not None]
        sink = JsonlSink(tmp_path / "r.jsonl")
        sink.write(records)
        sink.close(0.0)
        assert (tmp_path / "r.jsonl").read_bytes() == GOLDEN.read_bytes()  # results.jsonl
        assert [_wire(r) for r in records] == golden  # the POST /classify reply
        assert [_wire(r) for r in led.since(0)] == golden  # /results, read back from the ledger
        assert led.outbox_after(0, 10) == []  # no outbox without the MQTT sink
    finally:
        led.close()


def test_mqtt_payloads_are_the_golden_records(tmp_path: Path, fixed_clock: None) -> None:
    led = Ledger(tmp_path / "l.sqlite", serving=SERVED)
    led.outbox = True  # as the MQTT sink switches it on
    try:
        led.commit(_outcomes())
        assert [_wire(r) for r in led.outbox_after(0, 10)] == GOLDEN.read_bytes().splitlines()
    finally:
        led.close()


def test_the_record_type_lists_the_ledger_columns_in_order(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    try:
        con = sqlite3.connect(led.path)
        columns = tuple(str(r[1]) for r in con.execute("PRAGMA table_info(results)"))
        con.close()
    finally:
        led.close()
    assert columns == RECORD_KEYS == tuple(Record.__annotations__)
    assert RECORD_KEYS[0] == "id" and "class" in RECORD_KEYS


def test_the_ledger_returns_what_it_made_of_each_outcome_and_changes_none(tmp_path: Path) -> None:
    outcomes = _outcomes()
    before = [{k: v for k, v in vars(o).items() if k != "frame"} for o in outcomes]
    frames_before = [{k: v for k, v in vars(o.frame).items() if k not in ("axis", "intensities")} for o in outcomes]
    led = Ledger(tmp_path / "l.sqlite", serving=SERVED)
    try:
        first = led.commit(outcomes)
        again = led.commit([dataclasses.replace(outcomes[1])])  # the same drop (name and bytes) once more
    finally:
        led.close()
    assert [{k: v for k, v in vars(o).items() if k != "frame"} for o in outcomes] == before
    assert [{k: v for k, v in vars(o.frame).items() if k not in ("axis", "intensities")}
            for o in outcomes] == frames_before
    assert [c.outcome for c in first] == outcomes and [c.record_id for c in first] == [1, 2]
    assert not first[0].duplicate and first[0].record is not None and first[0].record["id"] == 1
    assert first[0].previous is None and first[0].completed_at == first[0].record["completed_at"]
    (dup,) = again
    assert dup.duplicate and dup.record is None and dup.record_id == 2
    assert dup.previous is not None and (dup.previous.status, dup.previous.error_kind) == ("error", "read")


def test_records_name_the_model_served_when_they_were_committed(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite", serving=SERVED)
    new = ModelIdentity("n" * 64, "q" * 64, "CUDAExecutionProvider")
    try:
        assert led.serving == SERVED
        led.commit(_outcomes()[:1])
        led.serve(new)
        assert led.serving == new
        led.commit(_outcomes()[:1])
        rows = led.since(0)
    finally:
        led.close()
    assert [(r["model_sha256"], r["preprocess_hash"], r["provider"]) for r in rows] == [
        (SERVED.model_sha256, SERVED.preprocess_hash, SERVED.provider),
        (new.model_sha256, new.preprocess_hash, new.provider),
    ]


def test_a_drop_folder_declares_that_its_axis_comes_with_each_file(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    try:
        src = WatchSource(f"watch://{tmp_path / 'drop'}", led, settle_s=0.05, poll_s=60.0)
        assert src.axis is None and src.finished is False
    finally:
        led.close()


class _RecordingSink:
    """A sink that keeps what the daemon hands it."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.closed_with: float | None = None

    def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def status(self) -> dict[str, Any]:
        return {"recording": len(self.records)}

    def close(self, timeout_s: float) -> None:
        self.closed_with = timeout_s


def test_the_daemon_feeds_and_closes_its_sinks_through_the_protocol(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = _RecordingSink()
    monkeypatch.setattr(daemon_mod, "open_sinks", lambda *a, **k: [sink])
    d = Daemon(load_settings({"model": str(model), "db": str(tmp_path / "r.sqlite"), "http": "off",
                              "provider": "cpu", "sources": ["sim://?classes=4&rate=300&seed=3"],
                              "model_poll_s": 0, "count": 12, "drain_timeout_s": 5}))
    d.start()
    try:
        assert d.dashboard_state()["sinks"] == [sink.status()]
        assert d.sources[0].axis is not None  # an instrument knows its axis before its first spectrum
        rc = d.run()
    finally:
        if d.ledger is not None:
            d.ledger.close()
    assert rc == 0 and d.engine is not None
    led = Ledger(tmp_path / "r.sqlite")
    try:
        stored = led.since(0, 10_000)
    finally:
        led.close()
    assert len(stored) >= 12 and [_wire(r) for r in sink.records] == [_wire(r) for r in stored]
    assert {(r["model_sha256"], r["preprocess_hash"], r["provider"]) for r in stored} == {
        (d.engine.model_sha256, d.engine.preprocess_hash, d.engine.provider)}
    assert sink.closed_with is not None and 0 < sink.closed_with <= 5
