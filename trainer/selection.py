"""Which weights a training run keeps: model selection that a small validation part cannot fool.

Three modes (``TrainConfig.selection``, ``--select MODE[:KEY=VALUE,...]``):

- ``best-loss`` (the paper's): the weights of the epoch with the lowest validation loss. With a validation part
  of a few samples or patients the loss jumps from epoch to epoch, and the minimum is often an early epoch
  that happened to suit those few samples.
- ``smoothed``: the weights of the epoch whose *centred running median* of the validation loss (``window``
  epochs, the epoch in the middle) is lowest, from epoch ``min_epoch`` on. A single lucky epoch no longer wins;
  a stretch of good epochs does. Early stopping counts epochs without a better smoothed value.
- ``swa``: no validation decides anything. The run follows a fixed schedule of ``epochs`` epochs (no early
  stopping); the weights are averaged (stochastic weight averaging, equal weights) over the epochs after the
  first ``swa_start`` share of the run, at a constant learning rate (``swa_lr``, or the rate reached at that
  point), then every batch norm's statistics are recomputed on the training spectra for the averaged weights
  (averaged weights do not match any epoch's statistics; this is what ``torch.optim.swa_utils.update_bn``
  does). The validation part still calibrates the unknown thresholds and is reported.

The validation part is group-aware whenever the data carry groups (``trainer.data.validation_split``): no
sample or patient is on both sides, so the criterion measures generalisation to new samples.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from spectral_core.errors import DataError

__all__ = ["SELECTIONS", "SelectionConfig", "Selector", "parse_selection"]

logger = logging.getLogger(__name__)

SELECTIONS = ("best-loss", "smoothed", "swa")
Selection = Literal["best-loss", "smoothed", "swa"]
_KEYS = {"window": int, "min_epoch": int, "swa_start": float, "swa_lr": float}


class SelectionConfig(BaseModel):
    """How the kept weights are chosen (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Selection = Field(default="best-loss", description="best-loss | smoothed | swa")
    window: int = Field(default=9, ge=1, le=201, description="smoothed: epochs in the centred running median")
    min_epoch: int = Field(default=10, ge=1, description="smoothed: the earliest epoch that may be kept")
    swa_start: float = Field(
        default=0.75, gt=0, lt=1, description="swa: share of the epochs run before the averaging starts"
    )
    swa_lr: float | None = Field(
        default=None, gt=0, description="swa: constant learning rate while averaging (None: the rate reached)"
    )

    def describe(self) -> str:
        """``smoothed:window=9,min_epoch=10`` and the like: the ``--select`` form, with the keys that matter."""
        keys = {"best-loss": (), "smoothed": ("window", "min_epoch"), "swa": ("swa_start", "swa_lr")}[self.mode]
        parts = [f"{k}={getattr(self, k):g}" for k in keys if getattr(self, k) is not None]
        return self.mode + (":" + ",".join(parts) if parts else "")

    def first_averaged_epoch(self, epochs: int) -> int:
        """swa: the first epoch (1-based) whose weights enter the average."""
        return min(epochs, max(1, math.floor(self.swa_start * epochs) + 1))


def parse_selection(text: str) -> SelectionConfig:
    """``MODE[:KEY=VALUE,...]``, e.g. ``smoothed:window=11,min_epoch=20`` or ``swa:swa_start=0.7``.

    Raises:
        DataError: an unknown mode or key, or a value out of range.
    """
    mode, _, rest = text.strip().partition(":")
    mode = mode.strip().lower()
    if mode not in SELECTIONS:
        raise DataError(f"--select: unknown mode {mode!r}; choose from {list(SELECTIONS)}")
    values: dict[str, Any] = {"mode": mode}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in _KEYS:
            raise DataError(f"--select: {item!r} is not KEY=VALUE with KEY one of {sorted(_KEYS)}")
        try:
            values[key] = _KEYS[key](raw.strip())
        except ValueError:
            raise DataError(f"--select: {key}={raw.strip()!r} is not a {_KEYS[key].__name__}") from None
    try:
        return SelectionConfig.model_validate(values)
    except ValueError as exc:
        raise DataError(f"--select: {exc}") from None


State = dict[str, torch.Tensor]


def _copy_state(model: torch.nn.Module) -> State:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Selector:
    """Fed once an epoch by the training loop; at the end puts the chosen (or averaged) weights in the model.

    Args:
        cfg: the selection mode and its settings.
        epochs: the run's epoch budget (swa averages over its last part).
    """

    def __init__(self, cfg: SelectionConfig, epochs: int) -> None:
        self.cfg = cfg
        self.epochs = epochs
        self.best_value = math.inf
        self.best_epoch = 0
        self.best_state: State | None = None
        self.values: list[float] = []
        self._recent: deque[tuple[int, State]] = deque()
        self._avg: State | None = None
        self._n_avg = 0
        self.first_avg = cfg.first_averaged_epoch(epochs) if cfg.mode == "swa" else 0

    @property
    def uses_early_stopping(self) -> bool:
        """False for swa: a fixed schedule, whatever the validation loss does."""
        return self.cfg.mode != "swa"

    def averaging(self, epoch: int) -> bool:
        """swa: whether ``epoch`` (1-based) is in the averaged part of the run."""
        return self.cfg.mode == "swa" and epoch >= self.first_avg

    def update(self, epoch: int, monitor: float, model: torch.nn.Module) -> bool:
        """Record ``epoch``'s criterion (validation loss, or training loss without validation) and weights.

        Returns:
            Whether the kept choice improved (best-loss, smoothed) or the epoch entered the average (swa).
        """
        self.values.append(float(monitor))
        if self.cfg.mode == "best-loss":
            if monitor < self.best_value:
                self.best_value, self.best_epoch, self.best_state = float(monitor), epoch, _copy_state(model)
                return True
            return False
        if self.cfg.mode == "swa":
            if not self.averaging(epoch):
                return False
            self._n_avg += 1
            if self._avg is None:
                self._avg = _copy_state(model)
            else:
                for k, v in model.state_dict().items():
                    if v.is_floating_point():
                        self._avg[k] += (v.detach() - self._avg[k]) / self._n_avg
            return True
        half = self.cfg.window // 2
        self._recent.append((epoch, _copy_state(model)))
        while len(self._recent) > half + 1:
            self._recent.popleft()
        return self._consider(epoch - half, last=epoch)

    def _smoothed(self, center: int, last: int) -> float:
        half = self.cfg.window // 2
        lo, hi = max(1, center - half), min(last, center + half)
        return float(np.median(self.values[lo - 1 : hi]))

    def _consider(self, center: int, *, last: int) -> bool:
        if center < max(1, self.cfg.min_epoch):
            return False
        value = self._smoothed(center, last)
        if value < self.best_value:
            state = next(s for e, s in self._recent if e == center)
            self.best_value, self.best_epoch, self.best_state = value, center, state
            return True
        return False

    def finish(self, model: torch.nn.Module, recalibrate: Any) -> tuple[int, dict[str, Any]]:
        """Put the kept weights into ``model``; returns the epoch they stand for and a record for run.json.

        Args:
            recalibrate: called with ``model`` after swa's averaging, to recompute the batch-norm statistics.
        """
        last = len(self.values)
        if last == 0:
            raise DataError("no epoch was run, so no weights can be selected")
        record: dict[str, Any] = {"mode": self.cfg.mode, "describe": self.cfg.describe()}
        if self.cfg.mode == "swa":
            if self._avg is None:  # a run stopped before the averaged part (cannot happen without early stop)
                raise DataError(f"swa: no epoch reached the averaged part (from epoch {self.first_avg})")
            model.load_state_dict(self._avg)
            recalibrate(model)
            record.update(averaged_epochs=[self.first_avg, last], n_averaged=self._n_avg)
            return last, record
        if self.cfg.mode == "smoothed":
            # The last epochs' centred windows were cut by the end of the run: judge them on what exists.
            half = self.cfg.window // 2
            for center in range(max(1, last - half + 1), last + 1):
                self._consider(center, last=last)
            if self.best_state is None:  # the run ended before min_epoch: keep the last weights, and say so
                logger.warning("smoothed selection: the run ended at epoch %d, before min_epoch %d; keeping the "
                               "last weights", last, self.cfg.min_epoch)
                self.best_epoch, self.best_state = last, self._recent[-1][1]
                self.best_value = self._smoothed(last, last)
            record.update(smoothed_val=self.best_value, window=self.cfg.window, min_epoch=self.cfg.min_epoch)
        if self.best_state is None:
            raise DataError("no weights were kept (every criterion value was NaN)")
        model.load_state_dict(self.best_state)
        record["criterion"] = self.best_value
        return self.best_epoch, record
