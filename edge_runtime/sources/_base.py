"""What every source is: the :class:`Source` protocol the daemon drives, and the ``submit`` callback it gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edge_runtime.engine import Frame

__all__ = ["Source", "Submit"]

#: hands one frame to the daemon; blocks while the daemon's bounded queue is full (back-pressure)
Submit = Callable[[Frame], None]


class Source(Protocol):
    """A producer of frames, started and stopped by the daemon."""

    url: str

    def open(self) -> None:
        """Open what needs opening, raising on a bad URL or a missing device/folder; nothing flows yet."""

    def start(self, submit: Submit) -> None:
        """Start the producer thread (opens first if :meth:`open` was not called)."""

    def stop(self) -> None:
        """Stop intake: no new frame is produced after this returns (one in hand may still be submitted)."""

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the producer thread to end."""

    def status(self) -> dict[str, Any]:
        """Counters and state for /readyz."""
