"""THE preprocessing of ramanedge, used by training and by serving alike.

A :class:`PreprocessConfig` (versioned, JSON-serialisable, hashable) describes the pipeline; a
:class:`Preprocessor` applies it. The steps always run in this order, each optional:

1. despike   - cosmic-ray removal on the instrument's own axis (Whitaker-Hayes modified z-score of
               first differences; spikes are one or two pixels wide, so this must precede resampling)
2. crop      - keep ``crop = (low, high)`` cm^-1
3. resample  - onto ``target_axis`` (cubic spline as in the RamanNet paper, or linear)
4. baseline  - background removal with any method of ``pybaselines`` (arpls, asls, snip, ...)
5. smooth    - Savitzky-Golay
6. normalise - minmax (the paper), vector (L2), area (L1), snv, or none

Steps 2, 3 and 5 (when no baseline sits between them) are linear: for a given source axis they are fused
into one banded operator that is computed once and cached, so per-spectrum work is one small matrix product.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from spectral_core.errors import PreprocessError
from spectral_core.hashing import sha256_arrays, sha256_json
from spectral_core.linop import BandedOperator
from spectral_core.spectrum import SpectralDataset, check_axis

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = [
    "AXIS_TOLERANCE_MIN_CM1",
    "LEGACY_BASELINES",
    "NORMALISATIONS",
    "PREPROCESS_VERSION",
    "AxisSpec",
    "BaselineConfig",
    "DespikeConfig",
    "PreprocessConfig",
    "Preprocessor",
    "SmoothConfig",
    "baseline_methods",
    "default_axis_tolerance",
    "normalise",
    "resample",
]

PREPROCESS_VERSION = 1
STEPS = ("despike", "crop", "resample", "baseline", "smooth", "normalise")
NORMALISATIONS = ("none", "minmax", "vector", "area", "snv")
Normalisation = Literal["none", "minmax", "vector", "area", "snv"]
# A spectrum whose dynamic range (or norm) is below this is flat: normalising it would only amplify noise
# or divide by zero, so it is rejected with a reason instead of silently becoming garbage.
FLAT_EPS = 1e-12
# Min-max and SNV divide by the spread of a spectrum. A constant spectrum picks up float32 rounding noise
# (~1e-7 relative) on its way through resampling, so "flat" is a spread below FLAT_RTOL of its magnitude,
# not only an exact zero; dividing by that noise would turn a dark frame into a random full-scale spectrum.
FLAT_RTOL = 1e-5
#: The smallest default axis tolerance, cm^-1 (see :func:`default_axis_tolerance`).
AXIS_TOLERANCE_MIN_CM1 = 2.0


def _flat_rows(scale: NDArray[np.float32], magnitude: NDArray[np.float32] | None) -> NDArray[np.bool_]:
    s = scale[:, 0]
    limit = FLAT_EPS if magnitude is None else np.maximum(FLAT_EPS, FLAT_RTOL * magnitude[:, 0])
    return np.asarray((s <= limit) | ~np.isfinite(s))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisSpec(_Model):
    """A uniform axis: ``points`` values from ``start`` to ``stop`` cm^-1 inclusive."""

    start: float
    stop: float
    points: int = Field(ge=2)

    @model_validator(mode="after")
    def _increasing(self) -> AxisSpec:
        if not self.stop > self.start:
            raise ValueError(f"axis stop ({self.stop}) must be greater than start ({self.start})")
        return self

    def values(self) -> NDArray[np.float64]:
        return np.linspace(self.start, self.stop, self.points, dtype=np.float64)


class DespikeConfig(_Model):
    threshold: float = Field(default=7.0, gt=0, description="modified z-score above which a step is a spike")
    width: int = Field(default=2, ge=1, le=10, description="widest spike in pixels (cosmic rays hit 1-2 pixels)")


#: The baseline methods of ramanedge before any pybaselines method was accepted; their settings sit in fields
#: of their own (``lam``, ``p``, ``poly_order``, ``max_half_window``) that stored contracts carry.
LEGACY_BASELINES = ("arpls", "asls", "airpls", "modpoly", "imodpoly", "snip")
_BASELINE_FIELDS = ("lam", "p", "poly_order", "max_half_window")
# Arguments of a pybaselines method that a configuration cannot set: the data themselves, per-point arrays.
_BASELINE_RESERVED = frozenset({"self", "data", "x_data", "weights"})
BaselineParam = bool | int | float | str


def baseline_methods() -> dict[str, inspect.Signature]:
    """Every baseline method of ``pybaselines.Baseline`` (one-dimensional), by name, with its signature."""
    return dict(_baseline_methods())


@functools.cache
def _baseline_methods() -> dict[str, inspect.Signature]:
    from pybaselines import Baseline

    out: dict[str, inspect.Signature] = {}
    for name, fn in inspect.getmembers(Baseline, inspect.isfunction):
        if name.startswith("_"):
            continue
        sig = inspect.signature(fn)
        if list(sig.parameters)[:2] == ["self", "data"]:
            out[name] = sig
    return out


def _settable(sig: inspect.Signature) -> dict[str, inspect.Parameter]:
    """The keyword arguments of a pybaselines method that a configuration may set (named, not per-point)."""
    return {
        n: q for n, q in sig.parameters.items()
        if n not in _BASELINE_RESERVED and q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)
    }


class BaselineConfig(_Model):
    """Background removal with any method of ``pybaselines.Baseline``.

    ``lam``, ``p``, ``poly_order`` and ``max_half_window`` go to every method whose signature takes them (for
    the six methods of :data:`LEGACY_BASELINES` exactly as before); ``params`` holds any other keyword argument
    of the method, checked against its signature. ``params`` is left out of the serialised config when empty,
    so configs (and contract hashes) written before it existed are unchanged.
    """

    method: str = "arpls"
    lam: float = Field(default=1e5, gt=0, description="smoothness (Whittaker and spline methods)")
    p: float = Field(default=0.01, gt=0, lt=1, description="asymmetry (asls and its relatives)")
    poly_order: int = Field(default=3, ge=0, le=10, description="polynomial order (polynomial methods)")
    max_half_window: int = Field(default=40, ge=1, description="half window in points (snip, swima)")
    params: dict[str, BaselineParam] = Field(
        default_factory=dict, description="further keyword arguments of the pybaselines method"
    )

    @model_validator(mode="after")
    def _known_method(self) -> BaselineConfig:
        methods = _baseline_methods()
        sig = methods.get(self.method)
        if sig is None:
            raise ValueError(f"unknown baseline method {self.method!r}; pybaselines has {', '.join(sorted(methods))}")
        accepted = _settable(sig)
        keywords = ", ".join(accepted) or "none"
        for key, value in self.params.items():
            if key in _BASELINE_FIELDS:
                raise ValueError(f"baseline {key} is a field of its own, not a params entry")
            q = accepted.get(key)
            if q is None:
                raise ValueError(f"baseline method {self.method!r} takes no argument {key!r}; it accepts {keywords}")
            d = q.default
            if d is not q.empty and d is not None and not isinstance(d, dict | list | tuple):
                # The default's kind says what the method expects (a flag, a number or a name).
                ok = isinstance(value, bool) if isinstance(d, bool) else (
                    isinstance(value, int | float) and not isinstance(value, bool) if isinstance(d, int | float)
                    else isinstance(value, str) if isinstance(d, str) else True)
                if not ok:
                    raise ValueError(f"baseline {self.method} {key}={value!r}: expected a value like its default "
                                     f"{d!r}")
        return self

    @model_serializer(mode="wrap")
    def _omit_empty_params(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("params"):
            data.pop("params", None)
        return data

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the call ``Baseline(x_data).<method>(row, **kwargs)``."""
        accepted = _settable(_baseline_methods()[self.method])
        fields = {k: getattr(self, k) for k in _BASELINE_FIELDS if k in accepted}
        return {**fields, **self.params}


