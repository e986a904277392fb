"""Drift at the edge: a PCA model of the preprocessed training spectra, Hotelling T^2 and Q (SPE) residuals.

Chemometrics practice (MacGregor & Kourti 1995; Box 1954) monitors a spectrometer's output
with two statistics of a PCA model fitted on the calibration (training) spectra:

- **Hotelling T^2** = sum_i t_i^2 / lambda_i over the ``k`` retained components: how far a spectrum lies
  *inside* the model plane from the training mean, in units of the training spread (a sample of unusual
  composition, an intensity or baseline change that the training set already varied along).
- **Q** (squared prediction error) = ||x - mean - t P||^2: what the ``k`` components cannot describe (a new
  band, a baseline shape never seen, an axis shift, a detector artefact).

A spectrum is flagged as drift when T^2 or Q exceeds its control limit.

Control limits: the textbook limits (T^2 from the F distribution, Q from Box's chi-square approximation) assume the
training spectra are one multivariate normal cloud and that the monitored spectra are independent of the
fit. Neither holds here: training sets are clusters (one per class), and the PCA fitted on n spectra of
hundreds of points describes its own spectra better than new ones, so held-out Q values run well above the
training ones and a limit from the fitted data flags far too much. The limits in force are therefore
**empirical quantiles of held-out training spectra**: k-fold cross-validation (grouped by sample or patient
when groups are known, as repeat acquisitions of one sample are near copies), each fold's spectra scored by a
PCA fitted without them, the ``quantile`` (default 0.99) of those out-of-fold T^2 and Q values. The F and
Box chi-square limits are computed too and stored beside them for reference.

One spectrum is weak evidence: natural band-position and background variation in a training set hides a
small systematic change (a 5 cm^-1 uncorrected axis shift flags 10-30% of spectra one by one, 10 cm^-1 about
half or more). Drift of an instrument is systematic, so :func:`window_alarm` tests the flag rate over the
last spectra against the rate the model expects (``expected_flag_rate``) and raises the alarm the runtime
reports.

Everything here is numpy only except the reference limits at fit time (scipy.special, a base dependency);
scoring (:func:`drift_scores`) is a few small matrix products per spectrum.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spectral_core.errors import DataError

__all__ = ["DriftModel", "DriftScorer", "DriftScores", "drift_scores", "fit_drift", "window_alarm"]

#: components kept at most: the contract stores k x n_points loadings (k = 16 on a 2,090-point axis is
#: 33,440 numbers, about 400 KB of JSON in the ONNX metadata)
MAX_COMPONENTS = 16
#: the smallest training set a drift model is fitted on (fewer spectra give no usable limits)
MIN_SPECTRA = 20
_DIGITS = 7  # significant digits stored: float32 precision, the resolution of the spectra themselves


class DriftModel(BaseModel):
    """A PCA model of the fully preprocessed training spectra (every preprocessing step, those the graph runs
    included) with control limits on Hotelling T^2 and Q."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["preprocessed"] = "preprocessed"
    mean: list[float] = Field(description="mean training spectrum on the model axis, preprocessed units")
    loadings: list[list[float]] = Field(description="k orthonormal loadings, k x n_points")
    eigenvalues: list[float] = Field(description="variance of the training scores per component (ddof=1)")
    explained_variance: float = Field(ge=0, le=1, description="fraction of the training variance the k explain")
    t2_limit: float = Field(gt=0, description="T^2 control limit in force")
    q_limit: float = Field(gt=0, description="Q (squared prediction error) control limit in force")
    limit_method: Literal["cv-quantile"] = "cv-quantile"
    quantile: float = Field(gt=0, lt=1, description="quantile of the out-of-fold statistics used as limits")
    folds: int = Field(ge=2, description="cross-validation folds the limits come from")
    grouped: bool = Field(description="folds kept each group (sample, patient) whole")
    n_spectra: int = Field(ge=MIN_SPECTRA)
    t2_limit_f: float | None = Field(default=None, description="reference: F-distribution T^2 limit")
    q_limit_box: float | None = Field(default=None, description="reference: Box chi-square Q limit")
    expected_flag_rate: float = Field(ge=0, le=1, description="out-of-fold spectra flagged (T^2 or Q) at these limits")

    @model_validator(mode="after")
    def _consistent(self) -> DriftModel:
        n, k = len(self.mean), len(self.loadings)
        if k < 1 or len(self.eigenvalues) != k:
            raise ValueError(f"drift model needs k >= 1 loadings and k eigenvalues, got {k} and {len(self.eigenvalues)}")
        if any(len(row) != n for row in self.loadings):
            raise ValueError(f"drift loadings must be {k} x {n} (the mean's length)")
        if not all(math.isfinite(v) and v > 0 for v in self.eigenvalues):
            raise ValueError("drift eigenvalues must be finite and > 0")
        return self

    @property
    def n_components(self) -> int:
        return len(self.loadings)

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(mean [n], loadings [k, n], eigenvalues [k]) as float64 arrays (converted at each call: the runtime
        keeps a :class:`DriftScorer`)."""
        return (np.asarray(self.mean, dtype=np.float64), np.asarray(self.loadings, dtype=np.float64),
                np.asarray(self.eigenvalues, dtype=np.float64))


class DriftScores(BaseModel):
    """T^2, Q and the drift flag of a batch of spectra (one entry each)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    t2: NDArray[np.float64]
    q: NDArray[np.float64]
    flag: NDArray[np.bool_]


