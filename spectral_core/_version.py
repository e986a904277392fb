"""The package version, read once from the installed distribution's metadata (pyproject.toml is its source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]


def _read() -> str:
    try:
        return version("ramanedge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _read()