class SmoothConfig(_Model):
    window: int = Field(default=9, ge=3, description="Savitzky-Golay window, odd, in points")
    polyorder: int = Field(default=3, ge=0)

    @model_validator(mode="after")
    def _odd(self) -> SmoothConfig:
        if self.window % 2 == 0:
            raise ValueError(f"smoothing window must be odd, got {self.window}")
        if self.polyorder >= self.window:
            raise ValueError(f"polyorder {self.polyorder} must be below the window {self.window}")
        return self


class PreprocessConfig(_Model):
    """The whole preprocessing pipeline. Serialises to JSON and travels inside the ONNX model contract."""

    version: Literal[1] = 1
    despike: DespikeConfig | None = None
    crop: tuple[float, float] | None = None
    target_axis: AxisSpec | None = None
    interpolation: Literal["cubic", "linear"] = "cubic"
    baseline: BaselineConfig | None = None
    smooth: SmoothConfig | None = None
    normalise: Normalisation = "minmax"

    @model_validator(mode="after")
    def _crop_order(self) -> PreprocessConfig:
        if self.crop is not None and not self.crop[1] > self.crop[0]:
            raise ValueError(f"crop high ({self.crop[1]}) must exceed crop low ({self.crop[0]})")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        return cls.model_validate_json(text)

    def hash(self) -> str:
        """A stable SHA-256 of the configuration (canonical JSON)."""
        return sha256_json(self.model_dump(mode="json"))


