"""Spectral regions: contiguous cm^-1 ranges of a model axis and how much of an attribution falls in each."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError

__all__ = ["RegionImportance", "region_bounds", "region_importance"]

Float = NDArray[np.float64]
Int = NDArray[np.int64]


@dataclass(frozen=True)
class RegionImportance:
    """One contiguous spectral region and how much it moves the logits.

    Attributes:
        start_cm, end_cm: first and last wavenumber of the region, cm^-1.
        start, stop: point indices on the model axis, ``[start, stop)``.
        importance: mean over spectra of |region attribution| for each spectrum's own class, logit units.
        signed: mean signed attribution for each spectrum's own class (positive: pushes towards it).
        per_class: class -> mean |attribution| over the spectra explained for that class.
        values: (n,) the region's attribution for each spectrum's own class (for the violin plot).
    """

    start_cm: float
    end_cm: float
    start: int
    stop: int
    importance: float
    signed: float
    per_class: dict[str, float]
    values: Float = field(repr=False)

    def to_json(self, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "start_cm": round(self.start_cm, 2),
            "end_cm": round(self.end_cm, 2),
            "points": [self.start, self.stop],
            "importance": self.importance,
            "signed": self.signed,
            "per_class": self.per_class,
        }

    @property
    def label(self) -> str:
        return f"{self.start_cm:.0f}-{self.end_cm:.0f} cm$^{{-1}}$"


def region_bounds(axis: Float, step: int, width_cm: float | None = None) -> list[tuple[int, int]]:
    """Contiguous, non-overlapping regions ``[start, stop)`` of point indices covering the whole axis.

    Args:
        axis: the model axis, cm^-1.
        step: the model's window step, points; the default regions are ``step`` points wide, aligned with
            the window starts (the last one may be shorter).
        width_cm: regions of this width (cm^-1) from the first point instead.
    """
    n = axis.size
    if width_cm is None:
        if step < 1:
            raise DataError(f"region step must be at least 1 point, got {step}")
        edges = sorted({*range(0, n, step), n})
    else:
        if width_cm <= 0:
            raise DataError(f"region width must be positive, got {width_cm} cm^-1")
        cuts = np.arange(axis[0], axis[-1] + width_cm, width_cm)
        edges = sorted({0, n, *np.searchsorted(axis, cuts[1:-1], side="left").tolist()})
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def region_importance(
    values: Float,
    bounds: list[tuple[int, int]],
    axis: Float,
    target: Int,
    classes: list[str],
    *,
    per_region: bool = False,
) -> list[RegionImportance]:
    """Aggregate attributions over regions, sorted by importance, most important first.

    Args:
        values: per-point attributions (n, L) for each spectrum's ``target`` class; with ``per_region``,
            already one value a region (n, R) (e.g. the per-window attributions, whose ``bounds`` overlap).
        bounds: ``[start, stop)`` point ranges on the model axis, one a region.
        target: (n,) the class each spectrum is explained for (its label, else the prediction).
    """
    if per_region:
        if values.shape[1] != len(bounds):
            raise DataError(f"{values.shape[1]} per-region values for {len(bounds)} regions")
        agg = values
    else:
        agg = np.stack([values[:, a:b].sum(axis=1) for a, b in bounds], axis=1)  # (n, R)
    present = [(ci, cls) for ci, cls in enumerate(classes) if np.any(target == ci)]
    out = []
    for r, (a, b) in enumerate(bounds):
        out.append(
            RegionImportance(
                start_cm=float(axis[a]),
                end_cm=float(axis[b - 1]),
                start=a,
                stop=b,
                importance=float(np.abs(agg[:, r]).mean()),
                signed=float(agg[:, r].mean()),
                per_class={cls: float(np.abs(agg[target == ci, r]).mean()) for ci, cls in present},
                values=agg[:, r].copy(),
            )
        )
    return sorted(out, key=lambda ri: -ri.importance)
