"""Helpers shared by the benchmark scripts: the machine's CPU model and the section writer of
docs/benchmarks.md (each script owns one ``## `` section and leaves the others untouched)."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

__all__ = ["BENCHMARKS_MD", "cpu_model", "publish", "write_section"]

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(heading: str, text: str, doc: Path = BENCHMARKS_MD) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``) by ``text``, or append it.

    Written atomically (temporary file + rename), so an interrupted benchmark never truncates the file.
    """
    doc.parent.mkdir(parents=True, exist_ok=True)
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    body = text.rstrip("\n") + "\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + body
    else:
        nxt = old.find("\n## ", start + len(heading))
        tail = "" if nxt < 0 else old[nxt + 1 :]
        new = old[:start] + body + ("\n" + tail if tail else "")
    fd, tmp = tempfile.mkstemp(dir=doc.parent, prefix=".benchmarks.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, doc)


def publish(heading: str, text: str, *, write: bool) -> int:
    """A benchmark script's last step: print its section, write it into docs/benchmarks.md unless told not
    to (``--no-write``); returns the exit status."""
    print(text)
    if write:
        write_section(heading, text)
    return 0