# Each target point of a cubic spline depends on every knot in theory, but the weights decay geometrically
# away from its interval (by 2 - sqrt(3) ~ 0.27 a knot on a uniform axis, about the same on uneven ones). So
# the weights of each target come from a local not-a-knot spline over SPLINE_HALF_WINDOW knots either side of
# its interval: where the window is cut inside the axis, the cut's boundary condition reaches the target
# attenuated ~0.27**14 ~ 1e-8; where the window reaches an end of the axis it has the axis' own not-a-knot
# condition. Measured against the global spline: <= 5e-9 of the largest weight on uniform, random and
# instrument-like axes; O(targets x window) work and memory whatever the length of the source axis.
SPLINE_HALF_WINDOW = 14
_TARGET_CHUNK = 256  # targets solved together (a (256, 30, 30) float64 system, ~2 MB)


def _interior_weights(
    x: NDArray[np.float64], jl: NDArray[np.intp], t: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Spline weights of targets whose window lies inside the axis (both ends cut), all at once.

    A cut's boundary condition only reaches the target attenuated, so the natural one (M = 0 at both cut
    knots) serves: the moment system is then symmetric tridiagonal and diagonally dominant, solved for every
    target together by the Thomas algorithm (no pivoting needed), a few vector operations per knot.
    """
    B, L = x.shape
    h = np.diff(x, axis=1)  # (B, L-1)
    rows = np.arange(B)
    hj = h[rows, jl]
    a = (x[rows, jl + 1] - t) / hj
    b = 1.0 - a
    c = np.zeros((B, L))
    c[rows, jl] = (a**3 - a) * hj**2 / 6.0
    c[rows, jl + 1] = (b**3 - b) * hj**2 / 6.0
    # unknowns M_1 .. M_L-2: diagonal 2 (h_k-1 + h_k), off-diagonal h_k
    diag = 2.0 * (h[:, :-1] + h[:, 1:])  # index k-1 for knot k
    off = h[:, 1:-1]  # between knots k and k+1, index k-1
    K = L - 2
    cp = np.empty((B, K))
    dp = np.empty((B, K))
    denom = diag[:, 0]
    dp[:, 0] = c[:, 1] / denom
    for k in range(1, K):
        cp[:, k - 1] = off[:, k - 1] / denom
        denom = diag[:, k] - off[:, k - 1] * cp[:, k - 1]
        dp[:, k] = (c[:, k + 1] - off[:, k - 1] * dp[:, k - 1]) / denom
    u = np.zeros((B, L))
    u[:, K] = dp[:, K - 1]
    for k in range(K - 2, -1, -1):
        u[:, k + 1] = dp[:, k] - cp[:, k] * u[:, k + 2]
    g = 6.0 / h
    w = np.zeros((B, L))
    w[:, :-1] += u[:, 1:] * g
    w[:, 1:] += u[:, :-1] * g
    w[:, 1:-1] -= u[:, 1:-1] * (g[:, :-1] + g[:, 1:])
    w[rows, jl] += a
    w[rows, jl + 1] += b
    return w


def _edge_weights(
    x: NDArray[np.float64], jl: NDArray[np.intp], t: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Spline weights of targets whose window reaches an end of the axis: there the axis' own not-a-knot
    condition holds, so the window's system is solved in full (few targets: those within the half window of
    either end).

    Moments M (second derivatives) solve T M = R y; the spline on [x_j, x_j+1] at ``a = (x_j+1 - t) / h``,
    ``b = 1 - a`` is ``a y_j + b y_j+1 + h^2 / 6 ((a^3 - a) M_j + (b^3 - b) M_j+1)``, so the weights of one
    target are ``a e_j + b e_j+1 + h^2 / 6 (R^T T^-T ((a^3 - a) e_j + (b^3 - b) e_j+1))``: one small solve each.
    """
    B, L = x.shape
    k = np.arange(1, L - 1)
    weights = np.empty((B, L), dtype=np.float64)
    for c0 in range(0, B, _TARGET_CHUNK):
        c1 = min(B, c0 + _TARGET_CHUNK)
        n_ = c1 - c0
        xs = x[c0:c1]
        h = np.diff(xs, axis=1)
        T = np.zeros((n_, L, L))
        T[:, k, k - 1] = h[:, :-1]
        T[:, k, k] = 2.0 * (h[:, :-1] + h[:, 1:])
        T[:, k, k + 1] = h[:, 1:]
        # not-a-knot: the third derivative is continuous at the second and the second-to-last knot
        T[:, 0, 0], T[:, 0, 1], T[:, 0, 2] = h[:, 1], -(h[:, 0] + h[:, 1]), h[:, 0]
        T[:, -1, -3], T[:, -1, -2], T[:, -1, -1] = h[:, -1], -(h[:, -2] + h[:, -1]), h[:, -2]
        R = np.zeros((n_, L, L))
        R[:, k, k - 1] = 6.0 / h[:, :-1]
        R[:, k, k] = -6.0 / h[:, :-1] - 6.0 / h[:, 1:]
        R[:, k, k + 1] = 6.0 / h[:, 1:]
        j = jl[c0:c1]
        rows = np.arange(n_)
        hj = h[rows, j]
        a = (xs[rows, j + 1] - t[c0:c1]) / hj
        b = 1.0 - a
        rhs = np.zeros((n_, L))
        rhs[rows, j] = (a**3 - a) * hj**2 / 6.0
        rhs[rows, j + 1] = (b**3 - b) * hj**2 / 6.0
        u = np.linalg.solve(np.transpose(T, (0, 2, 1)), rhs[:, :, None])[:, :, 0]
        w = np.einsum("bk,bkl->bl", u, R)
        w[rows, j] += a
        w[rows, j + 1] += b
        weights[c0:c1] = w
    return weights


