"""SHAP explanations of a trained RamanNet run: which spectral regions drive each decision (offline only).

Explainer: ``shap.DeepExplainer`` (DeepSHAP, the DeepLIFT rescale rule averaged over a background set) on the
PyTorch model, in float64. Why this one for RamanNet:

- **Additivity is exact.** RamanNet is a feed-forward chain of a linear front end (the window gather and the
  per-window dense layers: linear in the spectrum), batch norm (affine in eval), LeakyReLU (1-D, piecewise
  linear) and dense layers. DeepSHAP propagates every one of these by a rule whose multipliers telescope, so
  for each spectrum ``sum_k phi[k] == logit_c(x) - E_b[logit_c(b)]`` holds to rounding (checked on
  every call and recorded in ``regions.json``). Sampled explainers (Permutation, Partition, Kernel) are exact in
  sum too, but their per-feature values are Monte-Carlo estimates.
- **It is cheap.** One forward + backward pass over ``2 N`` rows (spectrum tiled against the N background
  spectra) per spectrum (twice: points and windows). A Permutation masker over the 39 windows needs about
  ``2 * 39 * permutations`` evaluations of N rows per spectrum, 50-100 times more.
- **Wavenumber resolution for free.** The front end is linear, so the multipliers reach every input point
  exactly; a masker over whole windows would stop at the windows, and windows overlap (each point sits in two
  of them), so "masking a window" in the input is ambiguous. Window-level values are still exact: the same
  explainer, pointed at the input of the window batch norm (the concatenated window features), attributes
  each window's ``n1`` features, summed per window; they add up to the same total.
- The price: DeepSHAP is exact Shapley only for the linear part; through the nonlinear layers it is the
  rescale-rule linearisation around each background spectrum (the usual DeepSHAP approximation).

Each spectrum is explained for one class, its own (its label, else the predicted class): the attributions
decompose that class's logit, so one backward pass per spectrum serves (not one per class: 27 times cheaper
on a 27-class model). Three levels are reported, overall and per class (over the spectra of that class):
per wavenumber (cm^-1), per model window, and per spectral region (contiguous, non-overlapping cm^-1
ranges; by default one window step wide, aligned with the window starts). Importance of a region = mean over
spectra of ``|sum of phi over the region|``, in logit units.

The background set is drawn from the training data (``--data``), stratified by class, seeded; its size is
an option. Nothing here is imported by the edge runtime.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError, MissingExtraError, PreprocessError

if TYPE_CHECKING:
    import torch

    from spectral_core.spectrum import SpectralDataset
    from trainer.checkpoint import RunInfo
    from trainer.model import RamanNet

__all__ = [
    "Attributions",
    "RegionImportance",
    "RunData",
    "configure_explain",
    "cross_check",
    "draw_background",
    "explain_spectra",
    "load_for_run",
    "permutation_windows",
    "region_bounds",
    "region_importance",
    "require_train_extra",
    "run_explain",
]

logger = logging.getLogger(__name__)

Float = NDArray[np.float64]
Int = NDArray[np.int64]

# Relative additivity error above which an explanation is reported as suspect (float64 gives ~1e-12).
ADDITIVITY_RTOL = 1e-6


def require_train_extra(feature: str, modules: tuple[str, ...] = ("torch", "shap", "matplotlib", "sklearn")) -> None:
    """Import the heavy dependencies of ``feature`` or raise :class:`MissingExtraError` naming ``[train]``."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingExtraError(feature, "train", name) from None


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RunData:
    """Spectra of a file preprocessed onto a run's model axis.

    Attributes:
        X: float32 (n, L) preprocessed spectra, only the usable rows.
        y: int64 labels in the run's class order, or None when the file is unlabelled.
        rows: index of each kept row in the file.
        skipped: file row -> reason, for rows that could not be preprocessed.
        fingerprint: SHA-256 of the file's data (as the trainer records it).
        source: the file.
    """

    X: NDArray[np.float32]
    y: Int | None
    rows: Int
    skipped: dict[int, str]
    fingerprint: str
    source: str


