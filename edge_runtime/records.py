"""The records that flow through the daemon: a :class:`Frame` in, an :class:`Outcome` from the engine, a
:class:`Committed` from the ledger with its JSON :data:`Record`.

Data only, no behaviour beyond bounding text: the engine, the ledger, the sources and the sinks all import
these types and none of them imports another for them, so the modules of ``edge_runtime`` form no cycle. The
ledger never changes an outcome: it returns one :class:`Committed` per outcome it was given.

A :data:`Record` is a wire format: the ledger's ``results`` rows, ``results.jsonl`` lines, MQTT payloads,
``/results`` and ``POST /classify`` bodies are all ``json.dumps`` of one, its keys in :data:`RECORD_KEYS` order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_ERROR_BYTES",
    "RECORD_KEYS",
    "Committed",
    "Frame",
    "LedgerEntry",
    "ModelIdentity",
    "Outcome",
    "Prepared",
    "Record",
    "bounded_text",
]

#: error text kept in a record (ledger, /results, JSON lines, MQTT, the dashboard), UTF-8 bytes; the outcome
#: keeps the whole reason until it is committed (the drop folder bounds its quarantine ``.error.json`` itself)
MAX_ERROR_BYTES = 2048
_CUT_NOTE = re.compile(r" \.\.\. \[cut ([\d,]+) bytes\]$")


def bounded_text(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, saying how much was cut (``... [cut 1,234 bytes]``).

    A reason built from hostile input (a 50 MB line quoted in a parser error) must not travel whole into the
    ledger, the sinks and every dashboard poll.
    """
    if len(text) * 4 <= limit:  # at most 4 bytes a character: certainly short enough
        return text
    raw = text.encode("utf-8", errors="surrogateescape")
    if len(raw) <= limit:
        return text
    earlier = 0
    m = _CUT_NOTE.search(text[-64:])
    if m is not None:  # cut again (an outcome's 64 KiB, then a record's 2 KiB): the note counts both cuts
        earlier = int(m.group(1).replace(",", ""))
        raw = raw[: len(raw) - len(m.group(0).encode())]
    keep = limit - 40  # room for the note
    head = raw[:keep].decode("utf-8", errors="ignore")  # a character split by the cut is dropped whole
    cut = len(raw) - len(head.encode("utf-8", errors="surrogateescape")) + earlier
    return f"{head} ... [cut {cut:,} bytes]"


@dataclass(frozen=True)
class ModelIdentity:
    """The model a record names as the one that made it.

    Attributes:
        model_sha256: SHA-256 of the ONNX file.
        preprocess_hash: hash of the contract's preprocessing configuration.
        provider: the execution provider the session really runs on (read back from onnxruntime).
    """

    model_sha256: str
    preprocess_hash: str
    provider: str


@dataclass(frozen=True)
class Prepared:
    """A spectrum already preprocessed in its caller's thread, valid only for the engine that did it (a model
    swap in between makes the worker preprocess it again).

    Attributes:
        owner: the engine that preprocessed it.
        row: the model input (model axis), or None when the spectrum cannot be classified (``bad``).
        bad: why the spectrum cannot be classified (NaN, flat), else None.
        preprocess_s: time spent preprocessing, s.
        edge_fill: cm^-1 of the model axis filled from the nearest measured point, below and above.
    """

    owner: object
    row: NDArray[np.float32] | None
    bad: str | None
    preprocess_s: float
    edge_fill: tuple[float, float]


