"""Ensembles of K RamanNet models: trained with different seeds, combined by the mean of their softmax.

An ensemble run directory::

    RUN/ensemble.json                 format "ramanedge-ensemble" v1: members, their weights hashes and seeds,
                                      the train config, preprocessing, classes, model axis, open-set centroids
                                      and thresholds fitted on the ENSEMBLE's embedding, drift model, metrics
    RUN/members/0/ ... members/K-1/   each a complete single run (trainer.checkpoint: safetensors + run.json)

Every member trains by :func:`trainer.train.train` on the same training part and validates on the same
group-aware validation part; member ``i`` gets seed ``config.seed + i`` (initial weights, dropout, batch order).
Member 0 is therefore the very model a single ``train`` of the same split and seed gives, and the ensemble's
thresholds can be calibrated on spectra that no member trained on. Random initialisation and batch order alone
give most of a deep ensemble's diversity (Lakshminarayanan et al. 2017); bagging the validation parts would
leave no held-out spectra common to all members for the unknown thresholds.

How the members combine (:class:`EnsembleNet`, and the exported graph, ``export._graph.InferenceEnsemble``):

- probabilities: the mean of the members' softmax;
- logits: ``log`` of that mean, computed as ``logsumexp_k(log_softmax_k) - log K`` (finite where a member's
  probability underflows), so ``softmax(logits)`` is the mean probability and argmax is unchanged;
- embedding: the concatenation of the members' L2-normalised embeddings divided by ``sqrt(K)``: unit norm, and
  the cosine of two such embeddings is the mean of the members' cosines. Open-set centroids and thresholds are
  fitted on it, so the runtime's unknown decision (cosine distance to the predicted class's centroid) keeps its
  meaning. The drift model works on preprocessed spectra, not on the model, so it is the single model's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from spectral_core.atomic import write_json_atomic
from spectral_core.contract import OpenSet
from spectral_core.drift import DriftModel
from spectral_core.errors import ContractError, DataError
from spectral_core.hashing import sha256_json
from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.spectrum import SpectralDataset
from trainer.checkpoint import RunInfo, load_run, versions
from trainer.data import validation_split
from trainer.model import RamanNet
from trainer.openset import fit_open_set
from trainer.train import ProgressFn, RunExistsError, TrainConfig, predict, train

__all__ = [
    "ENSEMBLE_JSON",
    "MAX_MEMBERS",
    "EnsembleInfo",
    "EnsembleNet",
    "ensemble_weights_sha256",
    "is_ensemble",
    "load_ensemble",
    "load_reference",
    "predict_any",
    "train_ensemble",
]

logger = logging.getLogger(__name__)

ENSEMBLE_FORMAT_VERSION = 1
ENSEMBLE_JSON = "ensemble.json"
MEMBERS_DIR = "members"
#: more members cost latency linearly and add little after a handful (docs/results.md, "Ensembles")
MAX_MEMBERS = 16
COMBINATION = {
    "probabilities": "mean of the members' softmax",
    "logits": "log of the mean probability (logsumexp of the members' log-softmax minus log K)",
    "embedding": "concatenation of the members' L2-normalised embeddings / sqrt(K) (unit norm)",
}


class EnsembleInfo(BaseModel):
    """Everything about an ensemble run except its members' weights (``ensemble.json``).

    The fields a run's consumers read (classes, axis, preprocess, open_set, drift, weights_sha256, data_sha256,
    created) carry the names they have in :class:`trainer.checkpoint.RunInfo`.
    """

    model_config = ConfigDict(extra="forbid")

    format: str = "ramanedge-ensemble"
    format_version: int = ENSEMBLE_FORMAT_VERSION
    size: int = Field(ge=2, le=MAX_MEMBERS)
    members: list[str] = Field(description="member run directories, relative to the ensemble directory")
    member_weights_sha256: list[str]
    member_seeds: list[int]
    combination: dict[str, str] = Field(default_factory=lambda: dict(COMBINATION))
    train: dict[str, Any] = Field(default_factory=dict)
    preprocess: PreprocessConfig
    preprocess_hash: str = ""
    classes: list[str]
    axis: list[float]
    data_sha256: str = ""
    weights_sha256: str = Field(default="", description="ensemble_weights_sha256 of the members' hashes")
    open_set: OpenSet | None = None
    drift: DriftModel | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created: str = ""


def ensemble_weights_sha256(member_hashes: list[str]) -> str:
    """The identity of an ensemble's weights: SHA-256 of its members' weights hashes, in member order."""
    return sha256_json({"ensemble": list(member_hashes)})


def is_ensemble(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds an ensemble (``ensemble.json``) rather than a single run."""
    return (Path(run_dir) / ENSEMBLE_JSON).is_file()