def _remap_classes(ds: SpectralDataset, info: RunInfo, source: str) -> Int | None:
    """Labels of ``ds`` in the run's class order. The data may hold a subset of the run's classes, in any
    order; a class the run does not know is an error (ModelContract-style check, by name)."""
    from spectral_core.contract import ModelContract

    if ds.y is None:
        return None
    if list(ds.classes) == list(info.classes):
        return ds.y
    unknown = [c for c in ds.classes if c not in info.classes]
    if unknown:
        contract = ModelContract(
            classes=info.classes, axis=info.axis, preprocess=info.preprocess, preprocess_hash=info.preprocess.hash()
        )
        contract.check_classes_match(list(ds.classes), what=source)  # raises ContractError naming both lists
    lookup = np.array([info.classes.index(c) for c in ds.classes], dtype=np.int64)
    logger.info("%s: classes %s mapped onto the run's order %s", source, list(ds.classes), info.classes)
    return lookup[ds.y]


def load_for_run(path: str | Path | SpectralDataset, info: RunInfo, *, require_labels: bool = True) -> RunData:
    """Read ``path`` (or take a dataset already read with the CLI's reading options), preprocess it with the
    run's own preprocessing and check it fits the run.

    Raises:
        ContractError: the spectra do not land on the run's axis after preprocessing, or carry classes the
            run does not know.
        PreprocessError: the run's preprocessing cannot be applied (e.g. the measured range is too short).
        DataError: unlabelled data where labels are needed, or no usable spectrum left.
    """
    from spectral_core.contract import ModelContract
    from spectral_core.io import read_dataset
    from spectral_core.preprocess import Preprocessor
    from spectral_core.spectrum import SpectralDataset

    if isinstance(path, SpectralDataset):
        ds, source = path, str(path.provenance.get("source", "<dataset>"))
    else:
        ds, source = read_dataset(path), str(path)
    contract = ModelContract(
        classes=info.classes, axis=info.axis, preprocess=info.preprocess, preprocess_hash=info.preprocess.hash()
    )
    pre = Preprocessor(info.preprocess)
    try:
        out_axis = pre.output_axis(ds.axis)
    except PreprocessError as exc:
        raise PreprocessError(f"{source}: {exc}") from None
    contract.check_axis_matches(out_axis, what=f"{source} (after the run's preprocessing)")
    if ds.y is None and require_labels:
        raise DataError(f"{source} is unlabelled; this needs class labels (y)")
    y = _remap_classes(ds, info, source)
    X, bad = pre.transform_rows(ds.X, ds.axis)
    for i, reason in sorted(bad.items()):
        logger.warning("%s: spectrum %d skipped: %s", source, i, reason)
    keep = np.setdiff1d(np.arange(ds.n_spectra), np.fromiter(bad, dtype=np.int64, count=len(bad)))
    if keep.size == 0:
        raise DataError(f"{source}: none of its {ds.n_spectra} spectra can be preprocessed")
    return RunData(
        X=np.ascontiguousarray(X[keep]),
        y=None if y is None else y[keep],
        rows=keep.astype(np.int64),
        skipped=bad,
        fingerprint=ds.fingerprint(),
        source=source,
    )


