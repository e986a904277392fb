"""Training RamanNet: cross-entropy + semi-hard triplet loss, Adam, reduce-LR-on-plateau, best-validation
checkpoint, open-set centroids and thresholds, and a run directory (see :mod:`trainer.checkpoint`).

As in the paper (and its Keras code): total loss = 0.5 * cross-entropy + 0.5 * triplet loss on the
L2-normalised embedding; Adam; ReduceLROnPlateau(factor 0.9, patience 10) on the validation loss; the
checkpoint kept is the one of the best validation loss (``selection``: or of the best smoothed validation loss,
or an average of the last epochs' weights, see :mod:`trainer.selection`). The data are preprocessed once with
THE :class:`spectral_core.preprocess.Preprocessor`, the very code the edge runtime runs; the training batches
may then be augmented (``augment``, :mod:`trainer.augment`), never the validation or any later use.

Reproducible on CPU: same data, same :class:`TrainConfig` (seed included), same thread count -> bit-identical
weights. All randomness (initialisation, dropout, batch order) is drawn from the seed inside a forked RNG, so
training does not disturb (or depend on) the caller's global torch RNG.

Under ``torchrun`` (``torch.distributed`` initialised) the model is wrapped in DistributedDataParallel: each
global batch of ``batch_size`` spectra is shared between the processes, gradients are averaged, batch-norm
buffers are taken from rank 0 before every evaluation, and only rank 0 writes the run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spectral_core.drift import DriftModel, fit_drift
from spectral_core.errors import DataError, RamanEdgeError
from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.spectrum import SpectralDataset
from trainer.augment import AugmentConfig, augment_batch
from trainer.checkpoint import RUN_JSON, RunInfo, save_run, versions
from trainer.data import MIN_PER_CLASS, check_labelled, choose_model_axis, validation_split
from trainer.losses import triplet_semihard_loss
from trainer.model import RamanNet, RamanNetConfig, window_starts
from trainer.openset import fit_open_set
from trainer.selection import SelectionConfig, Selector
from trainer.threads import apply_threads, choose_threads

__all__ = [
    "SIZE_KEYS",
    "SMALL_DATA_SPECTRA",
    "EpochStats",
    "RunExistsError",
    "TrainConfig",
    "predict",
    "size_defaults",
    "train",
    "with_model_axis",
    "with_size_defaults",
]

logger = logging.getLogger(__name__)

HISTORY_CSV = "history.csv"
CURVES_PNG = "curves.png"
_DERIVED = ("input_length", "n_classes")  # model fields set from the data, never by the user


class RunExistsError(RamanEdgeError, FileExistsError):
    """The output directory already holds something other than this very run; pass ``force`` to overwrite."""


class TrainConfig(BaseModel):
    """Everything that decides a training run's result. Written into ``run.json`` beside the weights."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=100, ge=1, description="maximum number of epochs")
    batch_size: int = Field(default=256, ge=2, description="spectra per (global) batch")
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(default=0.0, ge=0)
    ce_weight: float = Field(default=0.5, ge=0, description="weight of the cross-entropy loss")
    triplet_weight: float = Field(default=0.5, ge=0, description="weight of the semi-hard triplet loss")
    triplet_margin: float = Field(default=1.0, gt=0, description="triplet margin (tfa default), embedding units")
    plateau_factor: float = Field(default=0.9, gt=0, lt=1, description="LR multiplier on a plateau")
    plateau_patience: int = Field(default=10, ge=0, description="epochs without improvement before LR drops")
    min_lr: float = Field(default=0.0, ge=0)
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="stop after this many epochs without improvement (None: never)"
    )
    val_fraction: float = Field(default=0.1, ge=0, lt=1, description="share of the data held out for validation")
    seed: int = Field(default=0, ge=0)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    axis_tolerance_cm1: float | None = Field(
        default=None, ge=0,
        description="without a target axis, the model axis lies this far (cm^-1) inside the range all training "
        "spectra cover (None: the larger of 2 cm^-1 and one axis step; 0: the whole range)",
    )
    model: dict[str, Any] = Field(
        default_factory=dict, description="RamanNetConfig overrides (window, step, n1, n2, paper_compat, ...)"
    )
    num_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads (None: the cores free at the start, trainer.threads)"
    )
    recalibrate_bn: bool = Field(
        default=True,
        description="after each epoch, set batch-norm running statistics to their exact training-set average",
    )
    open_set_quantile: float = Field(default=0.99, gt=0, le=1)
    open_set_margin: float = Field(default=0.0, ge=0, description="added to each cosine-distance threshold")
    unknown_rate: float = Field(
        default=0.05, gt=0, lt=1,
        description="target share of known spectra flagged unknown; thresholds fitted on the validation part",
    )
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        description="which weights are kept: best-loss, smoothed or swa (trainer.selection)",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="augmentation of the training batches after preprocessing (trainer.augment); off by default",
    )

    @field_validator("model")
    @classmethod
    def _model_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        allowed = set(RamanNetConfig.model_fields) - set(_DERIVED)
        unknown = sorted(set(v) - allowed)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; choose from {sorted(allowed)}")
        # Validate the values now (with placeholder sizes) so a typo fails before any data is read.
        RamanNetConfig(input_length=max(int(v.get("window", 50)), 2), n_classes=2, **v)
        return v

    def model_for(self, input_length: int, n_classes: int) -> RamanNetConfig:
        """The RamanNet architecture for data of ``input_length`` points and ``n_classes`` classes."""
        return RamanNetConfig(input_length=input_length, n_classes=n_classes, **self.model)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a config from a ``.toml`` or ``.json`` file (never executed as code).

        Raises:
            DataError: unreadable file, unknown extension or invalid fields.
        """
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise DataError(f"{p}: cannot read the training config ({exc})") from None
        try:
            if p.suffix.lower() == ".toml":
                raw = tomllib.loads(text)
            elif p.suffix.lower() == ".json":
                raw = json.loads(text)
            else:
                raise DataError(f"{p}: training config must be .toml or .json")
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{p}: invalid {p.suffix[1:]} ({exc})") from None
        # A run.json may be given: its "train" section is a TrainConfig.
        if isinstance(raw, dict) and raw.get("format") == "ramanedge-run":
            raw = raw.get("train", {})
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise DataError(f"{p}: invalid training config: {exc}") from None

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with ``overrides`` applied; ``None`` values are ignored; ``"model.window"`` sets a model key
        (likewise ``preprocess.``, ``selection.`` and ``augment.``).

        Raises:
            DataError: an override is not a valid field or value.
        """
        data = self.model_dump()
        for key, value in overrides.items():
            if value is None:
                continue
            head, dot, sub = key.partition(".")
            if dot and head in ("model", "preprocess", "selection", "augment"):
                data[head] = {**data[head], sub: value}
            else:
                data[key] = value
        try:
            return TrainConfig.model_validate(data)
        except ValidationError as exc:
            raise DataError(f"invalid training option: {exc}") from None


