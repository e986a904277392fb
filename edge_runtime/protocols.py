"""What the daemon requires of a source and of a sink: everything it calls or reads is declared here, so the
daemon never has to probe an object for an attribute (``getattr``/``hasattr``) and mypy checks every source
and sink against the whole of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_runtime.records import Frame, Record

__all__ = ["Sink", "Source", "Submit"]

#: how a source hands a frame to the daemon (blocks while the daemon's queue is full: back-pressure)
Submit = Callable[[Frame], None]


class Source(Protocol):
    """A producer of frames, started and stopped by the daemon."""

    url: str

    @property
    def axis(self) -> NDArray[np.float64] | None:
        """The axis (cm^-1) every spectrum will have, when known before the first one arrives (an instrument
        reports it when opened), so the daemon builds its resampling operator ahead; else None (each dropped
        file brings its own)."""

    @property
    def finished(self) -> bool:
        """True once the source will never produce another frame (a replay that ran out, a dead thread); the
        daemon stops when every source is finished and the queue is empty."""

    def open(self) -> None:
        """Open what needs opening, raising on a bad URL or a missing device/folder; nothing flows yet."""

    def start(self, submit: Submit) -> None:
        """Start the producer thread (opens first if :meth:`open` was not called)."""

    def stop(self) -> None:
        """Stop intake: no new frame is produced after this returns (one in hand may still be submitted)."""

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the producer thread to end."""

    def status(self) -> dict[str, Any]:
        """Counters and state for /readyz and the dashboard."""


class Sink(Protocol):
    """Receives committed records, one micro-batch at a time, after the ledger holds them."""

    def write(self, records: Sequence[Record]) -> None:
        """Hand on a committed micro-batch; never raises for a consumer that went away (the ledger has it)."""

    def status(self) -> dict[str, Any]:
        """Counters and state for the dashboard."""

    def close(self, timeout_s: float) -> None:
        """Deliver what is still pending for at most ``timeout_s`` seconds, then release everything."""
