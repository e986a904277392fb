"""Figures written beside runs, evaluations, explanations and embeddings (matplotlib's Agg canvas: no display,
no global pyplot state; matplotlib is imported only when a figure is drawn)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from trainer.attribution import Attributions
    from trainer.regions import RegionImportance

__all__ = [
    "ClassStyle",
    "class_styles",
    "plot_class_attributions",
    "plot_confusion",
    "plot_curves",
    "plot_embedding",
    "plot_region_violins",
    "plot_spectrum",
    "rank_label_rows",
]

Float = NDArray[np.float64]
Int = NDArray[np.int64]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Loss and accuracy per epoch (training and validation) as a PNG."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    for key, style in (("loss", "-"), ("val_loss", "--"), ("ce", ":"), ("triplet", "-.")):
        vals = [h.get(key, float("nan")) for h in history]
        if not all(np.isnan(vals)):
            ax_loss.plot(ep, vals, style, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, style in (("acc", "-"), ("val_acc", "--")):
        vals = [h.get(key, float("nan")) for h in history]
        if not all(np.isnan(vals)):
            ax_acc.plot(ep, vals, style, label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend()
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    return p


def plot_confusion(cm: NDArray[np.integer], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG."""
    k = len(classes)
    size = min(4 + 0.35 * k, 16)
    fig = _figure(size, size)
    ax = fig.subplots()
    m = np.asarray(cm, dtype=np.float64)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        top = m.max() if m.size else 0.0
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] > top / 2 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    return p


# ----------------------------------------------------------------------------------------- class styles

#: Marker shapes cycled with the ten colours of ``tab10``: class ``i`` gets colour ``i % 10`` and marker
#: ``i // 10``, so 70 classes stay tellable apart (``tab20``'s light/dark pairs of one hue do not, in print).
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


class ClassStyle(NamedTuple):
    """Colour and marker of one class in scatter plots and legends."""

    color: Any
    marker: str


def class_styles(k: int) -> list[ClassStyle]:
    """A distinct (colour, marker) pair for each of ``k`` classes: ``tab10`` colours, a new marker every ten
    classes (beyond 70 classes markers repeat)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [ClassStyle(cmap(i % 10), _MARKERS[(i // 10) % len(_MARKERS)]) for i in range(k)]


def _legend_outside(fig: Any, handles: list[Any], n: int) -> None:
    """All class handles in a legend to the right of the axes (never over the points)."""
    ncol = 1 if n <= 18 else 2 if n <= 40 else 3
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
               ncol=ncol, markerscale=1.3, handletextpad=0.3, columnspacing=0.8)


def _class_handles(classes: Sequence[str], present: Sequence[int]) -> list[Any]:
    from matplotlib.lines import Line2D

    styles = class_styles(len(classes))
    return [
        Line2D([], [], ls="", marker=styles[c].marker, color=styles[c].color, markersize=5, label=classes[c])
        for c in present
    ]


# ----------------------------------------------------------------------------------------- embeddings


def plot_embedding(
    path: str | Path,
    panels: Sequence[tuple[NDArray[Any], str, tuple[str, str]]],
    *,
    y: Int,
    classes: Sequence[str],
) -> Path:
    """2-D projections side by side, one point a spectrum, coloured and shaped by class.

    Args:
        panels: (points [n, 2], title, (x label, y label)) per panel, e.g. the embedding's and the spectra's
            PCA with the share of variance each component holds.
        y: [n] class index of each point.
    """
    fig = _figure(5.2 * len(panels) + 1.8, 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    styles = class_styles(len(classes))
    present = sorted(set(y.tolist()))
    for ax, (P, title, (xlabel, ylabel)) in zip(axes, panels, strict=True):
        for c in present:
            m = y == c
            ax.scatter(P[m, 0], P[m, 1], s=12, color=styles[c].color, marker=styles[c].marker, alpha=0.8, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    _legend_outside(fig, _class_handles(classes, present), len(present))
    p = Path(path)
    fig.savefig(p, dpi=90, bbox_inches="tight")
    return p


# ----------------------------------------------------------------------------------------- explanations


def rank_label_rows(centres: Sequence[float], span: float, min_gap: float = 0.035) -> list[int]:
    """Row (0 = top) of each region's rank label so that labels closer than ``min_gap * span`` on the x axis
    never share a row (greedy, left to right): neighbouring regions' numbers no longer print over each other.

    Args:
        centres: x position of each label (cm^-1), any order.
        span: width of the x axis (cm^-1).
    """
    rows = [0] * len(centres)
    last_x: list[float] = []  # right-most label x per row
    for i in sorted(range(len(centres)), key=lambda j: centres[j]):
        x = centres[i]
        for r, lx in enumerate(last_x):
            if x - lx >= min_gap * span:
                rows[i], last_x[r] = r, x
                break
        else:
            rows[i] = len(last_x)
            last_x.append(x)
    return rows


def _mark_regions(ax: Any, top: Sequence[RegionImportance], axis: Float) -> None:
    """Grey spans over the top regions, each numbered by rank at the top of the axes, staggered downwards
