"""DistributedDataParallel on CPU: two processes with the gloo backend under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spectral_core.io import write_npz
from spectral_core.synth import synth_dataset
from trainer.checkpoint import load_run

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "trainer", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path: Path) -> None:
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed beside this python")
    data = write_npz(synth_dataset(classes=3, per_class=20, points=200, seed=5), tmp_path / "d.npz")
    run = tmp_path / "run"
    common = ["--data", str(data), "--out", str(run), "--epochs", "4", "--window", "20", "--step", "10",
              "--batch-size", "32", "--threads", "1"]
    res = _torchrun(*common)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])  # printed by rank 0 only
    assert len(res.stdout.strip().splitlines()) == 1
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    _, info = load_run(run)
    assert info.metrics["world_size"] == 2 and info.train["epochs"] == 4
    # Rank 0 refuses a different run in the same directory and no process is left waiting for it.
    res = _torchrun(*common, "--seed", "9")
    assert res.returncode != 0 and "different run" in res.stderr