#: Below this many training spectra a batch of 256 (the paper's) would give fewer than 8 gradient steps an
#: epoch: the "small data" settings apply (see :func:`size_defaults`).
SMALL_DATA_SPECTRA = 2048
#: The settings :func:`size_defaults` chooses, as ``TrainConfig.with_overrides`` keys.
SIZE_KEYS = ("batch_size", "model.bn_momentum", "epochs", "early_stopping_patience", "selection.mode")
_SMALL = {"batch_size": 64, "model.bn_momentum": 0.1, "epochs": 300, "early_stopping_patience": 60,
          "selection.mode": "swa"}
_LARGE = {"batch_size": 256, "model.bn_momentum": 0.01, "epochs": 200, "early_stopping_patience": 50,
          "selection.mode": "best-loss"}
#: Epochs of swa's fixed schedule on small data when no epoch count is given (what docs/results.md measured;
#: best-loss keeps 300 epochs with early stopping, which it needs to find its epoch).
SWA_EPOCHS_SMALL = 150


def size_defaults(n_train: int) -> tuple[dict[str, Any], str]:
    """Batch size, batch-norm momentum, epochs and early-stopping patience for ``n_train`` training spectra.

    Two regimes, split at :data:`SMALL_DATA_SPECTRA` (8 batches of 256):

    - fewer (every data set in ``../shared/data``, 77-570 training spectra a split): ``small_data.toml``, batch
      64, momentum 0.1, 300 epochs, patience 60. With batch 256 an epoch of a few hundred spectra is one or two
      gradient steps, and 100 epochs (the old default) stop RamanNet before it converges (melanoma NH2 4-fold:
      99.4% against 99.8%); 64 still holds 2-5 spectra a class of 12-27 classes, which the semi-hard triplet
      loss needs as positives. Momentum 0.1 makes the running statistics follow the last ~10 steps (a couple
      of epochs) instead of Keras' ~100.
      Model selection ``swa`` (:mod:`trainer.selection`): on the four shared data sets, whose validation parts
      hold 9-60 spectra, the best-validation-loss epoch was often an early lucky one (docs/results.md, "Model
      selection and augmentation"); averaging the last quarter of a fixed schedule of
      :data:`SWA_EPOCHS_SMALL` epochs (when the epochs are not given) matched or beat it on every set.
    - more: the paper's Keras setup (``paper.toml``): batch 256, momentum 0.01 (Keras 0.99), 200 epochs,
      patience 50, best validation loss; an epoch is then >= 8 steps, so ~100 steps of running statistics is
      <= 12 epochs. (Not measured with swa: no shared data set is that large.)

    Returns:
        (values as ``with_overrides`` keys, the reason in one sentence).
    """
    if n_train < SMALL_DATA_SPECTRA:
        return dict(_SMALL), (f"{n_train} training spectra < {SMALL_DATA_SPECTRA} (a batch of 256 would be under 8 "
                              "steps an epoch): small-data settings as trainer/configs/small_data.toml")
    return dict(_LARGE), (f"{n_train} training spectra >= {SMALL_DATA_SPECTRA}: the paper's settings as "
                          "trainer/configs/paper.toml")


