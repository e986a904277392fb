"""Shared fixtures. Real data sets live in ../shared/data beside the checkout (never in the repo).

Tests marked ``data`` are skipped with a visible reason when the data are absent on a user's clone, but
under CI (``CI=true``) missing data is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The suite must fit a 2-core machine where another job keeps one core busy. torch's default (one OpenMP thread
# per core, idle threads spinning) makes every in-process model and every child process fight that job for the
# busy core: the tiny test models gain nothing from a second thread and lose several-fold when it must wait
# (trainer/threads.py, docs/benchmarks.md). Set here, before any test module imports torch, so the pytest
# process and the commands it starts inherit it; a value the user exported wins. Code that chooses its own
# count (TrainConfig.num_threads, `--threads`, the thread-policy tests) still does so explicitly.
for _var, _value in (("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE")):
    os.environ.setdefault(_var, _value)


def shared_data_dir() -> Path:
    env = os.environ.get("RAMANEDGE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real data sets; skips (or fails under CI) when it is missing."""
    d = shared_data_dir()
    if not d.is_dir():
        msg = f"real data sets not found at {d} (set RAMANEDGE_DATA or place ../shared/data beside the checkout)"
        if _in_ci():
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test marked ``data`` needs the data_dir fixture, so the skip/fail rule above applies to it."""
    for item in items:
        if item.get_closest_marker("data") is not None and "data_dir" not in getattr(item, "fixturenames", ()):
            item.fixturenames.append("data_dir")  # type: ignore[attr-defined]
        if item.get_closest_marker("gpu") is not None and "gpu" not in (config.getoption("-m") or ""):
            item.add_marker(pytest.mark.skip(reason="GPU test: opt in with `pytest -m gpu` on a machine with a GPU"))


# --- trainer fixtures (owned by the trainer; export and edge_runtime tests build on them) -------------------
# A tiny RamanNet trained once per session on synthetic data: 4 classes x 40 spectra x 300 points
# (400-1800 cm^-1), windows 20/10, n2 64, embedding 32, 30 epochs; about a second on 2 CPU cores.
from _tiny import TINY_DATA_ARGS, TINY_TRAIN_CONFIG  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz (spectral_core.io.write_npz) of ``synth_dataset(classes=4, per_class=40, points=300, seed=0)``."""
    from spectral_core.io import write_npz
    from spectral_core.synth import synth_dataset

    path = tmp_path_factory.mktemp("tiny_data") / "tiny.npz"
    write_npz(synth_dataset(**TINY_DATA_ARGS), path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RUN directory (trainer.checkpoint format) of a tiny RamanNet trained on ``tiny_data``."""
    pytest.importorskip("torch")
    from spectral_core.io import read_dataset
    from trainer.train import TrainConfig, train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    train(read_dataset(tiny_data), run, TrainConfig.model_validate(TINY_TRAIN_CONFIG))
    return run


# --- export fixtures (owned by export; edge_runtime tests build on them) ----------------------------------
@pytest.fixture(scope="session")
def tiny_onnx(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_run`` exported to fp32 ONNX (contract embedded, opset 18), with its validation report against
    ``tiny_data`` written beside it (``tiny.validation.json``, passed). Treat the files as read-only."""
    pytest.importorskip("onnx")
    from export.onnx_export import export_run
    from export.validate import validate_model

    path = export_run(tiny_run, tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx", precision="fp32")
    report = validate_model(path, tiny_run, tiny_data)
    if not report.passed:
        pytest.fail(f"tiny_onnx fixture: the exported model fails validation: {report.reason}")
    return path
