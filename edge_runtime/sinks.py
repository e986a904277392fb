"""Result sinks besides the ledger: a JSON-lines stream to a file or to stdout, for piping into other tools."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from edge_runtime.ledger import Ledger
    from edge_runtime.mqtt import MqttTls

__all__ = ["JsonlSink", "Sink", "Sinks", "open_sink"]

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives committed records, one micro-batch at a time."""

    def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, flushed after every micro-batch (``-`` writes to stdout).

    A sink that fails (a closed pipe, a full disk) is logged and disabled: the ledger already holds the
    records, so the daemon keeps classifying rather than dying on a consumer that went away.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self._own = self.target != "-"
        if self._own:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._fh: TextIO | None = open(self.target, "a", encoding="utf-8")  # noqa: SIM115
        else:
            self._fh = sys.stdout

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if self._fh is None or not records:
            return
        try:
            self._fh.write("".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records))
            self._fh.flush()
        except (OSError, ValueError) as exc:
            logger.error("JSON-lines sink %s failed (%s); disabled, the ledger keeps every record", self.target, exc)
            self._fh = None

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None and self._own:
            fh.close()


class Sinks:
    """Several sinks fed the same batches, closed in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        for s in self.sinks:
            s.write(records)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def open_sink(target: str | None, *, mqtt: str | None = None, ledger: Ledger | None = None,
              mqtt_tls: MqttTls | None = None) -> Sink | None:
    """The sinks for ``--jsonl`` and ``--mqtt`` (None: neither). The MQTT sink needs the ledger (its outbox)."""
    sinks: list[Sink] = []
    if target:
        sinks.append(JsonlSink(target))
    if mqtt:
        if ledger is None:
            raise ValueError("the MQTT sink needs the ledger for its outbox")
        from edge_runtime.mqtt import MqttSink

        sinks.append(MqttSink(mqtt, ledger, tls=mqtt_tls))
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else Sinks(sinks)
