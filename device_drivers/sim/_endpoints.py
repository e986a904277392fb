"""The device side of a simulated link: the master of a pty, or a listening TCP socket.

POSIX-only modules (fcntl, termios, tty) are imported where a pty is made or a kernel queue is asked, never at
module top: ``import device_drivers`` and the TCP simulator work where they are missing (Windows).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

from device_drivers.errors import DriverError

__all__ = ["Endpoint", "Gone", "PtyEndpoint", "TcpEndpoint", "wait_until_read"]

logger = logging.getLogger(__name__)

#: the refusal a pty simulation gives where the POSIX terminal modules are missing
PTY_NEEDS_POSIX = "pty simulation needs a POSIX system; use tcp:// (ramanedge simulate --tcp 127.0.0.1:0)"


def _posix_tty() -> ModuleType:
    """The ``tty`` module, or the clear refusal where there are no POSIX ptys (Windows)."""
    try:
        import tty
    except ImportError:
        raise DriverError(PTY_NEEDS_POSIX) from None
    if not hasattr(os, "openpty"):
        raise DriverError(PTY_NEEDS_POSIX)
    return tty


def _fionread(fd: int, request_name: str) -> int:
    """Bytes in a kernel queue of ``fd`` (``FIONREAD`` / ``TIOCOUTQ``); 0 where the platform cannot tell."""
    try:
        import fcntl
        import termios
    except ImportError:
        return 0
    request = getattr(termios, request_name, None)
    if request is None:
        return 0
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, request, buf)
    except OSError:
        return 0
    return int(struct.unpack("i", bytes(buf))[0])


def wait_until_read(unread: Callable[[], int], stop: threading.Event, timeout_s: float,
                     settle_s: float = 0.05) -> bool:
    """Wait until ``unread()`` has stayed 0 for ``settle_s`` (True) or ``timeout_s`` passed (False).

    Zero once is not enough on a pty: bytes still in the kernel's flip buffer are not yet counted by FIONREAD.
    """
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    while not stop.is_set():
        now = time.monotonic()
        if unread() == 0:
            zero_since = now if zero_since is None else zero_since
            if now - zero_since >= settle_s:
                return True
        else:
            zero_since = None
        if now >= deadline:
            return False
        stop.wait(0.005)
    return False


class Endpoint(Protocol):
    """The device side of one link. ``path`` names it for the host (a device path, ``host:port``)."""

    path: str

    def wait_client(self, stop: threading.Event) -> bool: ...

    def recv(self, timeout_s: float) -> bytes: ...

    def send(self, data: bytes, stop: threading.Event) -> None: ...

    def unread(self) -> int: ...

    def drain(self, stop: threading.Event, timeout_s: float = 5.0) -> None: ...

    def plug(self) -> None: ...

    def unplug(self) -> None: ...

    def close(self) -> None: ...


class Gone(Exception):
    """The host side went away (TCP client closed); wait for the next one."""


class PtyEndpoint:
    """The master side of a pty; ``path`` is a symlink to the slave that survives a simulated unplug."""

    def __init__(self, link: str | None) -> None:
        _posix_tty()  # refuse before anything is made on disk
        self._tmpdir: str | None = None
        if link is None:
            self._tmpdir = tempfile.mkdtemp(prefix="ramanedge-sim-")
            link = os.path.join(self._tmpdir, "tty")
        self.path = link
        self.master = -1
        self.slave = -1
        self.plug()

    def plug(self) -> None:
        tty = _posix_tty()
        self.master, self.slave = os.openpty()
        # Raw at once: before the host opens the port, canonical mode would echo and translate CR/LF.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def wait_client(self, stop: threading.Event) -> bool:
        return not stop.is_set()

    def recv(self, timeout_s: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], max(0.0, timeout_s))
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def send(self, data: bytes, stop: threading.Event) -> None:
        view = memoryview(data)
        while view and not stop.is_set():
            _, w, _ = select.select([], [self.master], [], 0.05)
            if not w:
                continue
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def unread(self) -> int:
        """Bytes written but not yet read by the host."""
        if self.slave < 0:
            return 0
        return _fionread(self.slave, "FIONREAD")

    def drain(self, stop: threading.Event, timeout_s: float = 5.0) -> None:
        """Wait until the host has read everything sent (so an unplug loses nothing already sent)."""
        wait_until_read(self.unread, stop, timeout_s)

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    def close(self) -> None:
        self.unplug()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._tmpdir:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)


class TcpEndpoint:
    """A listening socket serving one client at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._lsock = socket.create_server((host, port), reuse_port=False)
        self._lsock.settimeout(0.05)
        self.address: tuple[str, int] = self._lsock.getsockname()[:2]
        self.path = f"{self.address[0]}:{self.address[1]}"
        self._conn: socket.socket | None = None

    def wait_client(self, stop: threading.Event) -> bool:
        while self._conn is None and not stop.is_set():
            try:
                conn, peer = self._lsock.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            logger.info("simulator: client %s connected", peer)
            self._conn = conn
        return self._conn is not None

    def recv(self, timeout_s: float) -> bytes:
        if self._conn is None:
            raise Gone
        r, _, _ = select.select([self._conn], [], [], max(0.0, timeout_s))
        if not r:
            return b""
        try:
            data = self._conn.recv(65536)
        except OSError as exc:
            self.unplug()
            raise Gone from exc
        if not data:
            self.unplug()
            raise Gone
        return data

    def send(self, data: bytes, stop: threading.Event) -> None:
        if self._conn is None:
            raise Gone
        view = memoryview(data)
        while view and not stop.is_set():
            _, w, _ = select.select([], [self._conn], [], 0.05)
            if not w:
                continue
            try:
                n = self._conn.send(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.unplug()
                raise Gone from exc
            view = view[n:]

    def drain(self, stop: threading.Event, timeout_s: float = 5.0) -> None:
        """Half-close and wait for the host to close: every byte sent is delivered before the unplug."""
        if self._conn is None:
            return
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if self.recv(0.05) == b"":
                    continue
            except Gone:
                return

    def unread(self) -> int:
        """Bytes sent but not yet acknowledged by the peer (on loopback: not yet in its receive buffer)."""
        if self._conn is None:
            return 0
        return _fionread(self._conn.fileno(), "TIOCOUTQ")

    def unplug(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def plug(self) -> None:
        """A TCP instrument comes back by accepting the next connection."""

    def close(self) -> None:
        self.unplug()
        self._lsock.close()

