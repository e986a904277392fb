"""How many CPU threads torch gets, on a small machine that other work shares.

torch's default is one intra-op thread per core, and OpenMP threads spin while they wait for work. On a 2-core
box where another process keeps one core busy (a daemon, a CI job), the two threads fight that process for one
core and every spin is time stolen from the other thread: a small model trained 8x slower with 2 threads than
with 1 in that case. The policy:

* intra-op threads: the cores that are free now (cores minus those other work keeps busy, sampled from
  /proc/stat, rounded, at least 1), unless the user asks for a number (``--threads``, ``num_threads``);
* inter-op threads: 1 (RamanNet has no independent branches worth a second pool);
* waiting OpenMP threads spin (``OMP_WAIT_POLICY=ACTIVE``) when every core is free, the fastest setting there,
  and sleep (``PASSIVE``) when another process keeps a core busy; set before torch is loaded, unless the user
  set it.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

__all__ = ["ThreadChoice", "apply_threads", "busy_cores", "choose_threads", "set_wait_policy"]

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


def busy_cores(sample_s: float = 0.25) -> float:
    """How many cores other work keeps busy now: from two reads of /proc/stat ``sample_s`` apart (Linux), else
    the 1-minute load average (which lags by a minute), else 0.

    This process sleeps while it samples, so its own work is not counted.
    """
    def times() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    a = times()
    if a is not None:
        time.sleep(sample_s)
        b = times()
        if b is not None and b[0] > a[0]:
            return (1.0 - (b[1] - a[1]) / (b[0] - a[0])) * (os.cpu_count() or 1)
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # Windows has no load average
        return 0.0


def choose_threads(requested: int | None, *, cores: int | None = None, load: float | None = None) -> ThreadChoice:
    """``requested`` threads, or (None) the cores that are free now.

    Args:
        requested: a thread count the user asked for; used as it is.
        cores: usable cores (default: this process's CPU affinity).
        load: cores busy with other work (default: :func:`busy_cores`).
    """
    n = _cores() if cores is None else max(1, cores)
    if requested is not None:
        return ThreadChoice(int(requested), f"{requested} thread(s) as asked")
    if load is None:
        load = busy_cores()
    free = max(1, min(n, round(n - load)))
    return ThreadChoice(free, f"{free} of {n} core(s) free ({load:.1f} busy with other work)")


def set_wait_policy() -> str | None:
    """Choose how idle OpenMP threads wait, unless the user chose (``OMP_WAIT_POLICY``): spinning (``ACTIVE``)
    when every core is free, sleeping (``PASSIVE``) when another process keeps a core busy; returns the policy
    set (None: the user's stays).

    Measured (docs/benchmarks.md, "Training threads"): on a quiet 2-core machine two spinning threads were the
    fastest setting, 25% ahead of sleeping ones; with one core busy, spinning threads took 1.8x as long as
    sleeping ones. Must run before torch is imported: OpenMP reads the variable once, when it starts.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    policy = "PASSIVE" if busy_cores() >= 0.5 else "ACTIVE"
    os.environ["OMP_WAIT_POLICY"] = policy
    return policy


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