def with_size_defaults(cfg: TrainConfig, n_train: int, given: set[str]) -> tuple[TrainConfig, str]:
    """``cfg`` with :func:`size_defaults` applied to the settings not in ``given`` (set by a config file or a
    flag, as :data:`SIZE_KEYS` names them), and one line saying what was chosen and why."""
    values, why = size_defaults(n_train)
    chosen = {k: v for k, v in values.items() if k not in given}
    mode = cfg.selection.mode if "selection.mode" in given else values["selection.mode"]
    if mode == "swa" and "epochs" in chosen and n_train < SMALL_DATA_SPECTRA:
        chosen["epochs"] = SWA_EPOCHS_SMALL
    out = cfg.with_overrides(chosen)
    names = {"batch_size": "batch {}", "model.bn_momentum": "batch-norm momentum {}", "epochs": "{} epochs",
             "early_stopping_patience": "early stopping after {} epochs without improvement",
             "selection.mode": "model selection {}"}
    current = {"batch_size": out.batch_size, "model.bn_momentum": out.model.get("bn_momentum"),
               "epochs": out.epochs, "early_stopping_patience": out.early_stopping_patience,
               "selection.mode": out.selection.describe()}
    parts = [names[k].format(current[k]) + ("" if k in chosen else " (given)") for k in SIZE_KEYS]
    if out.selection.mode == "swa":  # a fixed schedule: the patience is not used, and the line must not say so
        parts[SIZE_KEYS.index("early_stopping_patience")] = "no early stopping (swa: a fixed schedule)"
    parts.append(f"augmentation {out.augment.describe()}")
    return out, f"training settings: {', '.join(parts)}; {why}"


