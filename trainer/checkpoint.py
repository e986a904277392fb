"""A training run on disk: weights as safetensors (data, never a pickle) plus ``run.json``.

``RUN/weights.safetensors``  the model's state_dict (buffers included)
``RUN/run.json``             format version, model config, train config, preprocessing config and hash,
                             class names, the model axis (cm^-1), training-data hash, open-set centroids and
                             thresholds, weights hash, library versions
``RUN/history.csv``, ``RUN/curves.png``  written by the trainer
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from spectral_core._version import __version__
from spectral_core.atomic import write_json_atomic
from spectral_core.contract import OpenSet
from spectral_core.drift import DriftModel
from spectral_core.errors import ContractError, DataError
from spectral_core.hashing import sha256_file
from spectral_core.preprocess import PreprocessConfig
from trainer.model import RamanNet, RamanNetConfig

__all__ = ["RUN_FORMAT_VERSION", "RunInfo", "load_run", "save_run", "versions"]

RUN_FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
RUN_JSON = "run.json"


class RunInfo(BaseModel):
    """Everything about a run except its weights."""

    model_config = ConfigDict(extra="forbid")

    format: str = "ramanedge-run"
    format_version: int = RUN_FORMAT_VERSION
    model: RamanNetConfig
    train: dict[str, Any] = Field(default_factory=dict)
    preprocess: PreprocessConfig
    preprocess_hash: str = ""
    classes: list[str]
    axis: list[float]
    data_sha256: str = ""
    weights_sha256: str = ""
    open_set: OpenSet | None = None
    drift: DriftModel | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created: str = ""


def versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    import platform

    import scipy

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__, "ramanedge": __version__}
    return out


def save_run(run_dir: str | Path, model: RamanNet, info: RunInfo) -> RunInfo:
    """Write weights and run.json into ``run_dir`` (each atomically). Returns the info with hashes filled."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".weights.", suffix=".tmp")
    os.close(fd)
    try:
        # One metadata key only: safetensors keeps metadata in a Rust HashMap whose iteration order is random
        # per process, so two keys would make the file bytes (and weights_sha256) differ between identical runs.
        save_file(state, tmp, metadata={"format": f"ramanedge-run/{RUN_FORMAT_VERSION}"})
        os.replace(tmp, d / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    info = info.model_copy(
        update={
            "weights_sha256": sha256_file(d / WEIGHTS),
            "preprocess_hash": info.preprocess.hash(),
            "created": info.created or datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": info.versions or versions(),
        }
    )
    write_json_atomic(d / RUN_JSON, json.loads(info.model_dump_json()))
    return info


def load_run(run_dir: str | Path, *, map_location: str = "cpu") -> tuple[RamanNet, RunInfo]:
    """Load a run: the model in eval mode and its :class:`RunInfo`.

    Raises:
        ContractError: run.json or the weights are missing, of another format version, or do not match.
    """
    d = Path(run_dir)
    rj, wf = d / RUN_JSON, d / WEIGHTS
    if not rj.is_file() or not wf.is_file():
        missing = [p.name for p in (rj, wf) if not p.is_file()]
        raise ContractError(f"{d} is not a complete ramanedge run (missing {', '.join(missing)})")
    try:
        raw = json.loads(rj.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"{rj}: unreadable run.json ({exc})") from None
    if raw.get("format") != "ramanedge-run" or raw.get("format_version") != RUN_FORMAT_VERSION:
        raise ContractError(
            f"{rj}: run format {raw.get('format')!r} v{raw.get('format_version')} is not "
            f"ramanedge-run v{RUN_FORMAT_VERSION} (made by another version?)"
        )
    try:
        info = RunInfo.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(f"{rj}: invalid run.json: {exc}") from None
    if info.weights_sha256 and sha256_file(wf) != info.weights_sha256:
        raise ContractError(f"{wf}: weights do not match the hash recorded in run.json (modified or corrupted)")
    if len(info.classes) != info.model.n_classes or len(info.axis) != info.model.input_length:
        raise DataError(f"{rj}: classes/axis do not match the model config")
    model = RamanNet(info.model)
    state = load_file(str(wf), device=map_location)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ContractError(f"{wf}: weights do not fit the model config: {exc}") from None
    model.eval()
    return model, info
