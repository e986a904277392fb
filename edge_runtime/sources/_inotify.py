"""Linux inotify for one folder, through ctypes: the names of files created, written, or moved in.

The drop-folder source polls this descriptor itself (no extra thread): one ``read`` returns every event
queued since the last one, so a burst of thousands of files costs a few system calls, not a callback each.
A queue overflow (the kernel dropped events) is reported so that the caller rescans the folder.

Besides the names, each ``wait`` notes which files a writer still holds open for writing and which it closed
(``IN_CLOSE_WRITE``) or moved in complete (``IN_MOVED_TO``): :meth:`Inotify.take_states`. The drop folder uses
this as its "complete" signal, so a writer that pauses between chunks of one open file is never read half-way.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
import threading
from pathlib import Path

__all__ = ["Inotify", "available"]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
# inotify's flags are the O_ flags of the platform (absent on Windows, where this module is never used)
IN_NONBLOCK = getattr(os, "O_NONBLOCK", 0o4000)
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)
_MASK = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
_COMPLETE = IN_CLOSE_WRITE | IN_MOVED_TO
_WRITING = IN_CREATE | IN_MODIFY


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return lib


def available() -> bool:
    """Whether inotify can be used on this system."""
    return _libc() is not None


class Inotify:
    """Events of one folder (not recursive). ``wait`` also returns when :meth:`wakeup` is called.

    Raises:
        OSError: inotify unavailable, or the watch cannot be added (e.g. the per-user watch limit).
    """

    name = "inotify"

    def __init__(self, folder: Path) -> None:
        lib = _libc()
        if lib is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        if lib.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._buf = b""
        self._states: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.closed = False
        #: the folder was deleted, moved away or unmounted: this watch will never report anything again
        self.dead = False

    def wait(self, timeout_s: float) -> tuple[set[str], bool]:
        """Wait up to ``timeout_s`` for events; returns (file names seen, whether events were lost).

        Events are lost when the kernel's queue overflowed, or when the folder itself went away (``dead``).
        """
        names: set[str] = set()
        overflow = False
        if self.closed:
            return names, overflow
        ready = self._poll.poll(max(0, int(timeout_s * 1000)))
        for fd, _ in ready:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data = self._buf + chunk
            off = 0
            while off + _EVENT.size <= len(data):
                _wd, mask, _cookie, n = _EVENT.unpack_from(data, off)
                if off + _EVENT.size + n > len(data):
                    break
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif mask & _GONE:
                    self.dead = overflow = True
                elif n and not mask & (IN_ISDIR | IN_IGNORED):
                    raw = data[off + _EVENT.size : off + _EVENT.size + n].rstrip(b"\0")
                    name = os.fsdecode(raw)
                    names.add(name)
                    # events come in order: the last one of a name says whether it is still being written
                    if mask & _COMPLETE:
                        self._states[name] = True
                    elif mask & _WRITING:
                        self._states[name] = False
                off += _EVENT.size + n
            self._buf = data[off:]
        return names, overflow

    def take_states(self) -> dict[str, bool]:
        """Names seen since the last call: True when last closed after writing or moved in, False while a
        writer may still hold the file open (created or modified, not yet closed)."""
        states, self._states = self._states, {}
        return states

    def wakeup(self) -> None:
        """Make a waiting :meth:`wait` return now (safe from any thread, also after :meth:`close`)."""
        with self._lock:  # never a write to a descriptor number that close() released for reuse
            if self.closed:
                return
            with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
                os.write(self._wake_w, b"\0")

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for fd in (self._fd, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
