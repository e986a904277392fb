"""Bytes in and out of a device, with a timeout on every call. Protocols sit on top (framing, ASCII lines)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Transport", "TransportFactory"]


class Transport(Protocol):
    """A byte link to one device.

    ``read`` returns what arrived within ``timeout_s`` (``b""`` when nothing did) and raises
    :class:`~device_drivers.errors.DeviceDisconnectedError` when the link is gone; ``write`` sends everything
    within ``timeout_s`` or raises a DriverError. Neither ever blocks without a bound.
    """

    description: str

    def read(self, max_bytes: int, timeout_s: float) -> bytes: ...

    def write(self, data: bytes, timeout_s: float) -> None: ...

    def reset_input(self) -> int: ...

    def close(self) -> None: ...


class TransportFactory(Protocol):
    """Opens a fresh link (the first time and on every reconnect)."""

    def __call__(self) -> Transport: ...
