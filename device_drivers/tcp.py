"""TCP transport: the same protocols over a socket (serial-to-Ethernet bridges, networked instruments)."""

from __future__ import annotations

import logging
import socket
import time

from device_drivers.errors import DeviceDisconnectedError, DeviceTimeoutError

__all__ = ["TcpTransport"]

logger = logging.getLogger(__name__)


class TcpTransport:
    """A TCP connection to ``host:port``.

    Args:
        connect_timeout_s: bound on the connect, seconds.

    Raises:
        DeviceDisconnectedError: the connection cannot be made.
    """

    def __init__(self, host: str, port: int, connect_timeout_s: float = 2.0) -> None:
        self.host, self.port = host, int(port)
        self.description = f"tcp {host}:{self.port}"
        try:
            self._sock = socket.create_connection((host, self.port), timeout=connect_timeout_s)
        except OSError as exc:
            raise DeviceDisconnectedError(f"cannot connect to {host}:{self.port}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._eof = False

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        """Bytes that arrived within ``timeout_s``; ``b""`` on timeout. EOF is a disconnect."""
        if self._eof:
            raise DeviceDisconnectedError(f"{self.description}: closed by the device")
        try:
            self._sock.settimeout(max(1e-3, timeout_s))
            data = self._sock.recv(max_bytes)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise DeviceDisconnectedError(f"{self.description}: read failed ({exc})") from exc
        if not data:
            self._eof = True
            raise DeviceDisconnectedError(f"{self.description}: closed by the device")
        return data

    def write(self, data: bytes, timeout_s: float) -> None:
        """Send all of ``data`` within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        view = memoryview(data)
        try:
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeoutError(f"{self.description}: write of {len(data)} bytes timed out")
                self._sock.settimeout(left)
                n = self._sock.send(view)
                view = view[n:]
        except TimeoutError as exc:
            raise DeviceTimeoutError(f"{self.description}: write of {len(data)} bytes timed out") from exc
        except OSError as exc:
            raise DeviceDisconnectedError(f"{self.description}: write failed ({exc})") from exc

    def reset_input(self) -> int:
        """Discard bytes already received; returns how many."""
        n = 0
        try:
            self._sock.setblocking(False)
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    self._eof = True
                    break
                n += len(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            raise DeviceDisconnectedError(f"{self.description}: {exc}") from exc
        finally:
            self._sock.setblocking(True)
        return n

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError as exc:
            logger.debug("%s: close failed: %s", self.description, exc)
