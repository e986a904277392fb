"""The MQTT sink: every record published as JSON with QoS 1, through an outbox in the ledger.

``--mqtt mqtt://host:1883/topic-prefix`` publishes each record to ``<prefix>/results`` (prefix default
``ramanedge``). ``mqtt://user:password@host/prefix`` logs in (both percent-decoded: ``%40`` for ``@``);
``mqtts://`` (port 8883 by default) speaks TLS, verifying the broker against ``--mqtt-ca-file`` (else the
system's CAs) and its name, with an optional client certificate (``--mqtt-cert-file``/``--mqtt-key-file``).
The password is never shown: the URL in ``/api/state`` and in every message is redacted (``user:***@``).
Delivery is at-least-once and survives broker outages and daemon restarts:

1. The worker commits a record and its id into the ledger's ``outbox`` table in one transaction.
2. A publisher thread, while connected, publishes outbox records in id order (at most ``MAX_IN_FLIGHT``
   unacknowledged), and deletes each from the outbox once the broker's PUBACK arrived.
3. A lost connection is retried (0.2 s doubling to 5 s); after every (re)connect, everything still in the
   outbox is published again from the start. A record may therefore arrive twice: consumers dedupe on ``id``.
4. At shutdown the outbox is flushed for a few seconds; what is left is published at the next start.

paho-mqtt is imported lazily; without it :class:`~spectral_core.errors.MissingExtraError` names ``[mqtt]``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.records import Record
from edge_runtime.settings import is_loopback_host
from spectral_core.errors import MissingExtraError

__all__ = ["MAX_IN_FLIGHT", "MqttSink", "MqttTarget", "MqttTls", "parse_mqtt_url", "redact_mqtt_url"]

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 200
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttTarget:
    """A parsed ``--mqtt`` URL. ``password`` is kept out of ``repr`` (tracebacks, debug logs)."""

    host: str
    port: int
    prefix: str
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MqttTls:
    """The PEM files of an ``mqtts://`` connection (the ``mqtt_*_file`` settings); all optional."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def given(self) -> bool:
        return any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


