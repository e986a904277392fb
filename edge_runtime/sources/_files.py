"""Filesystem steps of the drop folder: opening without following links, moving without overwriting, and
the keys and reasons of entries refused unread."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import stat
import time

from edge_runtime.sources._names import input_ref

__all__ = ["OPEN_FLAGS", "O_NOFOLLOW", "file_kind", "move_exclusive", "os_reason", "refusal_key"]

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a FIFO swapped in after the claim must not block the open (fstat then refuses it)
OPEN_FLAGS = os.O_RDONLY | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_BINARY", 0)


def refusal_key(kind: str, st: os.stat_result) -> str:
    """The exactly-once key of an entry refused unread: not a hash of its bytes (never read), but of what
    identifies it across a rename and a restart (kind, size, mtime, inode)."""
    ident = f"ramanedge-unread:{kind}:{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    return hashlib.sha256(ident.encode()).hexdigest()


def os_reason(exc: OSError) -> str:
    """An OSError without its file name (names are the record's ref already; a link target never shows)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"[{name or exc.errno}] {exc.strerror or type(exc).__name__}"


def file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return what
    return f"mode {mode:o}"


def move_exclusive(
    src: str, folder: str, name: str, record_id: int | None, *, recovered: bool = False,
    error_json: bytes | None = None,
) -> str:
    """Move ``src`` into ``folder`` under a name no file there has yet (with ``error_json`` written beside it
    as ``<name>.error.json`` first); returns the path it got. Never overwrites a file.

    ``name``, then ``stem.<record id>.ext``, then ``stem.<record id>-<n>.ext``: each tried with ``os.link``
    (fails if the name exists; links a symlink itself) and then the unlink of ``src``; on filesystems without
    hard links an O_EXCL placeholder is created and replaced. A crash between the link and the unlink leaves
    ``src`` with a second link: a recovered file that is already in ``folder`` is only unlinked. A crash
    after the ``.error.json`` and before the move leaves that note alone (the file gets a new one).
    """
    stem, dot, ext = name.partition(".")
    tag = str(record_id) if record_id is not None else str(time.monotonic_ns())
    names = (name if n == 0 else f"{stem}.{tag}{dot}{ext}" if n == 1 else f"{stem}.{tag}-{n - 1}{dot}{ext}"
             for n in range(1_000_000))
    if recovered:
        st = os.lstat(src)
        if st.st_nlink > 1:
            for cand in itertools.islice(names, 64):
                dst = os.path.join(folder, cand)
                try:
                    other = os.lstat(dst)
                except FileNotFoundError:
                    break
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    os.unlink(src)
                    return dst
            names = (name if n == 0 else f"{stem}.{tag}{dot}{ext}" if n == 1 else f"{stem}.{tag}-{n - 1}{dot}{ext}"
                     for n in range(1_000_000))
    hard_links = os.link in os.supports_follow_symlinks
    for cand in names:
        dst = os.path.join(folder, cand)
        note = None
        if error_json is not None:
            note = dst + ".error.json"
            if os.path.lexists(dst):
                continue
            try:
                fd = os.open(note, os.O_CREAT | os.O_EXCL | os.O_WRONLY | O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            try:
                os.write(fd, error_json)
            finally:
                os.close(fd)
        try:
            if hard_links:
                try:
                    os.link(src, dst, follow_symlinks=False)
                except FileExistsError:
                    raise
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                                         errno.ENOSYS):
                        raise
                    hard_links = False
                else:
                    os.unlink(src)
                    return dst
            os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY | O_NOFOLLOW, 0o600))
            os.replace(src, dst)
            return dst
        except FileExistsError:
            if note is not None:
                os.unlink(note)
            continue
        except BaseException:
            if note is not None:
                with contextlib.suppress(OSError):
                    os.unlink(note)
            raise
    raise FileExistsError(errno.EEXIST, f"no free name for {input_ref(name)} in {folder}")