where neighbouring regions crowd."""
    from matplotlib.transforms import blended_transform_factory

    centres = [(r.start_cm + r.end_cm) / 2 for r in top]
    rows = rank_label_rows(centres, float(abs(axis[-1] - axis[0])) or 1.0)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for rank, (reg, x, row) in enumerate(zip(top, centres, rows, strict=True), 1):
        ax.axvspan(reg.start_cm, reg.end_cm, color="0.5", alpha=0.12, lw=0)
        ax.text(x, 0.98 - 0.08 * row, str(rank), transform=trans, ha="center", va="top", fontsize=7,
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})


def _shade_under(ax: Any, axis: Float, spectrum: Float, attribution: Float, vmax: float) -> Any:
    """Draw ``spectrum`` and colour the area under it by ``attribution`` (diverging, symmetric)."""
    from matplotlib.colors import Normalize

    base = min(0.0, float(spectrum.min()))
    img = ax.imshow(
        attribution[None, :],
        extent=(float(axis[0]), float(axis[-1]), base, float(spectrum.max()) * 1.05),
        aspect="auto",
        cmap="RdBu_r",
        norm=Normalize(-vmax, vmax),
        origin="lower",
        interpolation="nearest",
    )
    poly = ax.fill_between(axis, base, spectrum, facecolor="none", edgecolor="none")
    img.set_clip_path(poly.get_paths()[0], transform=ax.transData)
    ax.plot(axis, spectrum, color="black", lw=0.8)
    ax.set_xlim(float(axis[0]), float(axis[-1]))
    ax.set_ylim(base, float(spectrum.max()) * 1.08)
    return img


def plot_class_attributions(
    path: str | Path,
    *,
    axis: Float,
    X: NDArray[np.float32],
    target: Int,
    attr: Attributions,
    classes: Sequence[str],
    top: Sequence[RegionImportance],
) -> Path:
    """One panel a class: its mean preprocessed spectrum, the area under it coloured by the mean SHAP value
    of each point for that class's logit (red: towards the class), top regions marked by rank."""
    present = [c for c in range(len(classes)) if np.any(target == c)]
    ncol = 1 if len(present) <= 6 else 2
    nrow = int(np.ceil(len(present) / ncol))
    fig = _figure(9 * ncol, 2.1 * nrow + 0.9)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True)
    means = {c: attr.values[target == c].mean(axis=0) for c in present}
    # A robust colour scale: one spiky point must not wash out every other band.
    vmax = max(float(np.percentile(np.abs(m), 99.5)) for m in means.values()) or 1.0
    img: Any = None
    for k, c in enumerate(present):
        ax = axes[k // ncol][k % ncol]
        img = _shade_under(ax, axis, X[target == c].mean(axis=0).astype(np.float64), means[c], vmax)
        ax.set_title(f"{classes[c]} (n={int(np.sum(target == c))})", fontsize=9, loc="left")
        ax.set_ylabel("intensity", fontsize=8)
        ax.tick_params(labelsize=8)
        _mark_regions(ax, top, axis)
    for k in range(len(present), nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Raman shift (cm$^{-1}$)")
    fig.suptitle("Mean preprocessed spectrum per class, shaded by mean SHAP value for that class "
                 "(grey, numbered: top regions by rank)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    cax = fig.add_axes((0.91, 0.15, 0.012, 0.7))
    fig.colorbar(img, cax=cax, extend="both").set_label("mean SHAP value per point (logit)", fontsize=8)
    p = Path(path)
    fig.savefig(p, dpi=90)
    return p


def plot_region_violins(
    path: str | Path, top: Sequence[RegionImportance], target: Int, classes: Sequence[str]
) -> Path:
    """Violin + beeswarm-like strip of each top region's SHAP value for each spectrum's own class."""
    k = len(top)
    fig = _figure(8, 0.45 * k + 1.6)
    ax = fig.subplots()
    data = [r.values for r in top][::-1]
    pos = np.arange(1, k + 1)
    # matplotlib >= 3.10 spells horizontal violins ``orientation``; ``vert`` is deprecated there.
    horizontal: dict[str, Any] = (
        {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.violinplot).parameters else {"vert": False}
    )
    parts = ax.violinplot(data, positions=pos, showextrema=False, widths=0.85, **horizontal)
    bodies: list[Any] = list(parts["bodies"])
    for body in bodies:
        body.set_facecolor("0.8")
        body.set_edgecolor("0.5")
        body.set_alpha(0.7)
    styles = class_styles(len(classes))
    rng = np.random.default_rng(0)
    present = sorted(set(target.tolist()))
    for p_, vals in zip(pos, data, strict=True):
        jitter = rng.uniform(-0.22, 0.22, vals.size)
        for c in present:
            m = target == c
            ax.scatter(vals[m], p_ + jitter[m], s=7, color=styles[c].color, marker=styles[c].marker, alpha=0.8,
                       lw=0)
    ax.axvline(0.0, color="0.3", lw=0.7)
    ax.set_yticks(pos, [f"{r.label}" for r in top][::-1], fontsize=8)
    ax.set_xlabel("SHAP value for the spectrum's own class (logit)")
    ax.set_title(f"Top {k} spectral regions", fontsize=10)
    fig.tight_layout()
    _legend_outside(fig, _class_handles(classes, present), len(present))
    p = Path(path)
    fig.savefig(p, dpi=90, bbox_inches="tight")
    return p


def plot_spectrum(
    path: str | Path,
    *,
    axis: Float,
    x: NDArray[np.float32],
    phi: Float,
    title: str,
    top: Sequence[RegionImportance],
) -> Path:
    """One spectrum with its attributions (for the class it is explained for) shaded under it."""
    fig = _figure(9, 3.4)
    ax = fig.subplots()
    vmax = float(np.percentile(np.abs(phi), 99.5)) or 1.0
    img = _shade_under(ax, axis, x.astype(np.float64), phi, vmax)
    _mark_regions(ax, top, axis)
    ax.set_xlabel("Raman shift (cm$^{-1}$)")
    ax.set_ylabel("preprocessed intensity")
    ax.set_title(title, fontsize=10)
    fig.colorbar(img, ax=ax, pad=0.01, extend="both").set_label("SHAP value per point (logit)", fontsize=8)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=90)
    return p
