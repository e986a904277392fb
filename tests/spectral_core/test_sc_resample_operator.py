"""The resampling and smoothing operators are built sparse, never dense: same weights as the dense global
spline (and Savitzky-Golay filter) they replace, for memory and time that do not grow with targets x points."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from scipy.signal import savgol_filter

from spectral_core.linop import BandedOperator
from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor, SmoothConfig
from spectral_core.preprocess import _resample_operator as resample_operator
from spectral_core.preprocess import _savgol_operator as savgol_operator
from spectral_core.synth import instrument_axis


def _dense_spline(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The construction this replaces: the global not-a-knot spline of every unit vector."""
    return np.asarray(CubicSpline(src, np.eye(src.size), axis=0, bc_type="not-a-knot")(dst))


def _axes() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [
        ("uniform", np.linspace(200.0, 1900.0, 700)),
        ("instrument", instrument_axis(1024)),
        ("random", np.unique(rng.uniform(200.0, 1900.0, 900))),
        ("short", np.array([300.0, 410.0, 650.0, 700.0, 1200.0])),
    ]


@pytest.mark.parametrize("targets", [50, 333, 2500], ids=["down", "down3", "up"])
@pytest.mark.parametrize(("name", "src"), _axes(), ids=[a for a, _ in _axes()])
def test_cubic_operator_equals_the_dense_global_spline(name: str, src: np.ndarray, targets: int) -> None:
    dst = np.linspace(src[0], src[-1], targets)
    want = _dense_spline(src, dst)
    op = resample_operator(src, dst, "cubic")
    got = op.toarray()
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), name
    if src.size > 100:  # banded: each target uses a window of knots, not the whole axis
        assert op.nnz <= targets * 40


@pytest.mark.parametrize("n", [2, 3])
def test_tiny_axes_are_the_line_and_the_parabola(n: int) -> None:
    src = np.linspace(0.0, 10.0, n)
    dst = np.linspace(0.0, 10.0, 7)
    np.testing.assert_allclose(resample_operator(src, dst, "cubic").toarray(), _dense_spline(src, dst), atol=1e-12)


def test_linear_operator_has_two_weights_a_row() -> None:
    src = instrument_axis(300)
    dst = np.linspace(src[0], src[-1], 101)
    op = resample_operator(src, dst, "linear")
    y = np.sin(src / 50.0)
    np.testing.assert_allclose(op @ y, np.interp(dst, src, y), rtol=1e-12, atol=1e-12)
    assert op.nnz == 2 * dst.size


@pytest.mark.parametrize("n", [9, 15, 19, 20, 47, 400])
def test_savgol_operator_equals_the_dense_filter(n: int) -> None:
    cfg = SmoothConfig(window=9, polyorder=3)
    want = savgol_filter(np.eye(n), 9, 3, axis=0, mode="interp")
    np.testing.assert_allclose(savgol_operator(n, cfg).toarray(), want, atol=1e-12)


def test_banded_operator_from_sparse_applies_like_the_matrix() -> None:
    src = instrument_axis(1024)
    dst = np.linspace(400.0, 1800.0, 333)
    sp = resample_operator(src, dst, "cubic")
    op = BandedOperator.from_sparse(sp)
    x = np.random.default_rng(0).normal(size=(5, src.size)).astype(np.float32)
    np.testing.assert_allclose(op.apply(x), x @ sp.toarray().T.astype(np.float32), rtol=1e-4, atol=1e-4)
    assert op.shape == (333, 1024)
    assert op.nnz_band < 333 * 1024 / 4  # stored as a band


def test_preprocessor_on_a_long_axis_never_builds_a_dense_operator() -> None:
    """2,000,000 source points onto 1,000: a dense operator would be 16 GB; the band is a few MB."""
    n = 2_000_000
    src = np.linspace(100.0, 3000.0, n)
    cfg = PreprocessConfig(target_axis=AxisSpec(start=400.0, stop=1800.0, points=1000),
                           smooth=SmoothConfig(window=9, polyorder=3), normalise="minmax")
    p = Preprocessor(cfg)
    p.preload()  # the imports are not what is measured
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out_axis = p.output_axis(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out_axis.size == 1000
    assert peak < 150e6, f"peak {peak / 1e6:.0f} MB building the operator for {n:,} points"
    y = np.cos(src / 300.0).astype(np.float32)
    z = p.transform(y, src)
    ref = np.cos(np.linspace(400.0, 1800.0, 1000) / 300.0)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert np.abs(z - ref).max() < 1e-3


@pytest.mark.parametrize(("name", "src"), _axes()[:3], ids=[a for a, _ in _axes()[:3]])
def test_the_resample_reader_option_is_the_preprocessing_resampler(name: str, src: np.ndarray, tmp_path) -> None:
    # One spline: a data set resampled when it is read (``resample=``, ``ramanedge data convert --resample``)
    # equals, bit for bit, what the serving preprocessor makes of the raw spectrum.
    from spectral_core.io import read_dataset
    from spectral_core.preprocess import resample

    rng = np.random.default_rng(5)
    path = tmp_path / f"{name}.csv"
    path.write_text("".join(f"{a:.17g},{v:.9g}\n" for a, v in zip(src, rng.random(src.size), strict=True)))
    start, stop, points = float(np.ceil(src[0])) + 1.0, float(np.floor(src[-1])) - 1.0, 451
    raw = read_dataset(path)
    ds = read_dataset(path, resample=f"{start:g}:{stop:g}:{points}")
    serving = Preprocessor(PreprocessConfig(target_axis=AxisSpec(start=start, stop=stop, points=points),
                                            normalise="none"))
    assert ds.X.shape == (1, points) and not np.array_equal(ds.axis, raw.axis)
    np.testing.assert_array_equal(ds.axis, serving.output_axis(raw.axis))
    np.testing.assert_array_equal(ds.X, serving.transform(raw.X, raw.axis))
    np.testing.assert_array_equal(ds.X, resample(raw.X, raw.axis, ds.axis))
    # and both are the not-a-knot spline, to float32 resolution
    exact = CubicSpline(raw.axis, raw.X[0].astype(np.float64), bc_type="not-a-knot")(ds.axis)
    np.testing.assert_allclose(ds.X[0], exact, rtol=0, atol=1e-6 * np.abs(exact).max())


def test_resample_refuses_spectra_that_do_not_match_the_axis() -> None:
    from spectral_core.errors import AxisError, PreprocessError
    from spectral_core.preprocess import resample

    axis = np.linspace(200.0, 1800.0, 100)
    with pytest.raises(PreprocessError, match="100 points"):
        resample(np.ones((2, 99)), axis, np.linspace(300.0, 1700.0, 50))
    with pytest.raises(AxisError, match="resampling target"):
        resample(np.ones(100), axis, np.linspace(1700.0, 300.0, 50))
