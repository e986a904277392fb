"""How many CPU threads torch gets, on a small machine that other work shares.

torch's default is one intra-op thread per core, and OpenMP threads spin while they wait for work. On a 2-core
box where another process keeps one core busy (a daemon, a CI job), the two threads fight that process for one
core and every spin is time stolen from the other thread: a small model trained 8x slower with 2 threads than
with 1 in that case. The policy (measured: docs/benchmarks.md, "Training threads"):

* intra-op threads: the cores that other work leaves free now, at least 1, unless the user chose a number
  (``--threads``, ``num_threads``, or ``OMP_NUM_THREADS`` in the environment). Other work is what the machine
  spends beyond this process: a sample of /proc/stat minus this process's own CPU time over the same interval,
  since its OpenMP (or BLAS) threads may still spin from the last training in the same process (``evaluate``);
* inter-op threads: 1 (RamanNet has no independent branches worth a second pool);
* waiting OpenMP threads spin (``OMP_WAIT_POLICY=ACTIVE``) when every core is free, the fastest setting there,
  and sleep (``PASSIVE``) when another process keeps a core busy; set before torch is loaded, unless the user
  set it. Both decisions use one rule (:func:`plan`): all cores free means less than half a core busy.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

__all__ = ["ThreadChoice", "apply_threads", "busy_cores", "choose_threads", "plan", "set_wait_policy"]

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


def _machine_times() -> tuple[int, int] | None:
    """(all, idle) jiffies summed over the machine's CPUs from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def busy_cores(sample_s: float = 0.25) -> float:
    """How many cores other work keeps busy now (cores, >= 0).

    From two reads of /proc/stat ``sample_s`` apart (Linux), minus what this process itself spent meanwhile
    (all its threads: OpenMP or BLAS threads left spinning by earlier work would otherwise count as other
    work, and the next training in the same process would lose its second thread); elsewhere the 1-minute
    load average (which lags by a minute and counts this process), else 0.
    """
    a = _machine_times()
    if a is not None:
        own0, t0 = time.process_time(), time.monotonic()
        time.sleep(sample_s)
        b = _machine_times()
        own1, t1 = time.process_time(), time.monotonic()
        if b is not None and b[0] > a[0] and t1 > t0:
            machine = (1.0 - (b[1] - a[1]) / (b[0] - a[0])) * (os.cpu_count() or 1)
            own = (own1 - own0) / (t1 - t0)
            return max(0.0, machine - own)
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # Windows has no load average
        return 0.0


def plan(cores: int, busy: float) -> tuple[int, str]:
    """The automatic setting for ``cores`` usable cores of which other work keeps ``busy`` busy.

    Returns:
        (intra-op threads, OpenMP wait policy): the free cores (a core counts as busy from half of it on), at
        least 1; ``"ACTIVE"`` (spinning waiters) when every core is free, else ``"PASSIVE"`` (sleeping ones).
    """
    cores = max(1, cores)
    taken = int(max(0.0, busy) + 0.5)  # half up: 0.5 busy is one core taken, in both decisions alike
    free = max(1, cores - taken)
    return free, "ACTIVE" if taken == 0 else "PASSIVE"


def _env_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it holds one positive count (a list such as ``4,2`` is left to OpenMP)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def choose_threads(
    requested: int | None, *, cores: int | None = None, load: float | None = None, share: int = 1
) -> ThreadChoice:
    """``requested`` threads, else ``OMP_NUM_THREADS`` when set, else the cores that are free now.

    Args:
        requested: a thread count the user asked for; used as it is.
        cores: usable cores (default: this process's CPU affinity).
        load: cores busy with other work (default: :func:`busy_cores`).
        share: processes of this machine that split the free cores (DDP ranks); only the free-core choice
            is divided, a count the user chose is per process.
    """
    if requested is not None:
        return ThreadChoice(int(requested), f"{requested} thread(s) as asked")
    env = _env_threads()
    if env is not None:
        return ThreadChoice(env, f"{env} thread(s) from OMP_NUM_THREADS")
    n = _cores() if cores is None else max(1, cores)
    if load is None:
        load = busy_cores()
    free, _ = plan(n, load)
    reason = f"{free} of {n} core(s) free ({load:.1f} busy with other work)"
    if share > 1:
        free = max(1, free // share)
        reason += f", shared by {share} processes"
    return ThreadChoice(free, reason)


def set_wait_policy() -> str | None:
    """Choose how idle OpenMP threads wait, unless the user chose (``OMP_WAIT_POLICY``): spinning (``ACTIVE``)
    when every core is free, sleeping (``PASSIVE``) when another process keeps a core busy (:func:`plan`);
    returns the policy set (None: the user's stays).

    Measured (docs/benchmarks.md, "Training threads"): on a quiet 2-core machine two spinning threads were the
    fastest setting, 25% ahead of sleeping ones; with one core busy, spinning threads took 1.8x as long as
    sleeping ones. Must run before torch is imported: OpenMP reads the variable once, when it starts.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    _, policy = plan(_cores(), busy_cores())
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
