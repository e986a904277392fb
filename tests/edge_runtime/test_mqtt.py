"""The MQTT sink against a real Mosquitto broker on loopback, restarted in the middle of a stream: every
record arrives (at-least-once, deduplicated on the record id), none is left in the ledger's outbox."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _er_daemon import query_ledger
from _services import Mosquitto, free_port, require_binary, wait_port

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.mqtt import MqttTarget
from spectral_core.errors import MissingExtraError

PREFIX = "lab7/ramanedge"
USER = "lab-bot"
PASSWORD = "p@ss:w/rd %x-7f3"  # every character that must be percent-encoded in a URL
PASSWORD_Q = "p%40ss%3Aw%2Frd%20%25x-7f3"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A persistent-session QoS 1 subscriber (clean_session=False): what the broker queues for it while it is
    away - or while the broker restarts - is delivered when it is back."""

    def __init__(self, port: int, topic: str, *, username: str | None = None, password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.ids: list[int] = []
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ramanedge-test-sub",
                                  clean_session=False)
        if username is not None:
            self.client.username_pw_set(username, password)
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
        # A clean stop is not reported as a lost connection (the broker stayed up all along).
        assert "MQTT connection to" not in d2.log and "MQTT sink closed" in d2.log, d2.log
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
    assert parse_mqtt_url("mqtt://broker.lab:1884/a/b/") == MqttTarget("broker.lab", 1884, "a/b")
    assert parse_mqtt_url("mqtt://10.0.0.2") == MqttTarget("10.0.0.2", 1883, "ramanedge")
    for bad in ("http://x:1883/t", "mqtt:///t", "mqtt://x:1883/a/#", "mqtt://x:99999/t"):
        with pytest.raises(SettingsError):
            parse_mqtt_url(bad)


def test_credentials_and_tls_in_the_url_are_parsed_and_the_password_never_shown(tmp_path: Path) -> None:
    from edge_runtime.mqtt import MqttSink, MqttTls, parse_mqtt_url, redact_mqtt_url

    t = parse_mqtt_url(f"mqtts://lab%2Dbot:{PASSWORD_Q}@broker.lab/plant/7")
    assert (t.host, t.port, t.prefix, t.tls) == ("broker.lab", 8883, "plant/7", True)
    assert (t.username, t.password) == ("lab-bot", PASSWORD)
    assert PASSWORD not in repr(t)
    assert parse_mqtt_url("mqtt://only-user@h").username == "only-user"
    assert redact_mqtt_url(f"mqtt://u:{PASSWORD_Q}@h:1/p") == "mqtt://u:***@h:1/p"
    assert redact_mqtt_url("mqtt://h:1/p") == "mqtt://h:1/p"
    for bad in (f"mqtt://u:{PASSWORD_Q}@h:99999/p", f"ftp://u:{PASSWORD_Q}@h/p", f"mqtt://:{PASSWORD_Q}@h/p"):
        with pytest.raises(SettingsError) as err:
            parse_mqtt_url(bad)
        assert PASSWORD_Q not in str(err.value) and PASSWORD not in str(err.value) and "***" in str(err.value)
    pytest.importorskip("paho.mqtt.client")
    ledger = Ledger(tmp_path / "r.sqlite")
    try:
        with pytest.raises(SettingsError, match="not mqtts"):
            MqttSink("mqtt://127.0.0.1:1/x", ledger, tls=MqttTls(ca_file=tmp_path / "ca.pem"))
        with pytest.raises(SettingsError, match="cannot load the TLS files"):
            MqttSink("mqtts://127.0.0.1:1/x", ledger, tls=MqttTls(ca_file=tmp_path / "missing.pem"))
    finally:
        ledger.close()


def _broker_with_passwords(workdir: Path) -> Mosquitto:
    """A broker that refuses anonymous clients and knows USER with PASSWORD (mosquitto_passwd's file)."""
    b = Mosquitto(workdir)
    pw = workdir / "passwords"
    subprocess.run([require_binary("mosquitto_passwd"), "-b", "-c", str(pw), USER, PASSWORD], check=True,
                   capture_output=True)
    pw.chmod(0o600)
    conf = b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    b.conf.write_text(conf + f"password_file {pw}\n")
    return b


def _http_get(url: str, path: str) -> str:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.request("GET", path)
        r = con.getresponse()
        assert r.status == 200, (path, r.status)
        return r.read().decode()
    finally:
        con.close()