def _round(a: NDArray[np.float64]) -> list[float]:
    return [float(f"{v:.{_DIGITS}g}") for v in np.ravel(a)]


def _pca(X: NDArray[np.float64], k: int) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                                                  NDArray[np.float64]]:
    """(mean, loadings [k, n], eigenvalues [k], all eigenvalues) of the rows of ``X``."""
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    ev = s**2 / max(X.shape[0] - 1, 1)
    return mean, vt[:k], ev[:k], ev


def _stats(X: NDArray[np.float64], mean: NDArray[np.float64], P: NDArray[np.float64],
           ev: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xc = X - mean
    t = xc @ P.T
    r = xc - t @ P
    return np.einsum("ij,ij->i", t / ev, t), np.einsum("ij,ij->i", r, r)


def _folds(n: int, groups: NDArray[np.str_] | None, n_folds: int, seed: int) -> tuple[NDArray[np.int64], bool]:
    """A fold index per spectrum: whole groups per fold when there are enough groups, else spectra at random."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        uniq, inv = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if uniq.size >= n_folds and uniq.size < n:  # one group per spectrum: no grouping to respect
            order = rng.permutation(uniq.size)
            gfold = np.empty(uniq.size, dtype=np.int64)
            gfold[order] = np.arange(uniq.size) % n_folds
            return gfold[inv], True
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % n_folds
    return fold, False


def _reference_limits(ev_all: NDArray[np.float64], k: int, n: int, alpha: float) -> tuple[float | None, float | None]:
    """Textbook limits at confidence ``1 - alpha``: T^2 from the F distribution (new observations) and Q from
    Box's chi-square approximation g * chi2_h (g = theta2/theta1, h = theta1^2/theta2 of the eigenvalues left
    out of the model). Box rather than Jackson-Mudholkar: JM is undefined (h0 <= 0) for the long eigenvalue
    tails of real spectra, which the melanoma set showed."""
    # scipy.special, not scipy.stats: the same quantiles without the seconds scipy.stats takes to import
    from scipy.special import chdtri, fdtri

    t2 = None
    if n > k + 1:
        t2 = float(k * (n - 1) * (n + 1) / (n * (n - k)) * fdtri(k, n - k, 1 - alpha))
    rest = ev_all[k:]
    th1, th2 = float(np.sum(rest)), float(np.sum(rest**2))
    q = None
    if th1 > 0 and th2 > 0:
        q = float(th2 / th1 * chdtri(th1**2 / th2, alpha))  # chdtri: inverse of the upper tail
    return t2, q


def window_alarm(flagged: int, n: int, expected_rate: float, alpha: float = 1e-3) -> bool:
    """Whether ``flagged`` drift flags among the last ``n`` spectra are too many for in-distribution spectra.

    A one-sided binomial test against ``expected_rate`` (the rate the model's own out-of-fold spectra were
    flagged at): one flagged spectrum is expected now and then, a run of them is an instrument or sample change
    that a single spectrum cannot show (a 5 cm^-1 axis shift flags only a fraction of spectra one by one).
    """
    if n <= 0 or flagged <= 0:
        return False
    p = min(max(expected_rate, 1e-6), 1 - 1e-6)
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(flagged, n + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return tail < alpha


def fit_drift(
    X: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    variance: float = 0.99,
    max_components: int = MAX_COMPONENTS,
    quantile: float = 0.99,
    n_folds: int = 5,
    seed: int = 0,
) -> DriftModel:
    """Fit the drift model on fully preprocessed training spectra.

    Args:
        X: [N, n_points] spectra on the model axis after every preprocessing step (normalisation included).
        groups: per-spectrum sample/patient ids; folds keep each group whole (None: spectra at random).
        variance: the smallest k whose components explain at least this fraction of the variance is kept.
        max_components: cap on k (the contract's size grows with k x n_points).
        quantile: quantile of the out-of-fold T^2 and Q used as control limits (each; the drift flag is either,
            so about ``2 * (1 - quantile)`` of new in-distribution spectra are flagged).
        n_folds: cross-validation folds for the limits.
        seed: fold assignment.

    Raises:
        DataError: fewer than :data:`MIN_SPECTRA` spectra, non-finite values, or bad arguments.
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < MIN_SPECTRA or x.shape[1] < 2:
        raise DataError(f"a drift model needs at least {MIN_SPECTRA} spectra of >= 2 points, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("drift model: training spectra hold NaN/inf")
    if not (0 < variance <= 1 and 0 < quantile < 1 and max_components >= 1 and n_folds >= 2):
        raise DataError(f"drift model: bad arguments variance={variance}, quantile={quantile}, "
                        f"max_components={max_components}, n_folds={n_folds}")
    g = None if groups is None else np.asarray(groups).astype(str)
    if g is not None and g.shape != (x.shape[0],):
        raise DataError(f"drift model: groups has shape {g.shape}, expected ({x.shape[0]},)")
    n = x.shape[0]
    mean, vt, _, ev_all = _pca(x, x.shape[1])
    total = float(ev_all.sum())
    if total <= 0:
        raise DataError("drift model: the training spectra are all identical")
    cum = np.cumsum(ev_all) / total
    fold, grouped = _folds(n, g, n_folds, seed)
    smallest_fit = min(int(np.sum(fold != f)) for f in range(n_folds))
    k_max = max(1, min(max_components, smallest_fit - 2, int(np.sum(ev_all > total * 1e-12))))
    k = min(k_max, int(np.searchsorted(cum, variance - 1e-12)) + 1)
    t2_oof = np.empty(n)
    q_oof = np.empty(n)
    for f in range(n_folds):
        test = fold == f
        m_f, p_f, ev_f, _ = _pca(x[~test], k)
        t2_oof[test], q_oof[test] = _stats(x[test], m_f, p_f, np.maximum(ev_f, total * 1e-12))
    P, ev = vt[:k], ev_all[:k]
    t2_f, q_box = _reference_limits(ev_all, k, n, 1 - quantile)
    t2_limit = float(np.quantile(t2_oof, quantile))
    q_limit = max(float(np.quantile(q_oof, quantile)), 1e-30)
    return DriftModel(
        mean=_round(mean),
        loadings=[_round(row) for row in P],
        eigenvalues=_round(np.maximum(ev, total * 1e-12)),
        explained_variance=min(1.0, float(cum[k - 1])),
        t2_limit=t2_limit,
        q_limit=q_limit,
        quantile=quantile,
        folds=n_folds,
        grouped=grouped,
        n_spectra=n,
        t2_limit_f=t2_f,
        q_limit_box=q_box,
        expected_flag_rate=float(np.mean((t2_oof > t2_limit) | (q_oof > q_limit))),
    )


class DriftScorer:
    """Scores spectra against one drift model, its arrays converted once (converting 16 x 2,090 numbers from the
    contract's lists took milliseconds, ten times the scoring itself).

    Args:
        model: the contract's drift model.
    """

    def __init__(self, model: DriftModel) -> None:
        self.model = model
        self._mean, self._P, self._ev = model.arrays()

    def score(self, X: ArrayLike) -> DriftScores:
        """T^2, Q and the drift flag (T^2 > limit or Q > limit) of fully preprocessed spectra [N, n_points]."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._mean.size:
            raise DataError(f"drift: spectra of shape {x.shape} do not match the drift model ({self._mean.size} points)")
        t2, q = _stats(x, self._mean, self._P, self._ev)
        return DriftScores(t2=t2, q=q, flag=(t2 > self.model.t2_limit) | (q > self.model.q_limit))


def drift_scores(X: ArrayLike, model: DriftModel) -> DriftScores:
    """T^2, Q and the drift flag (T^2 > limit or Q > limit) of fully preprocessed spectra.

    Args:
        X: [N, n_points] spectra preprocessed as the training spectra were (normalisation included).
        model: the contract's drift model.
    """
    return DriftScorer(model).score(X)