class EnsembleNet(nn.Module):
    """K RamanNets answering as one: ``forward(x) -> (logits, embedding)`` like :class:`RamanNet`, with
    ``softmax(logits)`` the mean of the members' softmax (see the module docstring)."""

    def __init__(self, members: list[RamanNet]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.n_classes = int(members[0].config.n_classes)
        self.embedding_dim = int(sum(m.config.embedding_dim for m in members))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(x) for m in self.members]
        k = len(outs)
        log_p = torch.stack([F.log_softmax(lg, dim=1) for lg, _ in outs])
        logits = torch.logsumexp(log_p, dim=0) - math.log(k)
        emb = torch.cat([F.normalize(e, p=2.0, dim=1, eps=1e-12) for _, e in outs], dim=1) / math.sqrt(k)
        return logits, emb

    def member_nets(self) -> list[RamanNet]:
        """The members, in order."""
        return [m for m in self.members if isinstance(m, RamanNet)]

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' softmax, computed as such (the reference the exported graph must match)."""
        return torch.stack([torch.softmax(m(x)[0], dim=1) for m in self.members]).mean(dim=0)


def predict_any(
    model: nn.Module, X: NDArray[np.float32], *, batch_size: int = 1024
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Logits and embeddings of preprocessed spectra from a RamanNet or an :class:`EnsembleNet`, in eval mode
    (the mode is restored afterwards): :func:`trainer.train.predict`. Raises DataError without spectra."""
    if len(X) == 0:
        raise DataError("no spectra to predict")
    return predict(model, X, batch_size=batch_size)


def _check_out(out: Path, data_sha: str, train_cfg: dict[str, Any], size: int, force: bool) -> None:
    """Refuse a directory that holds anything but this very ensemble (same data, config, size) unless ``force``."""
    if force or not out.exists():
        return
    if not out.is_dir():
        raise RunExistsError(f"{out} exists and is not a directory")
    ej = out / ENSEMBLE_JSON
    if ej.is_file():
        try:
            raw = json.loads(ej.read_text())
        except (OSError, ValueError):
            raw = {}
        if raw.get("data_sha256") == data_sha and raw.get("train") == train_cfg and raw.get("size") == size:
            logger.info("%s holds an ensemble of the same data and config; it will be reproduced in place", out)
            return
        raise RunExistsError(f"{out} already holds a different ensemble; choose another --out or pass --force")
    if any(out.iterdir()):
        raise RunExistsError(f"{out} is not empty and holds no ramanedge ensemble; choose another --out or pass --force")


def train_ensemble(
    ds: SpectralDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    size: int = 3,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    val: SpectralDataset | None = None,
    init_from: str | Path | None = None,
    on_member: Callable[[int, int], None] | None = None,
) -> EnsembleInfo:
    """Train ``size`` RamanNets (seeds ``config.seed + i``) on one split and write the ensemble to ``out_dir``.

    Args:
        ds: labelled spectra.
        out_dir: the ensemble directory (created); refused if it holds something else, unless ``force``.
        config: the members' training configuration (their seeds are derived from its seed).
        size: number of members, 2 to :data:`MAX_MEMBERS`.
        force: overwrite whatever ``out_dir`` holds.
        progress: every member's per-epoch callback.
        val: an explicit validation set; None: the group-aware ``config.val_fraction`` split of ``ds`` (seed
            ``config.seed``), the same for every member.
        init_from: an ensemble directory of the same size whose member ``i`` starts member ``i`` (fine-tuning).
        on_member: called as ``on_member(i, size)`` before member ``i`` trains (progress lines).

    Returns:
        The :class:`EnsembleInfo` written to ``out_dir/ensemble.json``.

    Raises:
        DataError: a size out of range, data :func:`trainer.train.train` refuses, or ``init_from`` not an
            ensemble of this size.
        RunExistsError: ``out_dir`` holds something else and ``force`` is false.
    """
    if not 2 <= size <= MAX_MEMBERS:
        raise DataError(f"an ensemble has 2 to {MAX_MEMBERS} members, got {size}")
    if init_from is not None:
        src = load_info(init_from)
        if src.size != size:
            raise DataError(f"{init_from}: an ensemble of {src.size} members cannot start one of {size}")
    out = Path(out_dir)
    cfg = config or TrainConfig()
    if ds.y is None:
        raise DataError("training data is unlabelled")
    train_dump = cfg.model_dump(mode="json")
    data_sha = ds.fingerprint()
    _check_out(out, data_sha, train_dump, size, force)
    if val is None and cfg.val_fraction > 0:
        tr, va = validation_split(ds.y, ds.groups, cfg.val_fraction, cfg.seed)
        ds_tr, ds_va = ds.subset(tr), (ds.subset(va) if va.size else None)
    else:
        ds_tr, ds_va = ds, val
    if ds_va is None:
        cfg = cfg.with_overrides({"val_fraction": 0.0})
    # every member chooses its model axis from the same spectra, as a single run of this split would
    members: list[RunInfo] = []
    for i in range(size):
        if on_member is not None:
            on_member(i, size)
        mcfg = cfg.with_overrides({"seed": cfg.seed + i})
        init = None if init_from is None else Path(init_from) / MEMBERS_DIR / str(i)
        members.append(train(ds_tr, out / MEMBERS_DIR / str(i), mcfg, force=True, progress=progress, val=ds_va,
                             init_from=init))
    first = members[0]
    nets = [load_run(out / MEMBERS_DIR / str(i))[0] for i in range(size)]
    net = EnsembleNet(nets).eval()
    pre = Preprocessor(first.preprocess)
    if ds_tr.y is None:
        raise DataError("training data is unlabelled")
    X_tr, y_tr = pre.transform(ds_tr.X, ds_tr.axis), ds_tr.y
    lg_tr, emb_tr = predict_any(net, X_tr)
    metrics: dict[str, Any] = {
        "size": size,
        "train_accuracy": float((lg_tr.argmax(1) == y_tr).mean()),
        "n_train": int(y_tr.size),
        "best_epoch": [m.metrics.get("best_epoch") for m in members],
        "members": [m.metrics for m in members],
    }
    emb_va = pred_va = None
    if ds_va is not None and ds_va.y is not None and ds_va.n_spectra:
        lg_va, emb_va = predict_any(net, pre.transform(ds_va.X, ds_va.axis))
        pred_va = lg_va.argmax(1)
        # lg_va is log(mean probability): the ensemble's cross-entropy is its mean negative value at the label
        metrics.update(
            val_accuracy=float((pred_va == ds_va.y).mean()),
            val_loss=float(-lg_va[np.arange(ds_va.y.size), ds_va.y].mean()),
            n_val=int(ds_va.y.size),
        )
    else:
        metrics.update(val_accuracy=float("nan"), n_val=0)
    open_set = fit_open_set(
        emb_tr, y_tr, len(ds.classes), quantile=cfg.open_set_quantile, margin=cfg.open_set_margin,
        unknown_rate=cfg.unknown_rate, cal_embeddings=emb_va, cal_predicted=pred_va,
        calibration=f"held-out validation part common to the {size} members ({0 if pred_va is None else pred_va.size} "
        f"spectra{', split by group' if ds.groups is not None else ''})",
    )
    hashes = [m.weights_sha256 for m in members]
    info = EnsembleInfo(
        size=size,
        members=[f"{MEMBERS_DIR}/{i}" for i in range(size)],
        member_weights_sha256=hashes,
        member_seeds=[cfg.seed + i for i in range(size)],
        train=train_dump,
        preprocess=first.preprocess,
        preprocess_hash=first.preprocess.hash(),
        classes=list(first.classes),
        axis=list(first.axis),
        data_sha256=data_sha,
        weights_sha256=ensemble_weights_sha256(hashes),
        open_set=open_set,
        # every member fitted the same drift model on the same spectra; a split made here (val None) knows the
        # groups, which the members (given an explicit validation set) do not: refit with them
        drift=_drift(ds_tr, ds_va, first) if ds.groups is not None else first.drift,
        metrics=metrics,
        versions=versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_json_atomic(out / ENSEMBLE_JSON, json.loads(info.model_dump_json()))
    logger.info("ensemble of %d written to %s: val acc %.4f (members %s)", size, out, metrics["val_accuracy"],
                ", ".join(f"{m.metrics.get('val_accuracy', float('nan')):.4f}" for m in members))
    return info


def _drift(ds_tr: SpectralDataset, ds_va: SpectralDataset | None, first: RunInfo) -> DriftModel | None:
    """The drift model of the training and validation spectra, cross-validated by group (as a single run's)."""
    from trainer.train import _fit_drift

    pre = Preprocessor(first.preprocess)
    parts = [ds_tr] + ([ds_va] if ds_va is not None else [])
    X = np.concatenate([pre.transform(p.X, p.axis) for p in parts])
    groups = [p.groups for p in parts]
    g = None if any(x is None for x in groups) else np.concatenate([x for x in groups if x is not None])
    return _fit_drift(X, g)


def load_info(run_dir: str | Path) -> EnsembleInfo:
    """Read ``ensemble.json``.

    Raises:
        ContractError: missing, unreadable, of another format version, or inconsistent.
    """
    ej = Path(run_dir) / ENSEMBLE_JSON
    try:
        raw = json.loads(ej.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"{ej}: unreadable ensemble description ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != "ramanedge-ensemble" or (
        raw.get("format_version") != ENSEMBLE_FORMAT_VERSION
    ):
        raise ContractError(f"{ej}: not a ramanedge-ensemble v{ENSEMBLE_FORMAT_VERSION} description")
    try:
        info = EnsembleInfo.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(f"{ej}: invalid ensemble description: {exc}") from None
    n = info.size
    if len(info.members) != n or len(info.member_weights_sha256) != n or len(info.member_seeds) != n:
        raise ContractError(f"{ej}: {n} members announced, lists of other lengths given")
    if info.weights_sha256 != ensemble_weights_sha256(info.member_weights_sha256):
        raise ContractError(f"{ej}: the ensemble hash does not match its members' hashes (edited or corrupted)")
    return info


def load_ensemble(run_dir: str | Path) -> tuple[EnsembleNet, EnsembleInfo]:
    """Load an ensemble: the :class:`EnsembleNet` in eval mode and its :class:`EnsembleInfo`.

    Each member is loaded by :func:`trainer.checkpoint.load_run` (its own weights hash checked) and must carry
    the weights hash ``ensemble.json`` records for it, the ensemble's classes, axis and preprocessing.

    Raises:
        ContractError: a missing, modified or foreign member, or an invalid ``ensemble.json``.
    """
    d = Path(run_dir)
    info = load_info(d)
    nets: list[RamanNet] = []
    for rel, want in zip(info.members, info.member_weights_sha256, strict=True):
        mdir = (d / rel).resolve()
        if d.resolve() not in mdir.parents:  # a member outside the ensemble directory is refused
            raise ContractError(f"{d / ENSEMBLE_JSON}: member {rel!r} lies outside the ensemble directory")
        net, minfo = load_run(mdir)
        if minfo.weights_sha256 != want:
            raise ContractError(
                f"{mdir}: member weights {minfo.weights_sha256[:12]} are not the ones the ensemble was built from "
                f"({want[:12]})"
            )
        if minfo.classes != info.classes or minfo.preprocess_hash != info.preprocess_hash or not np.allclose(
            minfo.axis, info.axis, rtol=0, atol=1e-9
        ):
            raise ContractError(f"{mdir}: member classes, axis or preprocessing differ from the ensemble's")
        nets.append(net)
    return EnsembleNet(nets).eval(), info


def load_reference(run_dir: str | Path) -> tuple[nn.Module, RunInfo | EnsembleInfo]:
    """The PyTorch model of a run directory, single or ensemble: ``forward(x) -> (logits, embedding)`` in eval
    mode, and its info (``weights_sha256``, ``classes``, ``axis``, ``preprocess`` as :class:`RunInfo` has them).

    This is what validation compares an exported model with: for an ensemble, softmax of its logits is the
    mean of the members' softmax.
    """
    if is_ensemble(run_dir):
        return load_ensemble(run_dir)
    return load_run(run_dir)
