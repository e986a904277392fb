"""The thread policy: free cores by default, the user's number when given, passive OpenMP waiting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer.threads import choose_threads


@pytest.mark.parametrize(("cores", "load", "want"), [(2, 0.0, 2), (2, 1.0, 1), (2, 3.7, 1), (8, 2.4, 6), (1, 0.0, 1)])
def test_default_is_the_free_cores(cores: int, load: float, want: int) -> None:
    choice = choose_threads(None, cores=cores, load=load)
    assert choice.threads == want and f"of {cores} core" in choice.reason


def test_a_requested_count_is_used_as_it_is() -> None:
    assert choose_threads(3, cores=2, load=5.0).threads == 3


def test_train_sets_passive_waiting_before_torch_starts_unless_the_user_chose(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = ("import os, sys\nfrom ramanedge.cli import main\n"
            "rc = main(['train', '--data', 'missing.npz', '--out', 'r'])\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300, check=True).stdout.split()
    assert out == ["PASSIVE", "True"]  # set, and torch was imported after it (the data error comes later)
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300, check=True).stdout.split()
    assert out[0] == "ACTIVE"
