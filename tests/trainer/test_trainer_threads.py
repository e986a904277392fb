"""The thread policy: free cores by default, the user's number when given; OpenMP waiters spin on a quiet
machine and sleep when another process needs a core."""

from __future__ import annotations

import pytest

import trainer.threads as threads
from trainer.threads import choose_threads, set_wait_policy


@pytest.mark.parametrize(("cores", "load", "want"), [(2, 0.0, 2), (2, 1.0, 1), (2, 3.7, 1), (8, 2.4, 6), (1, 0.0, 1)])
def test_default_is_the_free_cores(cores: int, load: float, want: int) -> None:
    choice = choose_threads(None, cores=cores, load=load)
    assert choice.threads == want and f"of {cores} core" in choice.reason


def test_a_requested_count_is_used_as_it_is() -> None:
    assert choose_threads(3, cores=2, load=5.0).threads == 3


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
    import os

    assert os.environ.get("OMP_WAIT_POLICY") == want
