"""The thread policy: free cores by default, the user's number when given; OpenMP waiters spin on a quiet
machine and sleep when another process needs a core."""

from __future__ import annotations

import os

import pytest

import trainer.threads as threads
from trainer.threads import choose_threads, plan, set_wait_policy


@pytest.fixture(autouse=True)
def _no_user_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's conftest exports OMP_NUM_THREADS=1; these tests are about the automatic choice."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize(("cores", "load", "want"), [(2, 0.0, 2), (2, 1.0, 1), (2, 3.7, 1), (8, 2.4, 6), (1, 0.0, 1)])
def test_default_is_the_free_cores(cores: int, load: float, want: int) -> None:
    choice = choose_threads(None, cores=cores, load=load)
    assert choice.threads == want and f"of {cores} core" in choice.reason


@pytest.mark.parametrize(
    ("cores", "busy", "want"),
    [
        (2, 0.0, (2, "ACTIVE")),  # a quiet machine: the best setting bench_threads found (2 threads, spinning)
        (2, 0.3, (2, "ACTIVE")),  # a shell, a sensor daemon: still every core free
        (2, 0.5, (1, "PASSIVE")),  # half a core taken counts as a core, for both decisions alike
        (2, 1.0, (1, "PASSIVE")),  # one core busy: one sleeping-waiter thread (the busy case)
        (2, 2.0, (1, "PASSIVE")),
        (4, 1.2, (3, "PASSIVE")),
        (16, 0.2, (16, "ACTIVE")),
        (1, 0.0, (1, "ACTIVE")),
        (1, 0.9, (1, "PASSIVE")),
    ],
)
def test_plan_for_simulated_free_cores(cores: int, busy: float, want: tuple[int, str]) -> None:
    assert plan(cores, busy) == want


@pytest.mark.parametrize("busy", [0.0, 0.49, 0.5, 1.0, 1.6])
def test_thread_count_and_wait_policy_come_from_one_rule(monkeypatch: pytest.MonkeyPatch, busy: float) -> None:
    # The two decisions are taken at different moments (the wait policy before torch loads, the count in
    # train()); on the same reading they must agree: spinning waiters only with every core in use by us.
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.25: busy)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    policy = set_wait_policy()
    n = choose_threads(None).threads
    assert (policy, n) == (("ACTIVE", 2) if busy < 0.5 else ("PASSIVE", 1))


def test_a_requested_count_is_used_as_it_is() -> None:
    assert choose_threads(3, cores=2, load=5.0).threads == 3


def test_omp_num_threads_is_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    choice = choose_threads(None, cores=2, load=0.0, share=2)  # per process: not divided among DDP ranks
    assert choice.threads == 1 and "OMP_NUM_THREADS" in choice.reason
    assert choose_threads(3, cores=2, load=0.0).threads == 3  # an explicit count still wins
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # nested lists are OpenMP's business: the free cores then
    assert choose_threads(None, cores=2, load=0.0).threads == 2


def test_ranks_share_the_free_cores() -> None:
    choice = choose_threads(None, cores=8, load=0.0, share=2)
    assert choice.threads == 4 and "shared by 2" in choice.reason
    assert choose_threads(None, cores=2, load=1.0, share=2).threads == 1


def test_busy_cores_leaves_out_this_process_own_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated 0.25 s sample on 2 CPUs: the machine was fully busy, and this process (an OpenMP thread still
    # spinning after the previous training) accounted for one core of it. Other work: one core.
    reads = iter([(1000, 400), (1050, 400)])  # (all, idle) jiffies: 50 more, none idle
    clock = iter([10.0, 10.25])
    own = iter([3.0, 3.25])
    monkeypatch.setattr(threads, "_machine_times", lambda: next(reads))
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(own))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.busy_cores(0.25) == pytest.approx(1.0)


def test_busy_cores_sees_a_spinning_process() -> None:
    import subprocess
    import sys

    quiet = threads.busy_cores(0.3)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = max(threads.busy_cores(0.3) for _ in range(3))
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.6 and busy > quiet - 0.5, (quiet, busy)


@pytest.mark.parametrize(("busy", "preset", "want"), [(1.0, None, "PASSIVE"), (0.1, None, "ACTIVE"),
                                                      (1.0, "ACTIVE", "ACTIVE"), (0.0, "PASSIVE", "PASSIVE")])
def test_sleeping_waiters_when_a_core_is_busy_spinning_when_quiet_and_never_over_the_users_choice(
    monkeypatch: pytest.MonkeyPatch, busy: float, preset: str | None, want: str | None
) -> None:
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.25: busy)
    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    assert set_wait_policy() == (None if preset is not None else want)
    assert os.environ.get("OMP_WAIT_POLICY") == want
