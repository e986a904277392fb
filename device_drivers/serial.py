"""pyserial transport: a serial port, a pty or a pyserial URL as a :class:`~device_drivers._transport.Transport`.

Ports are opened with ``serial.serial_for_url``, so besides a device path (``/dev/ttyUSB0``, ``COM3``) the port
may be one of pyserial's URLs: ``spy://PORT?file=trace.txt`` (a hex dump of every byte both ways),
``rfc2217://HOST:PORT`` (a networked serial server with port control), ``socket://HOST:PORT``, ``loop://``.
"""

from __future__ import annotations

import logging

import serial as pyserial

from device_drivers.errors import DeviceDisconnectedError, DeviceTimeoutError

__all__ = ["SerialTransport"]

logger = logging.getLogger(__name__)


class SerialTransport:
    """A serial port opened with pyserial's ``serial_for_url``, 8N1, no flow control, exclusive.

    Args:
        port: device path (``/dev/ttyUSB0``, a pty slave, ``COM3``) or a pyserial URL (``spy://COM3``,
            ``rfc2217://HOST:PORT``, ``socket://HOST:PORT``, ``loop://``).
        baud: baud rate (ignored by ptys and USB CDC devices, honoured by real UARTs).
        write_timeout_s: bound on every write, seconds.

    Raises:
        DeviceDisconnectedError: the port cannot be opened (absent, busy, permission).
    """

    def __init__(self, port: str, baud: int = 115200, write_timeout_s: float = 2.0) -> None:
        self.port = port
        self.baud = int(baud)
        self.description = f"serial {port} @ {self.baud} baud"
        self._timeout = 0.1
        self._closing = False
        try:
            self._ser = pyserial.serial_for_url(
                port, self.baud, timeout=self._timeout, write_timeout=write_timeout_s, exclusive=True
            )
        except (pyserial.SerialException, OSError, ValueError) as exc:
            raise DeviceDisconnectedError(f"cannot open serial port {port}: {exc}") from exc

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        """Bytes that arrived within ``timeout_s`` (at most ``max_bytes``); ``b""`` on timeout."""
        try:
            waiting = self._ser.in_waiting
            if waiting:
                return bytes(self._ser.read(min(waiting, max_bytes)))
            t = max(0.0, round(timeout_s, 3))
            if t != self._timeout:  # pyserial reconfigures the port on every change: only when it changes
                self._ser.timeout = t
                self._timeout = t
            first = self._ser.read(1)  # pyserial waits on the monotonic clock
            if not first:
                return b""
            rest = min(self._ser.in_waiting, max_bytes - 1)
            return bytes(first + self._ser.read(rest)) if rest > 0 else bytes(first)
        except (pyserial.SerialException, OSError) as exc:
            raise DeviceDisconnectedError(f"{self.description}: read failed ({exc})") from exc
        except (TypeError, AttributeError, ValueError) as exc:
            # pyserial drops its file descriptor (fd = None) when another thread closes the port in the
            # middle of a read; that is a closed port, not a programming error.
            if self._closing or not self._ser.is_open:
                raise DeviceDisconnectedError(f"{self.description}: port closed during a read") from exc
            raise

    def write(self, data: bytes, timeout_s: float) -> None:
        """Write all of ``data``; bounded by the port's write timeout (``timeout_s`` is advisory here)."""
        try:
            self._ser.write(data)
        except pyserial.SerialTimeoutException as exc:
            raise DeviceTimeoutError(f"{self.description}: write of {len(data)} bytes timed out") from exc
        except (pyserial.SerialException, OSError) as exc:
            raise DeviceDisconnectedError(f"{self.description}: write failed ({exc})") from exc

    def reset_input(self) -> int:
        """Discard bytes already received; returns how many."""
        try:
            n = int(self._ser.in_waiting)
            self._ser.reset_input_buffer()
            return n
        except (pyserial.SerialException, OSError) as exc:
            raise DeviceDisconnectedError(f"{self.description}: {exc}") from exc

    def close(self) -> None:
        # Set before pyserial drops its file descriptor, which it does before it clears is_open.
        self._closing = True
        try:
            self._ser.close()
        except (pyserial.SerialException, OSError) as exc:
            logger.debug("%s: close failed: %s", self.description, exc)