def with_model_axis(cfg: TrainConfig, datasets: list[SpectralDataset | None]) -> TrainConfig:
    """``cfg`` with its model axis chosen for ``datasets`` (see :func:`trainer.data.choose_model_axis`);
    unchanged when it names a target axis. Evaluation resolves it once so every split trains on one axis."""
    axes = [d.axis for d in datasets if d is not None]
    pre = choose_model_axis(cfg.preprocess, axes, cfg.axis_tolerance_cm1)
    return cfg if pre is cfg.preprocess else cfg.model_copy(update={"preprocess": pre})


@dataclass(frozen=True)
class EpochStats:
    """One epoch's numbers, handed to the ``progress`` callback and written to history.csv.

    Losses are means over the epoch's spectra; accuracies are fractions in [0, 1]; ``val_*`` are NaN when
    there is no validation split; ``seconds`` is the epoch's wall time.
    """

    epoch: int
    epochs: int
    lr: float
    loss: float
    ce: float
    triplet: float
    acc: float
    val_loss: float
    val_ce: float
    val_triplet: float
    val_acc: float
    seconds: float
    best: bool


ProgressFn = Callable[[EpochStats], None]


def _dist() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, (0, 1) when it is not in use."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_run_dir(out: Path, data_sha: str, train_cfg: dict[str, Any], force: bool) -> None:
    """Refuse a directory that holds anything but this very run (same data and config) unless ``force``."""
    if force or not out.exists():
        return
    if not out.is_dir():
        raise RunExistsError(f"{out} exists and is not a directory")
    rj = out / RUN_JSON
    if rj.is_file():
        try:
            raw = json.loads(rj.read_text())
        except (OSError, ValueError):
            raw = {}
        if raw.get("data_sha256") == data_sha and raw.get("train") == train_cfg:
            logger.info("%s holds a run of the same data and config; it will be reproduced in place", out)
            return
        raise RunExistsError(
            f"{out} already holds a different run (other data or config); choose another --out or pass --force"
        )
    if any(out.iterdir()):
        raise RunExistsError(f"{out} is not empty and holds no ramanedge run; choose another --out or pass --force")