def stratified_pick(n: int, y: Int | None, k: int, seed: int) -> Int:
    """``k`` distinct indices out of ``n``, spread over the classes in proportion (sorted)."""
    if k > n:
        raise DataError(f"cannot pick {k} spectra out of {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4099]))
    if y is None or k == n:
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    # Largest-remainder quotas so every class is represented in proportion.
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * k / n
    take = np.floor(quota).astype(np.int64)
    for j in np.argsort(-(quota - take))[: k - int(take.sum())]:
        take[j] += 1
    picked = [rng.choice(np.flatnonzero(y == c), size=int(t), replace=False) for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def draw_background(data: RunData, size: int, seed: int = 0) -> NDArray[np.float32]:
    """The SHAP background set: ``size`` spectra of the training data, stratified by class.

    Raises:
        DataError: ``size`` is below 1 or larger than the data.
    """
    n = data.X.shape[0]
    if size < 1:
        raise DataError(f"the background set needs at least 1 spectrum, got {size}")
    if size > n:
        raise DataError(
            f"a background set of {size} spectra was asked for, but {data.source} holds only {n} usable "
            f"spectra; pass --background {n} or fewer"
        )
    return data.X[stratified_pick(n, data.y, size, seed)]


# ----------------------------------------------------------------------------------------------- SHAP


@dataclass(frozen=True)
class Attributions:
    """DeepSHAP attributions of a batch of spectra for one class each (its ``target``), in logit units.

    Attributes:
        values: (n, L) per wavenumber point, for the logit of ``target[i]``.
        windows: (n, W) per model window (attribution of the window's features), same logit.
        target: (n,) the class each spectrum is explained for.
        expected: (C,) mean logits over the background set.
        logits: (n, C) logits of the explained spectra.
        additivity_error: max over spectra of ``|sum(values[i]) - (logits[i, t] - expected[t])|``.
        window_additivity_error: the same for ``windows``.
    """

    values: Float
    windows: Float
    target: Int
    expected: Float
    logits: Float
    additivity_error: float
    window_additivity_error: float

    @property
    def predicted(self) -> Int:
        return np.asarray(self.logits.argmax(axis=1), dtype=np.int64)


def _logit_module(model: RamanNet) -> torch.nn.Module:
    """RamanNet's logit path with its activations as modules (DeepExplainer only rewrites the gradients of
    nn.Module nonlinearities; RamanNet calls ``F.leaky_relu``). Shares the model's parameters; one LeakyReLU
    instance per use because DeepExplainer stores each module's last input on the module."""
    from torch import nn

    class _Logits(nn.Module):
        def __init__(self, net: RamanNet) -> None:
            super().__init__()
            self.net = net
            slope = net.config.leaky_slope
            self.act1 = nn.LeakyReLU(slope)
            self.act2 = nn.LeakyReLU(slope)
            self.act3 = nn.LeakyReLU(slope)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.net.window_features(x))

        def head(self, features: torch.Tensor) -> torch.Tensor:
            """Logits from the window features (B, W, n1)."""
            net = self.net
            h = self.act1(net.window_bn(features.flatten(1)))
            h = self.act2(net.bn2(net.dense2(h)))  # dropout is the identity in eval
            h = self.act3(net.bn3(net.embed(h)))
            out: torch.Tensor = net.classifier(h)
            return out

    return _Logits(model).eval()


def _one_logit(logits: torch.nn.Module, c: int) -> torch.nn.Module:
    """The logit of class ``c`` alone, shape (B, 1): DeepExplainer then runs one backward pass, not C."""
    from torch import nn

    class _Pick(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = logits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(x)[:, c : c + 1]
            return out

    return _Pick().eval()


def explain_spectra(
    model: RamanNet, background: NDArray[np.float32], X: NDArray[np.float32], target: Int | None = None
) -> Attributions:
    """DeepSHAP attributions of the spectra ``X`` (n, L) against ``background`` (N, L), both preprocessed.

    Each spectrum is explained for one class, ``target[i]`` (default: its predicted class): the logit whose
    value the attributions decompose. Runs in float64 on a copy of the model, so additivity holds to ~1e-12
    rather than float32 rounding. Cost: two backward passes over ``2 N`` rows per spectrum.

    Raises:
        DataError: inputs whose length is not the model's, or targets that are not classes of the model.
        RuntimeError: the explainable logit path does not reproduce the model (a bug, never user error).
    """
    import copy

    import shap
    import torch

    length = model.config.input_length
    for name, arr in (("background", background), ("spectra", X)):
        if arr.ndim != 2 or arr.shape[1] != length:
            raise DataError(f"{name} of shape {arr.shape} do not fit the model ({length} points)")
    net = copy.deepcopy(model).double().eval()
    logit_net = _logit_module(net)
    bg = torch.from_numpy(np.asarray(background, dtype=np.float64))
    xs = torch.from_numpy(np.asarray(X, dtype=np.float64))
    with torch.no_grad():
        ref_logits = model.eval()(torch.from_numpy(np.asarray(X[: min(len(X), 8)], dtype=np.float32)))[0].double()
        logits = logit_net(xs).numpy()
        expected = logit_net(bg).mean(dim=0).numpy()
    gap = float(np.abs(logits[: ref_logits.shape[0]] - ref_logits.numpy()).max())
    if gap > 1e-3 * (1.0 + float(ref_logits.abs().max())):
        raise RuntimeError(f"the explained logit path differs from RamanNet.forward by {gap:g}; update _logit_module")
    n_classes = logits.shape[1]
    tgt = np.asarray(logits.argmax(axis=1) if target is None else target, dtype=np.int64)
    if tgt.shape != (X.shape[0],) or (tgt.size and (tgt.min() < 0 or tgt.max() >= n_classes)):
        raise DataError(f"targets must be {X.shape[0]} class indices below {n_classes}")

    values = np.zeros((X.shape[0], length))
    windows = np.zeros((X.shape[0], net.n_windows))
    for c in np.unique(tgt).tolist():
        rows = np.flatnonzero(tgt == c)
        one = _one_logit(logit_net, int(c))
        # Per wavenumber point.
        values[rows] = _single_output(shap.DeepExplainer(one, bg).shap_values(xs[rows], check_additivity=False))
        # Per window: the same explainer on the input of the window batch norm (the concatenated window
        # features, n1 per window), summed per window.
        feats = _single_output(
            shap.DeepExplainer((one, net.window_bn), bg).shap_values(xs[rows], check_additivity=False)
        )
        windows[rows] = feats.reshape(rows.size, net.n_windows, net.config.n1).sum(axis=2)

    own = logits[np.arange(tgt.size), tgt] - expected[tgt]
    err = float(np.abs(values.sum(axis=1) - own).max(initial=0.0))
    err_w = float(np.abs(windows.sum(axis=1) - own).max(initial=0.0))
    scale = 1.0 + float(np.abs(own).max(initial=0.0))
    if max(err, err_w) > ADDITIVITY_RTOL * scale:
        logger.warning("SHAP additivity error %.3g (windows %.3g) for logits of scale %.3g", err, err_w, scale)
    return Attributions(values, windows, tgt, expected.astype(np.float64), logits, err, err_w)


def permutation_windows(
    model: RamanNet,
    background: NDArray[np.float32],
    X: NDArray[np.float32],
    target: Int,
    *,
    permutations: int = 10,
    seed: int = 0,
) -> Float:
    """Shapley values of whole windows by ``shap.PermutationExplainer``: a model-agnostic cross-check of the
    DeepSHAP window attributions (same game, no linearisation, Monte-Carlo in the permutations).

    The game: the players are the model's windows; a coalition keeps the spectrum's own features for its
    windows and takes a background spectrum's for the others; the payoff is the ``target`` logit averaged over
    the background. Each spectrum costs ``2 * W * permutations`` evaluations of ``N`` rows.

    Returns:
        (n, W) window Shapley values; each row sums to ``logit - expected`` as the DeepSHAP windows do.
    """
    import copy

    import shap
    import torch

    net = copy.deepcopy(model).double().eval()
    logit_net = _logit_module(net)
    n_win, n1 = net.n_windows, net.config.n1
    with torch.no_grad():
        f_bg = net.window_features(torch.from_numpy(np.asarray(background, dtype=np.float64)))  # (N, W, n1)

    head: Callable[[torch.Tensor], torch.Tensor] = logit_net.head  # type: ignore[assignment]
    out = np.zeros((X.shape[0], n_win))
    for i in range(X.shape[0]):
        c = int(target[i])
        with torch.no_grad():
            f_x = net.window_features(torch.from_numpy(np.asarray(X[i : i + 1], dtype=np.float64)))[0]

        def game(masks: NDArray[Any], f_x: torch.Tensor = f_x, c: int = c) -> NDArray[np.float64]:
            m = torch.from_numpy(np.asarray(masks, dtype=np.float64))[:, None, :, None]  # (m, 1, W, 1)
            with torch.no_grad():
                f = m * f_x + (1 - m) * f_bg[None]  # (m, N, W, n1)
                vals = head(f.reshape(-1, n_win, n1))[:, c].reshape(m.shape[0], -1).mean(1)
            return np.asarray(vals.numpy(), dtype=np.float64)

        # Features are "window i comes from the spectrum" (1) or not (0): the masker's zero background.
        explainer = shap.PermutationExplainer(
            game, shap.maskers.Independent(np.zeros((1, n_win)), max_samples=1), seed=seed
        )
        out[i] = explainer(np.ones((1, n_win)), max_evals=2 * n_win * permutations + 1, silent=True).values[0]
    return out


def cross_check(deep_windows: Float, perm_windows: Float) -> dict[str, float]:
    """Agreement of DeepSHAP and Permutation window values: median Spearman rank correlation over spectra and
    the share of spectra whose most important window is the same."""
    from scipy.stats import spearmanr

    rho = [float(spearmanr(a, b).statistic) for a, b in zip(deep_windows, perm_windows, strict=True)]
    same = [int(np.argmax(np.abs(a)) == np.argmax(np.abs(b))) for a, b in zip(deep_windows, perm_windows, strict=True)]
    return {"spectra": len(rho), "median_spearman": float(np.median(rho)), "min_spearman": float(np.min(rho)),
            "same_top_window": float(np.mean(same))}


def _single_output(out: Any) -> Float:
    """shap returns (n, F, 1) for a one-output model (older versions: a list of one (n, F) array)."""
    arr = np.asarray(out[0] if isinstance(out, list) else out, dtype=np.float64)
    return arr[..., 0] if arr.ndim == 3 else arr


# ----------------------------------------------------------------------------------------------- regions


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


# ----------------------------------------------------------------------------------------------- plots


def _class_colors(k: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


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
    path: Path,
    *,
    axis: Float,
    X: NDArray[np.float32],
    target: Int,
    attr: Attributions,
    classes: list[str],
    top: list[RegionImportance],
) -> None:
    """One panel a class: its mean preprocessed spectrum, the area under it coloured by the mean SHAP value
    of each point for that class's logit (red: towards the class), top regions marked by rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [c for c in range(len(classes)) if np.any(target == c)]
    ncol = 1 if len(present) <= 6 else 2
    nrow = int(np.ceil(len(present) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(9 * ncol, 1.9 * nrow + 0.9), squeeze=False, sharex=True)
    means = {c: attr.values[target == c].mean(axis=0) for c in present}
    # A robust colour scale: one spiky point must not wash out every other band.
    vmax = max(float(np.percentile(np.abs(m), 99.5)) for m in means.values()) or 1.0
    img: Any = None
    for k, c in enumerate(present):
        ax = axes[k // ncol][k % ncol]
        img = _shade_under(ax, axis, X[target == c].mean(axis=0).astype(np.float64), means[c], vmax)
        ax.set_title(f"{classes[c]} (n={int(np.sum(target == c))})", fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        for rank, reg in enumerate(top, 1):
            ax.axvspan(reg.start_cm, reg.end_cm, color="0.5", alpha=0.12, lw=0)
            ax.text((reg.start_cm + reg.end_cm) / 2, ax.get_ylim()[1], str(rank), ha="center", va="top", fontsize=7)
    for k in range(len(present), nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Raman shift (cm$^{-1}$)")
    fig.suptitle("Mean spectrum per class, shaded by mean SHAP value for that class (grey: top regions)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    cax = fig.add_axes((0.91, 0.15, 0.012, 0.7))
    fig.colorbar(img, cax=cax, extend="both").set_label("mean SHAP value per point (logit)", fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_region_violins(path: Path, top: list[RegionImportance], target: Int, classes: list[str]) -> None:
    """Violin + beeswarm-like strip of each top region's SHAP value for each spectrum's own class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(top)
    fig, ax = plt.subplots(figsize=(8, 0.45 * k + 1.6))
    data = [r.values for r in top][::-1]
    pos = np.arange(1, k + 1)
    # matplotlib >= 3.10 spells horizontal violins ``orientation``; ``vert`` is deprecated there.
    horizontal: dict[str, Any] = (
        {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.violinplot).parameters else {"vert": False}
    )
    parts = ax.violinplot(data, positions=pos, showextrema=False, widths=0.85, **horizontal)
    bodies: list[Any] = list(parts["bodies"])  # type: ignore[call-overload]
    for body in bodies:
        body.set_facecolor("0.8")
        body.set_edgecolor("0.5")
        body.set_alpha(0.7)
    colors = _class_colors(len(classes))
    rng = np.random.default_rng(0)
    for p, vals in zip(pos, data, strict=True):
        jitter = rng.uniform(-0.22, 0.22, vals.size)
        ax.scatter(vals, p + jitter, s=6, c=[colors[t] for t in target], alpha=0.8, lw=0)
    ax.axvline(0.0, color="0.3", lw=0.7)
    ax.set_yticks(pos, [f"{r.label}" for r in top][::-1], fontsize=8)
    ax.set_xlabel("SHAP value for the spectrum's own class (logit)")
    ax.set_title(f"Top {k} spectral regions", fontsize=10)
    present = sorted(set(target.tolist()))
    if len(present) <= 12:
        handles = [plt.Line2D([], [], ls="", marker="o", color=colors[c], label=classes[c]) for c in present]
        ax.legend(handles=handles, fontsize=7, loc="lower right", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_spectrum(
    path: Path, *, axis: Float, x: NDArray[np.float32], phi: Float, title: str, top: list[RegionImportance]
) -> None:
    """One spectrum with its attributions (for the class it is explained for) shaded under it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    vmax = float(np.percentile(np.abs(phi), 99.5)) or 1.0
    img = _shade_under(ax, axis, x.astype(np.float64), phi, vmax)
    for rank, reg in enumerate(top, 1):
        ax.axvspan(reg.start_cm, reg.end_cm, color="0.5", alpha=0.12, lw=0)
        ax.text((reg.start_cm + reg.end_cm) / 2, ax.get_ylim()[1], str(rank), ha="center", va="top", fontsize=7)
    ax.set_xlabel("Raman shift (cm$^{-1}$)")
    ax.set_ylabel("preprocessed intensity")
    ax.set_title(title, fontsize=10)
    fig.colorbar(img, ax=ax, pad=0.01, extend="both").set_label("SHAP value per point (logit)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- report


def _markdown(top: list[RegionImportance], classes: list[str], total: float) -> str:
    shown = [c for c in classes if any(c in r.per_class for r in top)]
    head = "| rank | region (cm^-1) | importance | share | signed | " + " | ".join(shown) + " |"
    rule = "|" + "---|" * (5 + len(shown))
    rows = [
        f"| {i} | {r.start_cm:.0f}-{r.end_cm:.0f} | {r.importance:.3f} | {100 * r.importance / total:.1f}% | "
        f"{r.signed:+.3f} | " + " | ".join(f"{r.per_class.get(c, float('nan')):.3f}" for c in shown) + " |"
        for i, r in enumerate(top, 1)
    ]
    note = (
        "\nimportance: mean |SHAP| of the region for each spectrum's own class (logit units); share: of the sum "
        "over all regions; signed: mean signed value (+ pushes towards the class); per class: mean |SHAP| for "
        "that class's logit over its spectra.\n"
    )
    return "\n".join([head, rule, *rows]) + "\n" + note


def configure_explain(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ramanedge explain``."""
    parser.add_argument("run", metavar="RUN", help="run directory written by `ramanedge train`")
    from spectral_core.cli import add_data_option

    add_data_option(parser, help="training data: background set and spectra to explain")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--background", type=int, default=100, metavar="N", help="background spectra (default 100)")
    parser.add_argument("--spectrum", metavar="FILE", help="explain one spectrum of this file instead of --data")
    parser.add_argument("--index", type=int, default=0, metavar="I", help="which spectrum of --spectrum (default 0)")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="regions in the table and plots (default 10)")
    parser.add_argument(
        "--max-spectra", type=int, default=200, metavar="N",
        help="explain at most N spectra of --data, stratified (default 200)",
    )
    parser.add_argument(
        "--region-width", type=float, default=None, metavar="CM",
        help="region width in cm^-1 (default: one window step, aligned with the window starts)",
    )
    parser.add_argument(
        "--cross-check", type=int, default=0, metavar="N",
        help="also estimate window Shapley values of N spectra with shap.PermutationExplainer and report "
        "their agreement with DeepSHAP (slow: 2 x windows x 10 model passes over the background each)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the background and spectra draws")


def run_explain(args: argparse.Namespace) -> int:
    """``ramanedge explain``: write attributions, ``regions.json``/``regions.md`` and plots into ``--out``."""
    require_train_extra("ramanedge explain")
    from trainer.checkpoint import load_run
    from trainer.model import window_starts

    if args.top < 1:
        raise DataError(f"--top must be at least 1, got {args.top}")
    model, info = load_run(args.run)
    from spectral_core.cli import read_data

    data = load_for_run(read_data(args), info)
    background = draw_background(data, args.background, args.seed)
    is_training = data.fingerprint == info.data_sha256
    if not is_training:
        logger.info("%s is not the run's training data (fingerprint differs): the background comes from it anyway",
                    data.source)
    single = args.spectrum is not None
    if single:
        targets = load_for_run(read_data(args, "spectrum"), info, require_labels=False)
        n_file = targets.rows.size + len(targets.skipped)
        if not 0 <= args.index < n_file:
            raise DataError(f"{targets.source} holds {n_file} spectra; --index {args.index} is out of range")
        if args.index in targets.skipped:
            raise DataError(f"{targets.source}: spectrum {args.index} cannot be explained: {targets.skipped[args.index]}")
        if n_file > 1:
            logger.info("%s holds %d spectra; explaining spectrum %d (--index)", targets.source, n_file, args.index)
        pos = int(np.flatnonzero(targets.rows == args.index)[0])
        rows = targets.rows[pos : pos + 1]
        X, y = targets.X[pos : pos + 1], None
    else:
        targets = data
        pick = stratified_pick(data.X.shape[0], data.y, min(args.max_spectra, data.X.shape[0]), args.seed + 1)
        X, y = data.X[pick], None if data.y is None else data.y[pick]
        rows = data.rows[pick]
    logger.info("explaining %d spectra against %d background spectra", X.shape[0], background.shape[0])
    attr = explain_spectra(model, background, X, None if (single or y is None) else y)
    target = attr.target

    axis = np.asarray(info.axis, dtype=np.float64)
    cfg = info.model
    starts = window_starts(cfg.input_length, cfg.window, cfg.step, paper_compat=cfg.paper_compat)
    regions = region_importance(attr.values, region_bounds(axis, cfg.step, args.region_width), axis, target, info.classes)
    windows = region_importance(
        attr.windows, [(s, s + cfg.window) for s in starts], axis, target, info.classes, per_region=True
    )
    top = regions[: args.top]
    total = sum(r.importance for r in regions) or 1.0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "attributions.npz",
        values=attr.values.astype(np.float32),
        windows=attr.windows.astype(np.float32),
        expected=attr.expected,
        logits=attr.logits,
        axis=axis,
        target=target,
        rows=rows,
        classes=np.asarray(info.classes, dtype=str),
    )
    probs = np.exp(attr.logits - attr.logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    report: dict[str, Any] = {
        "run": str(args.run),
        "data": data.source,
        "spectrum": targets.source if single else None,
        "explainer": "shap.DeepExplainer (DeepSHAP), float64, logits",
        "n_background": int(background.shape[0]),
        "background_is_training_data": is_training,
        "n_explained": int(X.shape[0]),
        "explained_for": "predicted class" if (single or y is None) else "true class",
        "expected_logits": dict(zip(info.classes, attr.expected.tolist(), strict=True)),
        "additivity_max_abs_error": attr.additivity_error,
        "window_additivity_max_abs_error": attr.window_additivity_error,
        "skipped": {} if single else {str(k): v for k, v in targets.skipped.items()},
        "regions": [r.to_json(i) for i, r in enumerate(regions, 1)],
        "windows": [w.to_json(i) for i, w in enumerate(windows, 1)],
    }
    if single:
        report["index"] = int(rows[0])
        report["prediction"] = {
            "class": info.classes[int(target[0])],
            "probabilities": dict(zip(info.classes, probs[0].tolist(), strict=True)),
            "label": None if targets.y is None else info.classes[int(targets.y[pos])],
        }
    if args.cross_check > 0:
        k = min(args.cross_check, X.shape[0])
        sel = stratified_pick(X.shape[0], target, k, args.seed + 2)
        perm = permutation_windows(model, background, X[sel], target[sel], seed=args.seed)
        report["cross_check"] = {"explainer": "shap.PermutationExplainer over windows, 10 antithetic permutations",
                                 **cross_check(attr.windows[sel], perm)}
        logger.info("DeepSHAP vs Permutation windows: %s", report["cross_check"])
    (out / "regions.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "regions.md").write_text(_markdown(top, info.classes, total))
    if single:
        c = int(target[0])
        plot_spectrum(
            out / f"spectrum_{int(rows[0])}.png", axis=axis, x=X[0], phi=attr.values[0],
            title=f"{Path(targets.source).name} #{int(rows[0])}: predicted {info.classes[c]} (p={probs[0, c]:.2f})",
            top=top,
        )
    else:
        plot_class_attributions(
            out / "class_attributions.png", axis=axis, X=X, target=target, attr=attr, classes=info.classes, top=top
        )
        plot_region_violins(out / "region_violin.png", top, target, info.classes)
    sys.stdout.write(f"wrote {out}/regions.json, regions.md and plots\n" + (out / "regions.md").read_text())
    return 0
