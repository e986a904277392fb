"""Readers and writers. Every reader returns the same data model; :func:`read_dataset` picks one by
extension and content.

Formats: ``.npz`` (X, y, axis, classes, groups). More readers live one module a format beside this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spectral_core.errors import ReaderError
from spectral_core.io._npz import read_npz, write_npz
from spectral_core.spectrum import SpectralDataset

__all__ = ["read_dataset", "read_npz", "write_npz"]


def read_dataset(path: str | Path, **options: Any) -> SpectralDataset:
    """Read spectra from ``path`` (a file or a folder), choosing the reader by extension and content."""
    p = Path(path)
    if not p.exists():
        raise ReaderError(p, "no such file or folder")
    if p.suffix.lower() == ".npz":
        return read_npz(p)
    raise ReaderError(p, f"unsupported format {p.suffix or '(no extension)'!r}")