def redact_mqtt_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (works on malformed URLs too: it is used in errors)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostport}{slash}{path}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt[s]://[user[:password]@]host[:port][/topic/prefix]`` -> :class:`MqttTarget`.

    Raises:
        SettingsError: another scheme, no host, a bad port, or a prefix with wildcards; the message shows the
            URL with its password redacted.
    """
    shown = redact_mqtt_url(url)
    u = urlsplit(url)
    if u.scheme not in DEFAULT_PORTS:
        raise SettingsError(f"--mqtt must be mqtt://host:1883/topic-prefix or mqtts://host:8883/..., got {shown!r}")
    if not u.hostname:
        raise SettingsError(f"--mqtt {shown!r} names no host")
    try:
        port = u.port or DEFAULT_PORTS[u.scheme]
    except ValueError as exc:
        raise SettingsError(f"--mqtt {shown!r}: {exc}") from None
    prefix = u.path.strip("/") or "ramanedge"
    if "#" in url or "+" in prefix or "//" in prefix or u.query:
        raise SettingsError(f"--mqtt topic prefix {prefix!r} may not hold wildcards, empty levels or a query")
    username = unquote(u.username) if u.username is not None else None
    password = unquote(u.password) if u.password is not None else None
    if password is not None and not username:
        raise SettingsError(f"--mqtt {shown!r}: a password without a user name")
    return MqttTarget(u.hostname, port, prefix, u.scheme == "mqtts", username or None, password)


def _tls_context(tls: MqttTls, shown: str) -> ssl.SSLContext:
    """Verifies the broker's certificate and name (against ``ca_file``, else the system's CAs)."""
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file is not None else None)
        if tls.cert_file is not None:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SettingsError(f"--mqtt {shown}: cannot load the TLS files: {exc}") from None
    return ctx


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MissingExtraError("the MQTT sink (--mqtt)", "mqtt", "paho-mqtt") from None
    return mqtt


class MqttSink:
    """Publishes the ledger's outbox to an MQTT broker (see the module docstring).

    Args:
        url: ``mqtt[s]://[user:password@]host:port/topic-prefix``.
        ledger: the daemon's ledger; its ``outbox`` is switched on.
        flush_timeout_s: how long :meth:`close` keeps publishing what is left at most, s.
        tls: CA and client certificate files for ``mqtts://``.

    Raises:
        SettingsError: a bad URL, TLS files with a plain ``mqtt://`` URL, or TLS files that cannot be loaded.
    """

    def __init__(self, url: str, ledger: Ledger, *, flush_timeout_s: float = 5.0, tls: MqttTls | None = None) -> None:
        mqtt = _paho()
        target = parse_mqtt_url(url)
        tls = tls or MqttTls()
        self.host, self.port, self.prefix = target.host, target.port, target.prefix
        self.topic = f"{self.prefix}/results"
        self.url = redact_mqtt_url(url)
        if tls.given() and not target.tls:
            raise SettingsError(f"--mqtt {self.url}: TLS files are given but the URL is not mqtts://")
        context = _tls_context(tls, self.url) if target.tls else None
        self.ledger = ledger
        self.flush_timeout_s = flush_timeout_s
        ledger.outbox = True
        self._mqtt = mqtt
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._connected = False
        self._generation = 0
        self._last_refusal: str | None = None
        self.published = 0
        self.acked = 0
        client_id = f"ramanedge-{socket.gethostname()}-{os.getpid()}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self._client.max_inflight_messages_set(0)  # the publisher bounds what is in flight itself
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        if target.username is not None:
            self._client.username_pw_set(target.username, target.password)
            if not target.tls and not is_loopback_host(target.host):
                logger.warning("MQTT: the password for %s travels unencrypted to %s; use mqtts://", target.username,
                               target.host)
        if context is not None:
            self._client.tls_set_context(context)
        self._client.connect_async(self.host, self.port, keepalive=15)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        logger.info("MQTT sink: %s:%d%s%s topic %s (%d record(s) owed from before)", self.host, self.port,
                    " over TLS" if target.tls else "",
                    f" as {target.username}" if target.username is not None else "", self.topic,
                    ledger.outbox_count())

    # -- paho callbacks (network thread) -------------------------------------------------------------

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            # retried every few seconds for as long as it lasts: the same refusal is a WARNING once, then DEBUG
            reason = str(reason_code)
            level = logging.DEBUG if reason == self._last_refusal else logging.WARNING
            self._last_refusal = reason
            logger.log(level, "MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        with self._lock:
            self._connected = True
            self._generation += 1
        self._last_refusal = None
        logger.info("MQTT connected to %s:%d", self.host, self.port)
        self._wake.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        with self._lock:
            was, self._connected = self._connected, False
        if was and not self._stop.is_set():
            logger.warning("MQTT connection to %s:%d lost (%s); records wait in the outbox", self.host, self.port,
                           reason_code)
        elif was:  # our own disconnect at close(): a clean stop, not a lost connection
            logger.debug("MQTT disconnected from %s:%d (%s)", self.host, self.port, reason_code)

    # -- the publisher -------------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Committed records are already in the outbox: only wake the publisher."""
        if records:
            self._wake.set()

    def _run(self) -> None:
        generation = -1
        sent_upto = 0
        in_flight: list[tuple[Any, int]] = []
        while True:
            self._wake.wait(0.1)
            self._wake.clear()
            with self._lock:
                connected, gen = self._connected, self._generation
            if gen != generation:
                # a (re)connect: whatever was in flight may be lost; publish the outbox again from its start
                generation, sent_upto, in_flight = gen, 0, []
            done = [rid for info, rid in in_flight if info.is_published()]
            if done:
                in_flight = [(info, rid) for info, rid in in_flight if not info.is_published()]
                try:
                    self.ledger.mark_published(done)
                    self.acked += len(done)
                except sqlite3.Error as exc:  # they stay owed and are published again
                    logger.error("MQTT sink: cannot clear %d record(s) from the outbox: %s", len(done), exc)
            if self._abort.is_set() or (
                self._stop.is_set() and (not connected or (not in_flight and not self._owed(sent_upto)))
            ):
                return
            if not connected or len(in_flight) >= MAX_IN_FLIGHT:
                continue
            try:
                rows = self.ledger.outbox_after(sent_upto, MAX_IN_FLIGHT - len(in_flight))
            except sqlite3.Error as exc:  # the ledger may be busy; try again on the next round
                logger.error("MQTT sink: cannot read the outbox: %s", exc)
                continue
            for rec in rows:
                payload = json.dumps(rec, separators=(",", ":"), default=str)
                info = self._client.publish(self.topic, payload, qos=1)
                if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                    break  # connection dropped; on reconnect the outbox is published again
                in_flight.append((info, int(rec["id"])))
                sent_upto = int(rec["id"])
                self.published += 1
            if rows:
                self._wake.set()

    def _owed(self, after_id: int) -> bool:
        try:
            return bool(self.ledger.outbox_after(after_id, 1))
        except sqlite3.Error:
            return False

    def close(self, timeout_s: float | None = None) -> None:
        """Publish what is left for up to ``timeout_s`` (at most ``flush_timeout_s``; None: that), then
        disconnect (the rest stays owed for the next start)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(self.flush_timeout_s if timeout_s is None else min(self.flush_timeout_s, timeout_s))
        self._abort.set()
        self._thread.join(1.0)
        left = -1
        try:
            left = self.ledger.outbox_count()
        except sqlite3.Error as exc:
            logger.debug("outbox count: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("MQTT sink closed: %d published, %d acknowledged, %d record(s) owed for the next start",
                    self.published, self.acked, left)

    def status(self) -> dict[str, Any]:
        with self._lock:
            connected = self._connected
        return {"url": self.url, "topic": self.topic, "connected": connected, "published": self.published,
                "acknowledged": self.acked}