@torch.no_grad()
def predict(
    model: torch.nn.Module, X: NDArray[np.float32] | torch.Tensor, *, batch_size: int = 1024
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Logits [N, C] and L2-normalised embeddings [N, D] of preprocessed spectra, in eval mode, from a RamanNet
    or any module with its outputs (an ensemble: ``trainer.ensemble.EnsembleNet``).

    The model's train/eval mode is restored afterwards. No spectra: empty arrays for a RamanNet, a DataError for
    another module (whose output widths are not known without a forward pass).
    """
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))
    logits, embs = [], []
    try:
        for i in range(0, x.shape[0], batch_size):
            lo, em = model(x[i : i + batch_size])
            logits.append(lo)
            embs.append(em)
    finally:
        model.train(was_training)
    if not logits:
        if not isinstance(model, RamanNet):
            raise DataError("no spectra to predict")
        c, d = model.config.n_classes, model.config.embedding_dim
        return np.zeros((0, c), np.float32), np.zeros((0, d), np.float32)
    return torch.cat(logits).numpy(), torch.cat(embs).numpy()


@torch.no_grad()
def _evaluate(
    model: RamanNet, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig
) -> tuple[float, float, float, float]:
    """(loss, ce, triplet, accuracy) in eval mode; the triplet loss per chunk of ``batch_size`` as Keras does."""
    model.eval()
    n = x.shape[0]
    ce_sum = tl_sum = 0.0
    correct = 0
    for i in range(0, n, cfg.batch_size):
        xb, yb = x[i : i + cfg.batch_size], y[i : i + cfg.batch_size]
        logits, emb = model(xb)
        m = xb.shape[0]
        ce_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        tl_sum += float(triplet_semihard_loss(yb, emb, cfg.triplet_margin)) * m
        correct += int((logits.argmax(1) == yb).sum())
    ce, tl = ce_sum / n, tl_sum / n
    return cfg.ce_weight * ce + cfg.triplet_weight * tl, ce, tl, correct / n


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch as ceil(n / batch_size) batches of near-equal size (never a lone spectrum, which
    batch norm cannot train on, and rarely a batch without triplet positives)."""
    perm = torch.randperm(n, generator=gen)
    k = max(1, math.ceil(n / batch_size))
    return list(torch.tensor_split(perm, k))


def _broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every process rank 0's batch-norm running statistics (DDP lets them drift between syncs)."""
    for b in model.buffers():
        torch.distributed.broadcast(b, src=0)


def _any_rank(flag: bool) -> bool:
    """True if ``flag`` is true on any process (``flag`` itself without torch.distributed)."""
    _, world = _dist()
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def _ranks_in_sync(model: torch.nn.Module) -> bool:
    """Whether every process holds bit-identical parameters (a DDP self-check recorded in the run)."""
    _, world = _dist()
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    stats = torch.stack([flat.sum(), flat.abs().sum(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum()])
    gathered = [torch.zeros_like(stats) for _ in range(world)]
    torch.distributed.all_gather(gathered, stats)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _allreduce_mean(values: list[float], weight: float) -> list[float]:
    """Weighted mean of per-process numbers across processes (identity without torch.distributed)."""
    _, world = _dist()
    if world == 1:
        return values
    t = torch.tensor([v * weight for v in values] + [weight], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return [float(v) / float(t[-1]) for v in t[:-1]]


def train(
    ds: SpectralDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    val: SpectralDataset | None = None,
    init_from: str | Path | None = None,
) -> RunInfo:
    """Train RamanNet on ``ds`` and write the run to ``out_dir``.

    Args:
        ds: labelled spectra on any axis the preprocessing accepts.
        out_dir: the RUN directory (created). Refused if it holds a different run, unless ``force``.
        config: training configuration (defaults: the paper's).
        force: overwrite whatever ``out_dir`` holds.
        progress: called after every epoch with its :class:`EpochStats` (on rank 0 only).
        val: an explicit validation set (same classes); when given, ``config.val_fraction`` is not used.
        init_from: a RUN directory whose weights start the training (fine-tuning); it must have the same
            architecture, classes and model axis.

    Returns:
        The :class:`RunInfo` written to ``out_dir/run.json``.

    Raises:
        DataError: unlabelled data, one class only, too few spectra, a class too small, data that cannot be
            preprocessed or is too short for the model's window, all before any training.
        RunExistsError: ``out_dir`` holds something else and ``force`` is false.
    """
    out = Path(out_dir)
    rank, world = _dist()
    check_labelled(ds, min_per_class=MIN_PER_CLASS)
    if val is not None and (val.y is None or tuple(val.classes) != tuple(ds.classes)):
        raise DataError(f"validation classes {list(val.classes)} differ from the training classes {list(ds.classes)}")
    # The model axis, unless the config names one: inside what every training spectrum covers, with the
    # serving tolerance to spare, so the same spectra from another instrument still land on it. run.json keeps
    # the config as given ("train") and the preprocessing as run, chosen axis included ("preprocess").
    asked = config or TrainConfig()
    cfg = with_model_axis(asked, [ds, val])
    if ds.y is None:  # for the type checker; check_labelled already refused it
        raise DataError("training data is unlabelled")
    data_sha = ds.fingerprint()
    train_dump = asked.model_dump(mode="json")
    refusal: RunExistsError | None = None
    if rank == 0:
        try:
            _check_run_dir(out, data_sha, train_dump, force)
        except RunExistsError as exc:
            refusal = exc
    # Every process must learn of rank 0's refusal, or the others would wait for it in a collective forever.
    if _any_rank(refusal is not None):
        raise refusal or RunExistsError(f"rank 0 refused to write into {out}")

    pre = Preprocessor(cfg.preprocess)
    X_all = pre.transform(ds.X, ds.axis)
    axis = pre.output_axis(ds.axis)
    y_all = ds.y
    if val is not None:
        if val.y is None:
            raise DataError("validation data is unlabelled")
        tr_idx = np.arange(ds.n_spectra, dtype=np.int64)
        X_tr, y_tr = X_all, y_all
        X_va, y_va = pre.transform(val.X, val.axis), val.y
        if not np.allclose(pre.output_axis(val.axis), axis, rtol=0, atol=1e-6):
            raise DataError("validation spectra do not preprocess onto the training axis (set a target axis)")
    else:
        tr_idx, va_idx = validation_split(y_all, ds.groups, cfg.val_fraction, cfg.seed)
        X_tr, y_tr, X_va, y_va = X_all[tr_idx], y_all[tr_idx], X_all[va_idx], y_all[va_idx]
    counts_tr = np.bincount(y_tr, minlength=len(ds.classes))
    if counts_tr.min() < MIN_PER_CLASS:
        c = ds.classes[int(counts_tr.argmin())]
        raise DataError(f"class {c!r} keeps {int(counts_tr.min())} training spectra after the validation split")
    if X_tr.shape[0] < 2 * world:
        raise DataError(f"too few training spectra ({X_tr.shape[0]}) for {world} processes")
    try:
        mcfg = cfg.model_for(int(axis.size), len(ds.classes))
        window_starts(mcfg.input_length, mcfg.window, mcfg.step, paper_compat=mcfg.paper_compat)
    except (ValueError, ValidationError) as exc:
        raise DataError(f"model does not fit the data ({axis.size} points after preprocessing): {exc}") from None

    init_state = _init_state(init_from, mcfg, list(ds.classes), axis) if init_from is not None else None

    choice = choose_threads(cfg.num_threads, share=world)  # the free cores are shared by this machine's ranks
    old_threads = apply_threads(choice)
    try:
        with torch.random.fork_rng(devices=[]):
            model, history, best_epoch, selected = _fit(
                mcfg, cfg, X_tr=X_tr, y_tr=y_tr, X_va=X_va, y_va=y_va, progress=progress, rank=rank, world=world,
                init_state=init_state, step_cm1=_axis_step(axis),
            )
            logits_tr, emb = predict(model, X_tr)
            logits_va, emb_va = predict(model, X_va)
    finally:
        torch.set_num_threads(old_threads)

    # Centroids from the training spectra, thresholds from the held-out (group-aware) validation part: spectra
    # the weights never saw sit farther out than training ones, and that is what a threshold must allow for.
    open_set = fit_open_set(
        emb, y_tr, len(ds.classes), quantile=cfg.open_set_quantile, margin=cfg.open_set_margin,
        unknown_rate=cfg.unknown_rate, cal_embeddings=emb_va, cal_predicted=logits_va.argmax(1),
        calibration=f"held-out validation part of the training data ({int(y_va.size)} spectra"
        f"{', split by group' if ds.groups is not None else ''})",
    )
    groups_fit = None if ds.groups is None or val is not None else np.concatenate([ds.groups[tr_idx], ds.groups[va_idx]])
    drift = _fit_drift(np.concatenate([X_tr, X_va]), groups_fit)
    best = history[best_epoch - 1]
    metrics: dict[str, Any] = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_accuracy": float((logits_tr.argmax(1) == y_tr).mean()),
        "val_accuracy": selected.get("val_acc", best["val_acc"]),
        "val_loss": selected.get("val_loss", best["val_loss"]),
        "selection": selected,
        "augment": cfg.augment.describe(),
        "n_train": int(y_tr.size),
        "n_val": int(y_va.size),
        "world_size": world,
        "ranks_in_sync": _ranks_in_sync(model) if world > 1 else True,
        "seconds": float(sum(h["seconds"] for h in history)),
    }
    if ds.provenance.get("skipped_spectra"):  # --bad-spectra skip left these out: the run records which
        metrics["skipped_spectra"] = ds.provenance["skipped_spectra"]
    if init_from is not None:
        metrics["init_from"] = str(init_from)
    info = RunInfo(
        model=mcfg,
        train=train_dump,
        preprocess=cfg.preprocess,
        classes=list(ds.classes),
        axis=[float(a) for a in axis],
        data_sha256=data_sha,
        open_set=open_set,
        drift=drift,
        metrics=metrics,
        versions=versions(),
    )
    if rank != 0:
        return info
    out.mkdir(parents=True, exist_ok=True)
    info = save_run(out, model, info)
    _write_history(out / HISTORY_CSV, history)
    from trainer.plots import plot_curves

    plot_curves(history, out / CURVES_PNG)
    logger.info(
        "run written to %s: best epoch %d, val acc %.4f, %d train / %d val spectra",
        out, best_epoch, metrics["val_accuracy"], metrics["n_train"], metrics["n_val"],
    )
    return info


def _axis_step(axis: NDArray[np.float64]) -> float:
    """The mean step of the model axis, cm^-1 (0 for a single point)."""
    return float((axis[-1] - axis[0]) / (axis.size - 1)) if axis.size > 1 else 0.0


def _fit_drift(X: NDArray[np.float32], groups: NDArray[np.str_] | None) -> DriftModel | None:
    """The drift model of the preprocessed training spectra, or None (logged) when they are too few."""
    from threadpoolctl import threadpool_limits

    try:
        # one BLAS thread: with OpenBLAS's threads on a busy machine the fit of melanoma (632 x 2,090) took 56 s
        # on 2 threads against 5 s on one (covid: 33 s against 1.8 s)
        with threadpool_limits(limits=1):
            return fit_drift(X, groups=groups)
    except DataError as exc:
        logger.warning("no drift model in this run: %s", exc)
        return None


def _init_state(
    init_from: str | Path, mcfg: RamanNetConfig, classes: list[str], axis: NDArray[np.float64]
) -> dict[str, torch.Tensor]:
    """The weights of the run ``init_from`` after checking they fit this training run."""
    from trainer.checkpoint import load_run

    model, info = load_run(init_from)
    if info.model != mcfg:
        raise DataError(f"{init_from}: its architecture {info.model} differs from this run's {mcfg}")
    if info.classes != classes:
        raise DataError(f"{init_from}: its classes {info.classes} differ from the data's {classes}")
    if not np.allclose(np.asarray(info.axis), axis, rtol=0, atol=1e-6):
        raise DataError(f"{init_from}: its model axis differs from this data's axis after preprocessing")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(history[0].keys())
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in h.items()})


def recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Set every batch norm's running statistics to their exact average over ``x`` (train-mode passes).

    Keras' momentum 0.99 (PyTorch 0.01) makes the running statistics an average over the last ~100 steps.
    With a few hundred spectra and batch 256 that is ~100 epochs of stale statistics, so a model that is
    fine in train mode scores poorly in eval mode (seen on the COVID-19 serum data: 0.99 vs 0.67 on its own
    training spectra). Recomputing them after each epoch ("precise BN") changes nothing in the gradient
    steps, only the statistics used at inference, and costs one forward pass over the training data.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or x.shape[0] == 0:
        return
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            chunk = x[i : i + batch_size]
            if chunk.shape[0] > 1:  # batch norm needs two samples in train mode
                model(chunk)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)


def _fit(
    mcfg: RamanNetConfig,
    cfg: TrainConfig,
    *,
    X_tr: NDArray[np.float32],
    y_tr: NDArray[np.int64],
    X_va: NDArray[np.float32],
    y_va: NDArray[np.int64],
    progress: ProgressFn | None,
    rank: int,
    world: int,
    init_state: dict[str, torch.Tensor] | None = None,
    step_cm1: float = 0.0,
) -> tuple[RamanNet, list[dict[str, float]], int, dict[str, Any]]:
    """The training loop. Returns the model holding the kept weights (:mod:`trainer.selection`), the history,
    the epoch the weights stand for (1-based; swa: the last) and the selection record for run.json.

    ``step_cm1`` is the model axis step, which the augmentation's shift needs.
    """
    torch.manual_seed(cfg.seed)
    model = RamanNet(mcfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    if world > 1:
        # Same initial weights everywhere (DDP also broadcasts them); different dropout masks per process.
        torch.manual_seed(cfg.seed + 104729 * rank)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    # Its own generator, so turning augmentation on changes neither the batch order nor the dropout masks.
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * (rank + 1))
    xt, yt = torch.tensor(X_tr), torch.tensor(y_tr)
    xv, yv = torch.tensor(X_va), torch.tensor(y_va)
    has_val = xv.shape[0] > 0
    selector = Selector(cfg.selection, cfg.epochs)
    if not selector.uses_early_stopping and cfg.early_stopping_patience is not None:
        logger.info("selection %s: a fixed schedule of %d epochs, early stopping off", cfg.selection.mode, cfg.epochs)
    since_best = 0
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        if selector.averaging(epoch) and epoch == selector.first_avg and cfg.selection.swa_lr is not None:
            for g in opt.param_groups:
                g["lr"] = cfg.selection.swa_lr
        net.train()
        sums = [0.0, 0.0, 0.0]
        correct = seen = 0
        for batch in _batches(xt.shape[0], cfg.batch_size, gen):
            idx = batch[rank::world]
            xb, yb = xt[idx], yt[idx]
            xb = augment_batch(xb, yb, cfg.augment, step_cm1=step_cm1, gen=aug_gen)
            logits, emb = net(xb)
            ce = F.cross_entropy(logits, yb)
            tl = triplet_semihard_loss(yb, emb, cfg.triplet_margin)
            loss = cfg.ce_weight * ce + cfg.triplet_weight * tl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            m = int(yb.shape[0])
            sums[0] += float(loss.detach()) * m
            sums[1] += float(ce.detach()) * m
            sums[2] += float(tl.detach()) * m
            correct += int((logits.detach().argmax(1) == yb).sum())
            seen += m
        tr_loss, tr_ce, tr_tl, tr_acc = _allreduce_mean([s / seen for s in sums] + [correct / seen], seen)
        if cfg.recalibrate_bn:
            recalibrate_batchnorm(model, xt, cfg.batch_size)
        if world > 1:
            _broadcast_buffers(model)
        if has_val:
            v_loss, v_ce, v_tl, v_acc = _evaluate(model, xv, yv, cfg)
            monitor = v_loss
        else:
            v_loss = v_ce = v_tl = v_acc = float("nan")
            monitor = tr_loss
        lr = float(opt.param_groups[0]["lr"])
        if not selector.averaging(epoch):  # swa averages at a constant learning rate
            sched.step(monitor)
        improved = selector.update(epoch, monitor, model)
        since_best = 0 if improved else since_best + 1
        stats = EpochStats(
            epoch=epoch, epochs=cfg.epochs, lr=lr, loss=tr_loss, ce=tr_ce, triplet=tr_tl, acc=tr_acc,
            val_loss=v_loss, val_ce=v_ce, val_triplet=v_tl, val_acc=v_acc,
            seconds=time.perf_counter() - t0, best=improved,
        )
        row = asdict(stats)
        row.pop("epochs")
        history.append(row)
        logger.debug(
            "epoch %d/%d loss %.4f val_loss %.4f val_acc %.4f lr %.3g",
            epoch, cfg.epochs, tr_loss, v_loss, v_acc, lr,
        )
        if progress is not None and rank == 0:
            progress(stats)
        if (selector.uses_early_stopping and cfg.early_stopping_patience is not None
                and since_best >= cfg.early_stopping_patience):
            logger.info("early stopping at epoch %d (best %d)", epoch, selector.best_epoch)
            break

    def recalibrate(m: torch.nn.Module) -> None:
        recalibrate_batchnorm(m, xt, cfg.batch_size)
        if world > 1:
            _broadcast_buffers(model)

    kept_epoch, record = selector.finish(model, recalibrate)
    if cfg.selection.mode == "swa" and has_val:  # the averaged weights were never validated in the loop
        v_loss, _, _, v_acc = _evaluate(model, xv, yv, cfg)
        record.update(val_loss=v_loss, val_acc=v_acc)
    model.eval()
    return model, history, kept_epoch, record
