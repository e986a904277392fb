"""How many CPU threads torch gets, on a small machine that other work shares.

torch's default is one intra-op thread per core, and OpenMP threads spin while they wait for work. On a 2-core
box where another process keeps one core busy (a daemon, a CI job), the two threads fight that process for one
core and every spin is time stolen from the other thread: a small model trained 8x slower with 2 threads than
with 1 in that case. The policy:

* intra-op threads: the cores that are free now (cores minus the 1-minute load average, rounded, at least 1),
  unless the user asks for a number (``--threads``, ``num_threads``);
* inter-op threads: 1 (RamanNet has no independent branches worth a second pool);
* waiting OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), set before torch is loaded
  unless the user set it; it costs nothing measurable when the cores are free.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

__all__ = ["ThreadChoice", "apply_threads", "choose_threads", "prefer_passive_waiting"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count chosen, and why (for the user's log)."""

    threads: int
    reason: str


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def choose_threads(requested: int | None, *, cores: int | None = None, load: float | None = None) -> ThreadChoice:
    """``requested`` threads, or (None) the cores that are free now.

    Args:
        requested: a thread count the user asked for; used as it is.
        cores: usable cores (default: this process's CPU affinity).
        load: the 1-minute load average (default: the system's; 0 where the platform has none).
    """
    n = _cores() if cores is None else max(1, cores)
    if requested is not None:
        return ThreadChoice(int(requested), f"{requested} thread(s) as asked")
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # Windows has no load average
            load = 0.0
    free = max(1, min(n, round(n - load)))
    return ThreadChoice(free, f"{free} of {n} core(s) free (load average {load:.1f})")


def prefer_passive_waiting() -> None:
    """Make idle OpenMP threads sleep rather than spin, unless the user chose otherwise.

    Must run before torch is imported: OpenMP reads the variable once, when it starts.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply_threads(choice: ThreadChoice) -> int:
    """Set torch's intra-op threads (and inter-op threads to 1 when still possible); returns the previous count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    # only allowed before the process's first parallel work; afterwards it stays as it is
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    logger.info("torch threads: %s", choice.reason)
    return old
