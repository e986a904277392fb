"""An in-memory byte link: the protocol path without a pty or a socket (like pyserial's ``loop://``).

:class:`MemoryTransport` is a :class:`~device_drivers._transport.Transport` whose device side is a script: the
bytes to return to each host write (a mapping of exact host bytes, or a function), bytes pushed at any time
(garbage included), and a disconnect on request. It records every byte the host writes, so a test can compare
the host's side of a conversation byte for byte. :class:`MemoryLink` is the factory a driver reopens on every
reconnect: one fresh :class:`MemoryTransport` per connection, all kept in order, and opens that fail on request.

Example::

    link = MemoryLink(device)                       # device(bytes_written) -> bytes the device answers
    dev = FramedSpectrometer("memory://", link)     # the real handshake, in memory
    link.transports[0].written                      # every byte the host sent on the first connection
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from device_drivers.errors import DeviceDisconnectedError

__all__ = ["MemoryLink", "MemoryTransport", "Respond"]

logger = logging.getLogger(__name__)

#: the device side of a script: the device's answer to one host write (``b""``: no answer)
Respond = Callable[[bytes], bytes]


class MemoryTransport:
    """A byte link held in memory, its device side scripted.

    Args:
        respond: the device's answer to each host write: a mapping from the exact bytes of one write to the
            bytes the device sends back (a write not in it gets no answer), or a function of the bytes written.
        description: how the link is named in messages.

    Attributes:
        written: every byte the host wrote, in order.
        writes: each write call's bytes, in order.
        discarded: bytes the host threw away with :meth:`reset_input`.
    """

    def __init__(self, respond: Mapping[bytes, bytes] | Respond | None = None, *,
                 description: str = "memory") -> None:
        self.description = description
        self._respond = respond
        self._cond = threading.Condition()
        self._rx = bytearray()
        self._gone: str | None = None
        self._closed = False
        self.written = bytearray()
        self.writes: list[bytes] = []
        self.discarded = 0

    # ---------------------------------------------------------------- device side (the script)
    def push(self, data: bytes) -> None:
        """Send ``data`` from the device (a reply, a spectrum, garbage): the host reads it next."""
        with self._cond:
            self._rx += data
            self._cond.notify_all()

    def disconnect(self, reason: str = "unplugged") -> None:
        """Drop the link: bytes already sent are still read, then every read and write fails."""
        with self._cond:
            self._gone = reason
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._gone is None and not self._closed

    @property
    def unread(self) -> int:
        """Bytes the device sent that the host has not read yet."""
        with self._cond:
            return len(self._rx)

    # ---------------------------------------------------------------- host side (the Transport)
    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        """Bytes the device sent, at most ``max_bytes``, waiting up to ``timeout_s`` (monotonic clock)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._rx:
                if self._closed or self._gone is not None:
                    raise DeviceDisconnectedError(f"{self.description}: {self._gone or 'closed'}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self._cond.wait(left)
            out = bytes(self._rx[:max_bytes])
            del self._rx[:max_bytes]
            return out

    def write(self, data: bytes, timeout_s: float) -> None:
        """Record ``data`` and queue the device's answer to it; a dropped link raises DeviceDisconnectedError."""
        if self._closed or self._gone is not None:
            raise DeviceDisconnectedError(f"{self.description}: write failed ({self._gone or 'closed'})")
        data = bytes(data)
        self.written += data
        self.writes.append(data)
        if self._respond is None:
            return
        answer = self._respond.get(data, b"") if isinstance(self._respond, Mapping) else self._respond(data)
        if answer:
            self.push(answer)

    def reset_input(self) -> int:
        """Discard what the device sent and the host has not read; returns how many bytes."""
        with self._cond:
            n = len(self._rx)
            self._rx.clear()
        self.discarded += n
        return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MemoryLink:
    """A transport factory over :class:`MemoryTransport`: a fresh one per open (the first and each reconnect).

    Args:
        respond: the device's script, shared by every connection (a device keeps its state, e.g. its
            spectrum counter, across a reconnect); see :class:`MemoryTransport`.
        on_open: called with each new transport before the driver uses it (e.g. to push bytes a device sends
            when plugged in).

    Attributes:
        transports: every transport opened, in order (``transports[-1]`` is the current one).
        refused: opens refused so far (see :meth:`refuse`).
    """

    def __init__(self, respond: Mapping[bytes, bytes] | Respond | None = None, *,
                 on_open: Callable[[MemoryTransport], None] | None = None, description: str = "memory") -> None:
        self._respond = respond
        self._on_open = on_open
        self.description = description
        self.transports: list[MemoryTransport] = []
        self.refused = 0
        self._refuse = 0

    def refuse(self, opens: int) -> None:
        """Make the next ``opens`` opens fail (the port is absent), as while a device is unplugged."""
        self._refuse = int(opens)

    @property
    def current(self) -> MemoryTransport:
        """The transport opened last."""
        if not self.transports:
            raise DeviceDisconnectedError(f"{self.description}: never opened")
        return self.transports[-1]

    def __call__(self) -> MemoryTransport:
        if self._refuse > 0:
            self._refuse -= 1
            self.refused += 1
            raise DeviceDisconnectedError(f"cannot open {self.description}: no such device")
        n = len(self.transports) + 1
        t = MemoryTransport(self._respond, description=f"{self.description} (connection {n})")
        if self._on_open is not None:
            self._on_open(t)
        self.transports.append(t)
        return t
