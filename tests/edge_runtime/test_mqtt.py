"""The MQTT sink against a real Mosquitto broker on loopback, restarted in the middle of a stream: every
record arrives (at-least-once, deduplicated on the record id), none is left in the ledger's outbox."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _er_daemon import query_ledger
from _services import Mosquitto

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from spectral_core.errors import MissingExtraError

PREFIX = "lab7/ramanedge"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A persistent-session QoS 1 subscriber (clean_session=False): what the broker queues for it while it is
    away - or while the broker restarts - is delivered when it is back."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.ids: list[int] = []
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ramanedge-test-sub",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        rec = json.loads(msg.payload)
        with self._lock:
            self.ids.append(int(rec["id"]))
            self.messages.append(rec)

    def distinct(self) -> set[int]:
        with self._lock:
            return set(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(pred, what: str, d, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline or d.proc.poll() is not None:
            pytest.fail(f"{what} did not happen:\n{d.log}")
        time.sleep(0.05)


def test_every_record_arrives_across_a_broker_restart(model: Path, tmp_path: Path, serve, broker) -> None:
    pytest.importorskip("paho.mqtt.client")
    sub = Subscriber(broker.port, f"{PREFIX}/results")
    try:
        assert sub.subscribed.wait(20)
        db = tmp_path / "r.sqlite"
        d = serve(["--model", str(model), "--source", "sim://?classes=4&rate=50", "--db", str(db),
                   "--http", "off", "--provider", "cpu",
                   "--mqtt", f"mqtt://127.0.0.1:{broker.port}/{PREFIX}"]).wait_ready()
        _wait(lambda: len(sub.distinct()) >= 40, "the first 40 records at the subscriber", d)

        broker.stop()
        n_down = len(query_ledger(db, "SELECT id FROM results"))
        # while the broker is away the records are owed in the outbox, on disk, and the stream goes on
        _wait(lambda: (query_ledger(db, "SELECT COUNT(*) FROM outbox") or [(0,)])[0][0] >= 60, "outbox filling up", d)
        assert len(query_ledger(db, "SELECT id FROM results")) > n_down

        broker.start()
        _wait(lambda: len(query_ledger(db, "SELECT id FROM results")) >= n_down + 120, "the stream after the restart", d)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
        ledger_ids = {r[0] for r in query_ledger(db, "SELECT id FROM results")}
        deadline = time.monotonic() + 30
        while sub.distinct() != ledger_ids and time.monotonic() < deadline:
            time.sleep(0.05)
        got = sub.distinct()
    finally:
        sub.close()
    missing = sorted(ledger_ids - got)
    assert not missing, f"{len(missing)} record(s) never arrived, e.g. {missing[:10]}\n{d.log}"
    assert got == ledger_ids
    assert query_ledger(db, "SELECT COUNT(*) FROM outbox")[0][0] == 0, "every record acknowledged and cleared"
    assert "MQTT connection to" in d.log and "lost" in d.log
    rec = next(m for m in sub.messages if m["id"] == max(ledger_ids))
    assert rec["status"] == "ok" and rec["source"].startswith("sim://") and len(rec["model_sha256"]) == 64
    assert rec["class"] in {"compound_A", "compound_B", "compound_C", "compound_D"}


def test_records_owed_from_a_run_without_broker_are_sent_at_the_next_start(model: Path, tmp_path: Path, serve,
                                                                            broker) -> None:
    pytest.importorskip("paho.mqtt.client")
    db = tmp_path / "r.sqlite"
    url = f"mqtt://127.0.0.1:{broker.port}/{PREFIX}"
    broker.stop()
    d = serve(["--model", str(model), "--source", "sim://?classes=4&rate=100", "--db", str(db), "--http", "off",
               "--provider", "cpu", "--count", "30", "--mqtt", url])
    assert d.wait(120) == 0, d.log
    n = len(query_ledger(db, "SELECT id FROM results"))
    assert n >= 30 and query_ledger(db, "SELECT COUNT(*) FROM outbox")[0][0] == n, "the broker never came: all still owed"
    broker.start()
    sub = Subscriber(broker.port, f"{PREFIX}/results")
    try:
        assert sub.subscribed.wait(20)
        d2 = serve(["--model", str(model), "--db", str(db), "--http", "127.0.0.1:0", "--provider", "cpu",
                    "--mqtt", url]).wait_ready()
        _wait(lambda: len(sub.distinct()) >= n, "the owed records", d2)
        _wait(lambda: query_ledger(db, "SELECT COUNT(*) FROM outbox")[0][0] == 0, "the outbox emptied", d2)
        d2.signal(signal.SIGTERM)
        assert d2.wait(60) == 0
    finally:
        sub.close()
    assert sub.distinct() == {r[0] for r in query_ledger(db, "SELECT id FROM results")}


def test_missing_paho_names_the_extra_and_bad_urls_are_refused(tmp_path: Path, monkeypatch) -> None:
    from edge_runtime.mqtt import MqttSink, parse_mqtt_url

    ledger = Ledger(tmp_path / "r.sqlite")
    try:
        monkeypatch.setitem(sys.modules, "paho", None)
        monkeypatch.setitem(sys.modules, "paho.mqtt", None)
        monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
        with pytest.raises(MissingExtraError, match=r"\[mqtt\]"):
            MqttSink("mqtt://127.0.0.1:1883/x", ledger)
        assert ledger.outbox is False
    finally:
        ledger.close()
    assert parse_mqtt_url("mqtt://broker.lab:1884/a/b/") == ("broker.lab", 1884, "a/b")
    assert parse_mqtt_url("mqtt://10.0.0.2") == ("10.0.0.2", 1883, "ramanedge")
    for bad in ("http://x:1883/t", "mqtt:///t", "mqtt://x:1883/a/#", "mqtt://x:99999/t"):
        with pytest.raises(SettingsError):
            parse_mqtt_url(bad)