@dataclass
class Frame:
    """One spectrum on its way through the daemon, or an input that already failed (``error`` set).

    Attributes:
        source: where it came from (device URL, ``watch://`` URL, ``http``).
        ref: the input reference inside the source (file name, ``seq=12``, request id).
        axis: source axis, cm^-1 (None when the input could not be read).
        intensities: counts on ``axis`` (None when the input could not be read).
        metadata: device facts (device_serial, integration_time_us, seq, saturated, ...).
        t_received: time.monotonic() when the frame (or file claim) arrived, s.
        acquired_at: acquisition wall-clock time, s since the epoch, when known.
        read_s: time spent reading/parsing the input, s.
        error: (kind, reason) of an input that cannot be classified.
        content_sha256: hash of the file's bytes (file drops; the exactly-once key with ``ref``).
        on_done: called with what the ledger made of its outcome, once committed (file moves, HTTP replies).
        preprocess_ahead: preprocess a long spectrum in the caller's thread (``Engine.prepare_frame``).
        prepared: the result of that, for the worker.
    """

    source: str
    ref: str
    axis: NDArray[np.float64] | None
    intensities: NDArray[Any] | None
    metadata: dict[str, Any] = field(default_factory=dict)
    t_received: float = field(default_factory=time.monotonic)
    acquired_at: float | None = None
    read_s: float = 0.0
    error: tuple[str, str] | None = None
    content_sha256: str | None = None
    on_done: Callable[[Committed], None] | None = None
    preprocess_ahead: bool = False
    prepared: Prepared | None = None


@dataclass
class Outcome:
    """What became of a frame: a classification or an error with a reason. Times in seconds."""

    frame: Frame
    ok: bool
    class_name: str | None = None
    class_index: int | None = None
    confidence: float | None = None
    probabilities: list[float] | None = None
    unknown: bool | None = None
    open_set_distance: float | None = None
    #: the open-set threshold of the predicted class that ``open_set_distance`` was compared with
    open_set_threshold: float | None = None
    #: drift flag (T^2 > limit or Q > limit), None when the model carries no drift model
    drift: bool | None = None
    drift_t2: float | None = None
    drift_q: float | None = None
    #: the limits T^2 and Q were compared with (the served model's)
    drift_t2_limit: float | None = None
    drift_q_limit: float | None = None
    error_kind: str | None = None
    error: str | None = None
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    batch_size: int = 0

    @classmethod
    def failed(cls, frame: Frame, kind: str, reason: str) -> Outcome:
        return cls(frame=frame, ok=False, error_kind=kind, error=reason)


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger already holds for a dropped file."""

    id: int
    status: str
    error_kind: str | None
    error: str | None


#: One committed result or error as JSON. The key order is the wire order (and the ledger's column order);
#: ``class`` is a Python keyword, hence the functional form.
Record = TypedDict(
    "Record",
    {
        "id": int,
        "source": str,
        "input_ref": str,
        "content_sha256": str | None,
        "status": str,  # "ok" or "error"
        "class": str | None,
        "class_index": int | None,
        "confidence": float | None,
        "probabilities": list[float] | None,
        "unknown": bool | None,
        "open_set_distance": float | None,
        "error_kind": str | None,
        "error": str | None,
        "acquired_at": float | None,  # s since the epoch
        "received_at": float,
        "completed_at": float,
        "read_ms": float | None,
        "preprocess_ms": float | None,
        "inference_ms": float | None,
        "queue_ms": float | None,
        "total_ms": float | None,
        "batch_size": int | None,
        "model_sha256": str,
        "preprocess_hash": str,
        "provider": str,
        "device_serial": str | None,
        "integration_time_us": int | None,
        "seq": int | None,
        "saturated": bool | None,
        "metadata": dict[str, Any] | None,
        "open_set_threshold": float | None,
        "drift": bool | None,
        "drift_t2": float | None,
        "drift_q": float | None,
        "drift_t2_limit": float | None,
        "drift_q_limit": float | None,
    },
)
#: the keys of a :data:`Record`, in wire order
RECORD_KEYS: tuple[str, ...] = tuple(Record.__annotations__)


@dataclass(frozen=True)
class Committed:
    """What the ledger made of one outcome: a new record, or none because the same drop is already recorded.

    Attributes:
        outcome: the outcome committed (unchanged by the ledger).
        record_id: the new record's id, or for a duplicate the id of the record the drop already has (None
            when that one could not be read back).
        completed_at: when the transaction committed, s since the epoch.
        record: the new record, as the sinks and ``/results`` show it; None for a duplicate.
        previous: for a duplicate, what the ledger recorded the first time (its status decides done/ or
            quarantine/).
    """

    outcome: Outcome
    record_id: int | None
    completed_at: float
    record: Record | None
    previous: LedgerEntry | None = None

    @property
    def duplicate(self) -> bool:
        """True when no new record was written (the drop's key was already in the ledger)."""
        return self.record is None