def _cubic_weights(
    src: NDArray[np.float64], dst: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Local cubic-spline weights: for each target, (window start, weights on ``L`` consecutive knots)."""
    n, m = src.size, dst.size
    L = min(n, 2 * SPLINE_HALF_WINDOW + 2)
    j = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, n - 2)
    start = np.clip(j - SPLINE_HALF_WINDOW, 0, n - L)
    x = src[start[:, None] + np.arange(L)]  # (m, L) the local knots
    jl = j - start
    inner = (start > 0) & (start + L < n) & (jl >= 1) & (jl + 1 <= L - 2)
    weights = np.empty((m, L), dtype=np.float64)
    if inner.any():
        weights[inner] = _interior_weights(x[inner], jl[inner], dst[inner])
    if (~inner).any():
        weights[~inner] = _edge_weights(x[~inner], jl[~inner], dst[~inner])
    return start, weights


def _resample_operator(src: NDArray[np.float64], dst: NDArray[np.float64], kind: str) -> csr_matrix:
    """The resampling operator (dst.size x src.size) as a sparse matrix, never formed densely."""
    from scipy.sparse import csr_matrix

    n, m = src.size, dst.size
    if kind == "linear":
        j = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, n - 2)
        t = (dst - src[j]) / (src[j + 1] - src[j])
        data = np.stack([1.0 - t, t], axis=1).ravel()
        cols = np.stack([j, j + 1], axis=1).ravel()
        return csr_matrix((data, cols, np.arange(0, 2 * m + 1, 2)), shape=(m, n))
    if n < 4:  # a not-a-knot spline on 2 or 3 knots is a line or a parabola: scipy's tiny dense solve
        from scipy.interpolate import CubicSpline

        return csr_matrix(CubicSpline(src, np.eye(n), axis=0, bc_type="not-a-knot")(dst))
    start, w = _cubic_weights(src, dst)
    L = w.shape[1]
    cols = (start[:, None] + np.arange(L)).ravel()
    return csr_matrix((w.ravel(), cols, np.arange(0, L * m + 1, L)), shape=(m, n))


def resample(
    X: ArrayLike, axis: ArrayLike, target: ArrayLike, *, interpolation: Literal["cubic", "linear"] = "cubic"
) -> NDArray[np.float32]:
    """Spectra measured on ``axis`` (cm^-1) on the axis ``target`` (cm^-1): the pipeline's resampling step alone.

    The same operator and arithmetic as :class:`Preprocessor` (float32 result, bit for bit what its resample
    step gives without smoothing), so a data set resampled when it is read matches what serving computes from
    the raw spectra. Targets beyond the ends of ``axis`` take the nearest measured value: a caller that must
    not extrapolate checks the range first.

    Args:
        X: intensities, (points,) or (spectra, points).
        axis: the measured axis, strictly increasing, cm^-1.
        target: the axis to resample onto, strictly increasing, cm^-1.
        interpolation: ``cubic`` (not-a-knot spline) or ``linear``.

    Raises:
        AxisError: ``axis`` or ``target`` not finite and strictly increasing.
        PreprocessError: ``X`` does not match ``axis``.
    """
    src = check_axis(axis, what="source axis")
    dst = check_axis(target, what="resampling target")
    x = np.asarray(X, dtype=np.float32)
    if x.shape[-1:] != (src.size,) or x.ndim > 2:
        raise PreprocessError(f"spectra of shape {x.shape} do not match the axis ({src.size} points)")
    op = _resample_operator(src, np.clip(dst, src[0], src[-1]), interpolation)
    return BandedOperator.from_sparse(op).apply(x)


def _savgol_operator(n: int, cfg: SmoothConfig) -> csr_matrix:
    """Savitzky-Golay smoothing (n x n) as a sparse matrix: ``window`` weights a row.

    mode="interp" keeps the filter linear and shift-free at the edges: the first and last half-windows are
    the polynomial fitted to the first (last) ``window`` points, the rest one convolution kernel.
    """
    from scipy.signal import savgol_filter
    from scipy.sparse import csr_matrix

    if cfg.window > n:
        raise PreprocessError(f"smoothing window {cfg.window} is longer than the spectrum ({n} points)")
    w, half = cfg.window, cfg.window // 2
    k = min(n, 2 * w + 1)
    small = np.asarray(savgol_filter(np.eye(k), w, cfg.polyorder, axis=0, mode="interp"))
    if k == n:
        return csr_matrix(small)
    rows, cols, vals = [], [], []
    for i in range(half):  # left edge: rows i use columns 0..w-1
        rows.append(np.full(w, i))
        cols.append(np.arange(w))
        vals.append(small[i, :w])
        r = n - half + i  # right edge, mirrored from the small matrix's last rows
        rows.append(np.full(w, r))
        cols.append(np.arange(n - w, n))
        vals.append(small[k - half + i, k - w :])
    kernel = small[k // 2, k // 2 - half : k // 2 + half + 1]
    inner = np.arange(half, n - half)
    rows.append(np.repeat(inner, w))
    cols.append((inner[:, None] + np.arange(-half, half + 1)).ravel())
    vals.append(np.tile(kernel, inner.size))
    return csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


def normalise(
    X: NDArray[np.float32], method: str, *, inplace: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Normalise each row; returns (normalised, flat) where ``flat`` marks rows that cannot be normalised.

    Args:
        inplace: overwrite ``X`` (when it is already a float32 array) instead of allocating the result;
            for batches the caller owns, it saves two passes over memory.
    """
    x = np.asarray(X, dtype=np.float32)
    if method == "none":
        return x, np.zeros(x.shape[0], dtype=bool)
    shift: NDArray[np.float32] | None
    magnitude: NDArray[np.float32] | None = None
    if method == "minmax":
        shift = x.min(axis=1, keepdims=True)
        hi = x.max(axis=1, keepdims=True)
        scale = hi - shift
        magnitude = np.maximum(np.abs(shift), np.abs(hi))
    elif method == "vector":
        scale = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None].astype(np.float32)
        shift = None
    elif method == "area":
        scale = np.abs(x).sum(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        shift = None
    elif method == "snv":
        shift = x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        scale = x.std(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        magnitude = np.abs(x).max(axis=1, keepdims=True)
    else:
        raise PreprocessError(f"unknown normalisation {method!r}; choose from {NORMALISATIONS}")
    flat = _flat_rows(scale, magnitude)
    safe = np.where(flat[:, None], np.float32(1.0), scale)
    out = x if inplace and x is X else np.empty_like(x)
    if shift is not None:
        np.subtract(x, shift, out=out)
        np.divide(out, safe, out=out)
    else:
        np.divide(x, safe, out=out)
    return out, flat


def _minmax_inplace(x: NDArray[np.float32], chunk: int = 256) -> NDArray[np.bool_]:
    """Min-max normalise ``x`` in place, a cache-sized chunk of rows at a time (4 passes over L2, not RAM).

    Same arithmetic as :func:`normalise` ("minmax"), so the results are bit-identical.
    """
    flat = np.zeros(x.shape[0], dtype=bool)
    for r0 in range(0, x.shape[0], chunk):
        xs = x[r0 : r0 + chunk]
        lo = xs.min(axis=1, keepdims=True)
        hi = xs.max(axis=1, keepdims=True)
        scale = hi - lo
        f = _flat_rows(scale, np.maximum(np.abs(lo), np.abs(hi)))
        flat[r0 : r0 + chunk] = f
        np.subtract(xs, lo, out=xs)
        np.divide(xs, np.where(f[:, None], np.float32(1.0), scale), out=xs)
    return flat


def _nonfinite_rows(x: NDArray[np.float32]) -> NDArray[np.intp]:
    """Rows holding NaN/inf. A matrix-vector product propagates them in one fast BLAS pass; rows it flags
    (possibly only because a sum of huge values overflowed) are confirmed element-wise."""
    with np.errstate(over="ignore", invalid="ignore"):
        suspect = np.flatnonzero(~np.isfinite(x @ np.ones(x.shape[1], dtype=np.float32)))
    if suspect.size == 0:
        return suspect
    return suspect[~np.isfinite(x[suspect]).all(axis=1)]


def _spike_pixels(z: NDArray[np.float64], steps: NDArray[np.bool_], width: int) -> NDArray[np.bool_]:
    """Pixels of cosmic rays in one spectrum, from the modified z-scores ``z`` of its first differences.

    A spike is at most ``width`` pixels wide: a sudden flagged jump (not the continuation of a ramp) is answered
    by a flagged jump of the opposite sign within ``width`` steps. The flanks of a real Raman band also give
    large steps, but they ramp over several pixels and must be left alone (replacing them would silently
    flatten the band).
    """
    n = z.size + 1
    bad = np.zeros(n, dtype=bool)
    flagged = np.flatnonzero(steps)
    paired = np.zeros(z.size, dtype=bool)
    sign = np.sign(z) * steps

    def ramp(i: int, j: int) -> bool:  # step j continues step i in the same direction: a band flank
        return 0 <= j < z.size and sign[j] == sign[i]

    for s in flagged.tolist():
        if paired[s] or ramp(s, s - 1):
            continue
        window = flagged[(flagged > s) & (flagged <= s + width)]
        partners = window[sign[window] == -sign[s]]
        if partners.size and not ramp(int(partners[-1]), int(partners[-1]) + 1):
            t = int(partners[-1])
            bad[s + 1 : t + 1] = True
            paired[s : t + 1] = True
    # A spike on the first or last pixels has only its inner step.
    for s in flagged[~paired[flagged]]:
        if s < width and z[s] < 0 and not flagged[flagged < s].size:
            bad[: s + 1] = True
        elif s >= z.size - width and z[s] > 0 and not flagged[flagged > s].size:
            bad[s + 1 :] = True
    return bad


def _despike(X: NDArray[np.float32], cfg: DespikeConfig) -> NDArray[np.float32]:
    d = np.diff(X.astype(np.float64), axis=1)
    med = np.median(d, axis=1, keepdims=True)
    mad = np.median(np.abs(d - med), axis=1, keepdims=True)
    mad[mad == 0] = np.finfo(np.float64).tiny
    z = 0.6745 * (d - med) / mad
    steps = np.abs(z) > cfg.threshold
    rows = np.flatnonzero(steps.any(axis=1))
    if rows.size == 0:
        return X
    out = X.copy()
    idx = np.arange(X.shape[1])
    for r in rows:
        bad = _spike_pixels(z[r], steps[r], cfg.width)
        good = ~bad
        if not bad.any() or good.sum() < 2:
            continue
        out[r, bad] = np.interp(idx[bad], idx[good], X[r, good].astype(np.float64)).astype(np.float32)
    return out


def _baseline(
    X: NDArray[np.float32], axis: NDArray[np.float64], cfg: BaselineConfig
) -> tuple[NDArray[np.float32], dict[int, str]]:
    """Each row less its fitted baseline; rows the method fails on are returned as (index -> reason)."""
    from pybaselines import Baseline

    fitter = Baseline(x_data=axis)
    method = getattr(fitter, cfg.method)
    kwargs = cfg.kwargs()
    out = np.empty_like(X)
    bad: dict[int, str] = {}
    for i, row in enumerate(X.astype(np.float64)):
        try:
            bl, _ = method(row, **kwargs)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            bad[i] = f"baseline {cfg.method} failed: {exc}"
            out[i] = 0.0
            continue
        out[i] = row - bl
    return out, bad


def default_axis_tolerance(axis: ArrayLike) -> float:
    """The default axis tolerance of a model axis, cm^-1: the larger of :data:`AXIS_TOLERANCE_MIN_CM1` and
    one step of the axis (its widest).

    Two instruments never share an axis exactly: a shift of a wavenumber or a pixel more or less at an end
    is normal, and filling that edge from the nearest measured point changes a spectrum far less than the
    instrument-to-instrument differences a model must already tolerate.
    """
    a = np.asarray(axis, dtype=np.float64)
    step = float(np.max(np.diff(a))) if a.size > 1 else 0.0
    return max(AXIS_TOLERANCE_MIN_CM1, step)


def _check_range(what: str, t0: float, t1: float, *, lo: float, hi: float, tolerance: float | None) -> None:
    """Raise unless ``t0``-``t1`` lies inside the measured ``lo``-``hi`` (cm^-1) to within ``tolerance``."""
    slack = 1e-9 * abs(hi - lo) if what == "crop range" else 1e-6 * (hi - lo)
    tol = slack if tolerance is None else max(slack, tolerance)
    if t0 >= lo - tol and t1 <= hi + tol:
        return
    short = [f"{lo - t0:g} cm^-1 at the low end"] if t0 < lo - tol else []
    short += [f"{t1 - hi:g} cm^-1 at the high end"] if t1 > hi + tol else []
    if tolerance is None:
        raise PreprocessError(
            f"{what} {t0:g}-{t1:g} cm^-1 lies outside the measured range {lo:g}-{hi:g} cm^-1 "
            "(extrapolation would invent data)"
        )
    raise PreprocessError(
        f"{what} {t0:g}-{t1:g} cm^-1 lies outside the measured range {lo:g}-{hi:g} cm^-1 by "
        f"{' and '.join(short)}, beyond the axis tolerance of {tolerance:g} cm^-1: measure a range that covers "
        f"{t0:g}-{t1:g} cm^-1, correct the instrument axis (`ramanedge calibrate`), or retrain on data of this "
        "range"
    )


class _Plan:
    """What the pipeline does for one source axis: the fused linear operators and the output axis.

    Args:
        tolerance: how far (cm^-1, at each end) the crop range and the resampling target may reach beyond
            the measured range; those edge points take the value of the nearest measured point and
            ``edge_fill`` says by how much. None: no tolerance beyond float rounding.
    """

    def __init__(self, cfg: PreprocessConfig, src: NDArray[np.float64], tolerance: float | None = None) -> None:
        axis = src
        lo, hi = float(src[0]), float(src[-1])
        keep = slice(None)
        self.edge_fill = (0.0, 0.0)
        if cfg.crop is not None:
            c0, c1 = cfg.crop
            _check_range("crop range", c0, c1, lo=lo, hi=hi, tolerance=tolerance)
            i0 = int(np.searchsorted(src, c0, side="left"))
            i1 = int(np.searchsorted(src, c1, side="right"))
            if i1 - i0 < 2:
                raise PreprocessError(f"crop range {c0:g}-{c1:g} cm^-1 keeps fewer than 2 points")
            keep = slice(i0, i1)
            axis = src[keep]
        self.crop = keep
        pre: csr_matrix | None = None
        if cfg.target_axis is not None:
            dst = cfg.target_axis.values()
            a0, a1 = float(axis[0]), float(axis[-1])
            _check_range("resampling target", float(dst[0]), float(dst[-1]), lo=a0, hi=a1, tolerance=tolerance)
            # Points within the tolerance outside the measured range take the nearest measured value (clip).
            # Spectra already on the target axis need no resampling: interpolating at the knots is the identity.
            if not np.array_equal(axis, dst):
                pre = _resample_operator(axis, np.clip(dst, a0, a1), cfg.interpolation)
            eps = 1e-6 * (a1 - a0)  # float rounding of equal axes is no fill
            low, high = a0 - float(dst[0]), float(dst[-1]) - a1
            self.edge_fill = (low if low > eps else 0.0, high if high > eps else 0.0)
            axis = dst
        post: csr_matrix | None = None
        if cfg.smooth is not None:
            s = _savgol_operator(axis.size, cfg.smooth)
            if cfg.baseline is None:
                pre = s if pre is None else (s @ pre).tocsr()
            else:
                post = s
        # sparse all the way: a dense operator for a long source axis would need (targets x points) float64
        self.pre = None if pre is None else BandedOperator.from_sparse(pre)
        self.post = None if post is None else BandedOperator.from_sparse(post)
        self.axis = np.asarray(axis, dtype=np.float64)


class Preprocessor:
    """Applies a :class:`PreprocessConfig`; caches the fused linear operator per source axis.

    Args:
        config: the pipeline.
        skip: step names not to run here, because the model graph runs them (e.g. ``("normalise",)``
            for an exported model that normalises inside ONNX).
        axis_tolerance: how far (cm^-1, at each end) the resampling target (and crop) may reach beyond a
            spectrum's measured range; the missing edge is filled from the nearest measured point
            (:meth:`edge_fill` says by how much). None (training, export): the target must lie inside.
    """

    def __init__(
        self, config: PreprocessConfig, *, skip: Iterable[str] = (), cache_size: int = 16,
        axis_tolerance: float | None = None,
    ) -> None:
        if axis_tolerance is not None and not (np.isfinite(axis_tolerance) and axis_tolerance >= 0):
            raise PreprocessError(f"axis tolerance must be a finite number >= 0 cm^-1, got {axis_tolerance}")
        self.config = config
        self.axis_tolerance = axis_tolerance
        self.skip = frozenset(skip)
        unknown = self.skip - set(STEPS)
        if unknown:
            raise PreprocessError(f"unknown step(s) to skip: {sorted(unknown)}; steps are {STEPS}")
        self._cache: OrderedDict[str, _Plan] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def preload(self) -> None:
        """Import the libraries the configured steps load lazily (scipy's sparse matrices and filters, pybaselines).

        A serving process calls this in the background after start-up, so the first spectrum on a new axis
        does not wait for the imports (a few hundred ms) in the middle of a burst.
        """
        c = self.config
        resample = c.target_axis is not None and "resample" not in self.skip
        smooth = c.smooth is not None and "smooth" not in self.skip
        wanted = {
            "scipy.sparse": resample or smooth,
            "scipy.signal": smooth,
            "pybaselines": c.baseline is not None and "baseline" not in self.skip,
        }
        for module, used in wanted.items():
            if used:
                importlib.import_module(module)

    def _plan(self, axis: ArrayLike) -> _Plan:
        src = check_axis(axis, what="source axis")
        key = sha256_arrays(src)
        with self._lock:
            plan = self._cache.get(key)
            if plan is not None:
                self._cache.move_to_end(key)
                return plan
        try:
            plan = _Plan(self.config, src, self.axis_tolerance)
        except ValueError as exc:
            if isinstance(exc, PreprocessError):
                raise
            raise PreprocessError(str(exc)) from exc
        with self._lock:
            self._cache[key] = plan
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return plan

    def edge_fill(self, source_axis: ArrayLike) -> tuple[float, float]:
        """How far (cm^-1) the resampling target reaches below and above ``source_axis``: the edges filled
        from the nearest measured point, (0, 0) when the measured range covers the target."""
        return self._plan(source_axis).edge_fill

    def output_axis(self, source_axis: ArrayLike) -> NDArray[np.float64]:
        """The axis (cm^-1) of the preprocessed spectra for spectra measured on ``source_axis``."""
        return self._plan(source_axis).axis

    def transform_rows(
        self, X: ArrayLike, axis: ArrayLike
    ) -> tuple[NDArray[np.float32], dict[int, str]]:
        """Preprocess a batch, separating rows that cannot be preprocessed.

        Returns:
            (out, bad): ``out`` has one row per input row; rows listed in ``bad`` (index -> reason) hold
            unusable values and must be reported as errors, never classified.
        """
        plan = self._plan(axis)
        x = np.asarray(X, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        n_src = np.asarray(axis).size
        if x.ndim != 2 or x.shape[1] != n_src:
            raise PreprocessError(f"spectra of shape {x.shape} do not match the axis ({n_src} points)")
        bad: dict[int, str] = {}
        nonfinite = _nonfinite_rows(x)
        for i in nonfinite:
            bad[int(i)] = f"{int((~np.isfinite(x[i])).sum())} NaN/inf value(s)"
        if nonfinite.size:
            x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        cfg = self.config
        if cfg.despike is not None and "despike" not in self.skip:
            x = _despike(x, cfg.despike)
        x = x[:, plan.crop]
        owned = False  # whether x is an array this call allocated (so it may be normalised in place)
        if plan.pre is not None:
            x, owned = plan.pre.apply(x), True
        if cfg.baseline is not None and "baseline" not in self.skip:
            x, failed = _baseline(x, plan.axis, cfg.baseline)
            owned = True
            for i, why in failed.items():
                bad.setdefault(i, why)
        if plan.post is not None:
            x, owned = plan.post.apply(x), True
        # Flatness is checked even when the graph normalises: a flat row would divide by zero in there.
        run = "normalise" not in self.skip
        if run and owned and cfg.normalise == "minmax" and x.flags.c_contiguous:
            flat = _minmax_inplace(x)
        else:
            normed, flat = normalise(x, cfg.normalise, inplace=run and owned)
            if run:
                x = normed
        for i in np.flatnonzero(flat):
            bad.setdefault(int(i), f"flat spectrum: cannot apply {cfg.normalise} normalisation")
        return np.ascontiguousarray(x, dtype=np.float32), bad

    def transform(self, X: ArrayLike, axis: ArrayLike) -> NDArray[np.float32]:
        """Preprocess a batch (or one spectrum); raises :class:`PreprocessError` if any row is unusable."""
        one = np.asarray(X).ndim == 1
        out, bad = self.transform_rows(X, axis)
        if bad:
            first = min(bad)
            raise PreprocessError(f"{len(bad)} spectrum/spectra cannot be preprocessed; row {first}: {bad[first]}")
        return out[0] if one else out

    def transform_dataset(self, ds: SpectralDataset) -> SpectralDataset:
        """Preprocess a whole dataset; the result lives on the output axis."""
        out = self.transform(ds.X, ds.axis)
        return SpectralDataset(
            X=out,
            axis=self.output_axis(ds.axis),
            y=ds.y,
            classes=ds.classes,
            groups=ds.groups,
            provenance={**ds.provenance, "preprocess_hash": self.config.hash()},
        )
