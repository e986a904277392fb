"""Spectral augmentation of training batches: torch ops on preprocessed spectra, training batches only.

The ops act on a batch that THE preprocessing has already put on the model axis (so a shift is in cm^-1 of
that axis and the noise is relative to the preprocessed spectrum), and they are never part of the model:
validation, batch-norm recalibration, prediction and the exported graph see the spectra as they are. All
randomness comes from the ``torch.Generator`` handed in, so a run is deterministic under its seed.

What each op draws, per spectrum (``x`` a row of the batch, ``r = max(x) - min(x)`` its range):

- ``mixup = p``: with probability p, ``x <- l * x + (1 - l) * x'`` with ``x'`` another spectrum *of the same
  class* in the batch and ``l ~ U(0.5, 1)`` (x stays the larger part; the label does not change);
- ``shift = s`` (cm^-1): ``x(v) <- x(v - d)`` with ``d ~ U(-s, s)``, a sub-point shift by linear interpolation
  on the model axis (its mean step), the edge values held; a band at v0 moves to v0 + d;
- ``scale = a``: ``x <- f * x`` with ``f ~ U(1 - a, 1 + a)``;
- ``baseline = b``: ``x <- x + r * b * P(t)``, ``P`` a random polynomial of degree <= 3 on ``t`` in [-1, 1]
  across the axis whose coefficients are ``U(-1, 1)`` divided by their count, so ``|P| <= 1``;
- ``noise = n``: ``x <- x + N(0, (n * r)^2)`` point by point.

They run in that order (mixing clean spectra, then instrument-like perturbations).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from spectral_core.errors import DataError

__all__ = ["AugmentConfig", "augment_batch", "parse_augment"]

logger = logging.getLogger(__name__)

#: Highest degree of the random baseline polynomial (a smooth drift, not a new band).
BASELINE_DEGREE = 3
_OFF = ("none", "off", "no", "")


class AugmentConfig(BaseModel):
    """Which augmentations a training run applies and how strongly; every default (0) turns its op off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shift: float = Field(default=0.0, ge=0, le=100, description="largest axis shift, cm^-1 (uniform in +-shift)")
    scale: float = Field(default=0.0, ge=0, lt=1, description="intensity factor drawn in 1 +- scale")
    baseline: float = Field(
        default=0.0, ge=0, le=10, description="largest added polynomial baseline, as a share of the spectrum's range"
    )
    noise: float = Field(default=0.0, ge=0, le=10, description="Gaussian noise std, as a share of the spectrum's range")
    mixup: float = Field(default=0.0, ge=0, le=1, description="share of spectra mixed with one of the same class")

    @property
    def active(self) -> bool:
        """True when at least one op is on."""
        return any(v > 0 for v in self.model_dump().values())

    def describe(self) -> str:
        """``shift=3,noise=0.01`` (the ``--augment`` form of the ops that are on), or ``none``."""
        on = [f"{k}={v:g}" for k, v in self.model_dump().items() if v > 0]
        return ",".join(on) if on else "none"


def parse_augment(text: str) -> AugmentConfig:
    """``shift=3,scale=0.1,baseline=0.05,noise=0.01,mixup=0.2`` (each part optional) or ``none``.

    Raises:
        DataError: an unknown op, a value that is not a number or out of its range.
    """
    if text.strip().lower() in _OFF:
        return AugmentConfig()
    values: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in AugmentConfig.model_fields:
            raise DataError(
                f"--augment: {item!r} is not OP=VALUE with OP one of {sorted(AugmentConfig.model_fields)} "
                "(e.g. shift=3,noise=0.01), or 'none'"
            )
        try:
            values[key] = float(raw)
        except ValueError:
            raise DataError(f"--augment: {key}={raw.strip()!r} is not a number") from None
    try:
        return AugmentConfig.model_validate(values)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise DataError(f"--augment: {exc}") from None


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float32)


def shift_spectra(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Each row ``x[i]`` moved by ``points[i]`` axis points (fractional; positive: towards higher indices), by
    linear interpolation, the edge values held: ``out[i, j] = x[i, j - points[i]]``."""
    length = x.shape[1]
    src = torch.arange(length, dtype=torch.float32).unsqueeze(0) - points.to(torch.float32).unsqueeze(1)
    src = src.clamp(0.0, float(length - 1))
    lo = src.floor()
    frac = (src - lo).to(x.dtype)
    i0 = lo.to(torch.int64)
    i1 = (i0 + 1).clamp(max=length - 1)
    return torch.gather(x, 1, i0) * (1 - frac) + torch.gather(x, 1, i1) * frac


def _mix_same_class(x: torch.Tensor, y: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    chosen = torch.rand(n, generator=gen) < share
    # A random partner of the same class: sort by (class, random key), then each member's partner is the next
    # one of its class in that order (cyclically). A class alone in the batch is paired with itself (no-op).
    key = torch.rand(n, generator=gen, dtype=torch.float64)
    order = torch.argsort(y.to(torch.float64) * 2.0 + key)
    ys = y[order]
    partner_sorted = torch.arange(n)
    for c in torch.unique(ys):
        pos = torch.nonzero(ys == c).flatten()
        partner_sorted[pos] = pos.roll(-1)
    partner = torch.empty(n, dtype=torch.int64)
    partner[order] = order[partner_sorted]
    lam = _uniform(n, 0.5, 1.0, gen).to(x.dtype).unsqueeze(1)
    mixed = lam * x + (1 - lam) * x[partner]
    return torch.where(chosen.unsqueeze(1), mixed, x)


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, *, step_cm1: float, gen: torch.Generator
) -> torch.Tensor:
    """A randomly perturbed copy of the preprocessed batch ``x`` [N, L] (labels ``y`` [N] are unchanged).

    Args:
        x: preprocessed training spectra on the model axis.
        y: their class indices (mixup pairs spectra of the same class only).
        cfg: the ops and their strengths; with none on, ``x`` itself is returned.
        step_cm1: the model axis step, cm^-1 (turns ``cfg.shift`` into points).
        gen: the only source of randomness.

    Raises:
        DataError: a shift asked of an axis whose step is not a positive number.
    """
    if not cfg.active or x.shape[0] == 0:
        return x
    n, length = x.shape
    out = x
    if cfg.mixup > 0:
        out = _mix_same_class(out, y, cfg.mixup, gen)
    if cfg.shift > 0:
        if not step_cm1 > 0:
            raise DataError(f"an axis shift needs the model axis step (cm^-1), got {step_cm1}")
        out = shift_spectra(out, _uniform(n, -cfg.shift, cfg.shift, gen) / step_cm1)
    if cfg.scale > 0:
        out = out * _uniform(n, 1 - cfg.scale, 1 + cfg.scale, gen).to(x.dtype).unsqueeze(1)
    span = (out.amax(1) - out.amin(1)).unsqueeze(1)
    if cfg.baseline > 0:
        t = torch.linspace(-1.0, 1.0, length, dtype=x.dtype)
        powers = torch.stack([t**k for k in range(BASELINE_DEGREE + 1)])  # [D+1, L]
        coef = _uniform(n * (BASELINE_DEGREE + 1), -1.0, 1.0, gen).to(x.dtype).view(n, -1) / (BASELINE_DEGREE + 1)
        out = out + cfg.baseline * span * (coef @ powers)
    if cfg.noise > 0:
        out = out + cfg.noise * span * torch.randn(out.shape, generator=gen, dtype=x.dtype)
    return out
