"""DeepSHAP attributions of a trained RamanNet: how much each point and window moves a logit (offline only).

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

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError

if TYPE_CHECKING:
    import torch

    from trainer.model import RamanNet

__all__ = ["ADDITIVITY_RTOL", "Attributions", "cross_check", "explain_spectra", "permutation_windows"]

logger = logging.getLogger(__name__)

Float = NDArray[np.float64]
Int = NDArray[np.int64]

# Relative additivity error above which an explanation is reported as suspect (float64 gives ~1e-12).
ADDITIVITY_RTOL = 1e-6


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
