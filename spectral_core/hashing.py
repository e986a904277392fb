"""Stable hashes for arrays, JSON-able configs and files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["sha256_arrays", "sha256_file", "sha256_json"]


def sha256_arrays(*arrays: Any) -> str:
    """Hash arrays by dtype, shape and C-ordered bytes, so equal data gives equal hashes on any platform."""
    h = hashlib.sha256()
    for a in arrays:
        arr = np.ascontiguousarray(np.asarray(a))
        if arr.dtype.kind in "US":
            arr = np.ascontiguousarray(arr.astype("<U"))
        h.update(str(arr.dtype.str).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash a JSON-serialisable object in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
