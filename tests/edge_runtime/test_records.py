"""The JSON records are a wire format: ledger rows, results.jsonl lines, MQTT payloads and HTTP bodies are pinned
byte for byte (``golden/records.jsonl``, written by the code before the record types existed), so a refactor of
the record types cannot change what consumers parse."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import ledger as ledger_module
from edge_runtime.engine import Frame, Outcome
from edge_runtime.ledger import Ledger
from edge_runtime.sinks import JsonlSink

GOLDEN = Path(__file__).parent / "golden" / "records.jsonl"
NOW_WALL = 1_700_000_000.5
NOW_MONO = 100.25


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
    led = Ledger(tmp_path / "l.sqlite", model_sha256="m" * 64, preprocess_hash="p" * 64,
                 provider="CPUExecutionProvider")
    try:
        records = led.commit(_outcomes())
        sink = JsonlSink(tmp_path / "r.jsonl")
        sink.write(records)
        sink.close()
        assert (tmp_path / "r.jsonl").read_bytes() == GOLDEN.read_bytes()  # results.jsonl
        assert [_wire(r) for r in records] == golden  # the POST /classify reply
        assert [_wire(r) for r in led.since(0)] == golden  # /results, read back from the ledger
        assert [_wire(r) for r in led.outbox_after(0, 10)] == []  # no outbox without the MQTT sink
    finally:
        led.close()


def test_mqtt_payloads_are_the_golden_records(tmp_path: Path, fixed_clock: None) -> None:
    led = Ledger(tmp_path / "l.sqlite", model_sha256="m" * 64, preprocess_hash="p" * 64,
                 provider="CPUExecutionProvider")
    led.outbox = True  # as the MQTT sink switches it on
    try:
        led.commit(_outcomes())
        assert [_wire(r) for r in led.outbox_after(0, 10)] == GOLDEN.read_bytes().splitlines()
    finally:
        led.close()
