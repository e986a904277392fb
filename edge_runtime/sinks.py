"""Result sinks besides the ledger: a JSON-lines stream to a file or to stdout, for piping into other tools."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge_runtime.protocols import Sink
from edge_runtime.records import Record

if TYPE_CHECKING:
    from edge_runtime.ledger import Ledger
    from edge_runtime.mqtt import MqttTls

__all__ = ["JsonlSink", "Sink", "open_sinks"]

logger = logging.getLogger(__name__)


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
        self.written = 0
        self.failure: str | None = None

    def write(self, records: Sequence[Record]) -> None:
        if self._fh is None or not records:
            return
        try:
            self._fh.write("".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records))
            self._fh.flush()
            self.written += len(records)
        except (OSError, ValueError) as exc:
            logger.error("JSON-lines sink %s failed (%s); disabled, the ledger keeps every record", self.target, exc)
            self.failure = str(exc)
            self._fh = None

    def status(self) -> dict[str, Any]:
        return {"jsonl": self.target, "written": self.written, "failed": self.failure}

    def close(self, timeout_s: float = 0.0) -> None:
        """Close the file (the lines are flushed at every write: nothing waits, ``timeout_s`` is not needed)."""
        fh, self._fh = self._fh, None
        if fh is not None and self._own:
            fh.close()


def open_sinks(target: str | None, *, mqtt: str | None = None, ledger: Ledger | None = None,
               mqtt_tls: MqttTls | None = None) -> list[Sink]:
    """The sinks for ``--jsonl`` and ``--mqtt``, in that order (empty: neither). The MQTT sink needs the ledger
    (its outbox). A sink that cannot be opened closes those opened before it and raises."""
    sinks: list[Sink] = []
    if target:
        sinks.append(JsonlSink(target))
    if mqtt:
        try:
            if ledger is None:
                raise ValueError("the MQTT sink needs the ledger for its outbox")
            from edge_runtime.mqtt import MqttSink

            sinks.append(MqttSink(mqtt, ledger, tls=mqtt_tls))
        except BaseException:
            for s in sinks:
                s.close(0.0)
            raise
    return sinks
