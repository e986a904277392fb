"""Shared fixtures. Real data sets live in ../shared/data beside the checkout (never in the repo).

Tests marked ``data`` are skipped with a visible reason when the data are absent on a user's clone, but
under CI (``CI=true``) missing data is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
        if item.get_closest_marker("gpu") is not None and not config.getoption("-m"):
            item.add_marker(pytest.mark.skip(reason="GPU test: opt in with `pytest -m gpu` on a machine with a GPU"))