def test_a_broker_with_passwords_refuses_anonymous_and_takes_the_url_credentials(model: Path, tmp_path: Path,
                                                                                serve) -> None:
    pytest.importorskip("paho.mqtt.client")
    broker = _broker_with_passwords(tmp_path / "broker").start()
    sub = Subscriber(broker.port, f"{PREFIX}/results", username=USER, password=PASSWORD)
    try:
        assert sub.subscribed.wait(20)
        # anonymous: the broker refuses; every record stays owed in the outbox
        anon_db = tmp_path / "anon.sqlite"
        d0 = serve(["--model", str(model), "--source", "sim://?classes=4&rate=100", "--db", str(anon_db),
                    "--http", "off", "--provider", "cpu", "--count", "10", "--drain-timeout", "2",
                    "--mqtt", f"mqtt://127.0.0.1:{broker.port}/{PREFIX}"])
        assert d0.wait(120) == 0, d0.log
        assert "refused the connection" in d0.log and "Not authorized" in d0.log, d0.log
        n0 = len(query_ledger(anon_db, "SELECT id FROM results"))
        assert n0 >= 10 and query_ledger(anon_db, "SELECT COUNT(*) FROM outbox")[0][0] == n0
        assert not sub.distinct()

        # the URL's (percent-encoded) credentials: accepted, records published
        db = tmp_path / "r.sqlite"
        url = f"mqtt://{USER}:{PASSWORD_Q}@127.0.0.1:{broker.port}/{PREFIX}"
        d = serve(["--model", str(model), "--source", "sim://?classes=4&rate=50", "--db", str(db),
                   "--http", "127.0.0.1:0", "--provider", "cpu", "--model-poll", "0", "--mqtt", url]).wait_ready()
        assert d.url is not None
        _wait(lambda: len(sub.distinct()) >= 20, "20 records at the subscriber", d)
        shown = {path: _http_get(d.url, path) for path in ("/api/state", "/readyz", "/metrics")}
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
    finally:
        sub.close()
        broker.stop()
    state = json.loads(shown["/api/state"])
    sink = next(x for x in state["sinks"] if "topic" in x)
    assert sink["url"] == f"mqtt://{USER}:***@127.0.0.1:{broker.port}/{PREFIX}" and sink["connected"] is True
    for where, text in [*shown.items(), ("the log", d.log), ("the anonymous run's log", d0.log)]:
        for secret in (PASSWORD, PASSWORD_Q, "ss:w/rd %x", "%3Aw%2Frd"):
            assert secret not in text, f"the MQTT password appears in {where}"


def _openssl(*args: str) -> None:
    subprocess.run([require_binary("openssl"), *args], check=True, capture_output=True)


def _pki(d: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d.mkdir(parents=True, exist_ok=True)
    f = {n: d / n for n in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(f["ca.key"]), "-out", str(f["ca.pem"]),
             "-days", "2", "-subj", "/CN=ramanedge test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                     ("client", "extendedKeyUsage=clientAuth\n")):
        csr, extfile = d / f"{who}.csr", d / f"{who}.ext"
        extfile.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                           "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(f[f"{who}.key"]), "-out", str(csr),
                 "-subj", f"/CN=ramanedge test {who}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(f["ca.pem"]), "-CAkey", str(f["ca.key"]),
                 "-CAcreateserial", "-out", str(f[f"{who}.pem"]), "-days", "2", "-extfile", str(extfile))
    return f


def test_mqtts_verifies_the_broker_with_the_ca_file_and_presents_a_client_certificate(model: Path, tmp_path: Path,
                                                                                     serve) -> None:
    pytest.importorskip("paho.mqtt.client")
    pki = _pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker")
    tls_port = free_port()
    with broker.conf.open("a") as conf:
        conf.write(f"listener {tls_port} 127.0.0.1\ncafile {pki['ca.pem']}\ncertfile {pki['server.pem']}\n"
                   f"keyfile {pki['server.key']}\nrequire_certificate true\n")
    broker.start()
    wait_port(tls_port)
    sub = Subscriber(broker.port, f"{PREFIX}/results")  # the plain listener of the same broker
    try:
        assert sub.subscribed.wait(20)
        db = tmp_path / "r.sqlite"
        d = serve(["--model", str(model), "--source", "sim://?classes=4&rate=50", "--db", str(db), "--http", "off",
                   "--provider", "cpu", "--model-poll", "0", "--mqtt", f"mqtts://127.0.0.1:{tls_port}/{PREFIX}",
                   "--mqtt-ca-file", str(pki["ca.pem"]), "--mqtt-cert-file", str(pki["client.pem"]),
                   "--mqtt-key-file", str(pki["client.key"])]).wait_ready()
        _wait(lambda: len(sub.distinct()) >= 20, "20 records over TLS at the subscriber", d)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log
    finally:
        sub.close()
        broker.stop()
    assert "over TLS" in d.log
    assert sub.distinct() <= {r[0] for r in query_ledger(db, "SELECT id FROM results")}
