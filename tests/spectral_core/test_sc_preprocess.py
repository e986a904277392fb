"""THE preprocessing: each step, resampling exactness, errors, flat rows, hashing and skipping steps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from spectral_core.errors import PreprocessError
from spectral_core.linop import BandedOperator
from spectral_core.preprocess import (
    AxisSpec,
    BaselineConfig,
    DespikeConfig,
    PreprocessConfig,
    Preprocessor,
    SmoothConfig,
    normalise,
)
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import instrument_axis

SRC = instrument_axis(600)  # non-uniform, about 350-1850 cm^-1
DST = AxisSpec(start=400.0, stop=1800.0, points=500)


def pre(**kw: object) -> Preprocessor:
    kw.setdefault("normalise", "none")
    return Preprocessor(PreprocessConfig(**kw))  # type: ignore[arg-type]


def poly(x: np.ndarray, degree: int) -> np.ndarray:
    t = (x - 1100.0) / 700.0  # scaled so every term matters over the range
    return np.asarray(sum((k + 1) * (-1) ** k * t**k for k in range(degree + 1)) + 5.0)


@pytest.mark.parametrize(("kind", "degree"), [("linear", 1), ("cubic", 1), ("cubic", 2), ("cubic", 3)])
def test_resampling_reproduces_polynomials(kind: str, degree: int) -> None:
    p = pre(target_axis=DST, interpolation=kind)
    out = p.transform(poly(SRC, degree), SRC)
    np.testing.assert_allclose(out, poly(DST.values(), degree), rtol=2e-6, atol=0)
    np.testing.assert_array_equal(p.output_axis(SRC), DST.values())


def test_linear_differs_from_cubic_on_curved_data() -> None:
    y = np.sin(SRC / 40.0)
    truth = np.sin(DST.values() / 40.0)
    err_lin = np.abs(pre(target_axis=DST, interpolation="linear").transform(y, SRC) - truth).max()
    err_cub = np.abs(pre(target_axis=DST, interpolation="cubic").transform(y, SRC) - truth).max()
    assert err_cub < err_lin / 10  # the spline is far closer on a smooth curve
    assert err_lin > 1e-4


def test_banded_operator_matches_dense_cubic_spline() -> None:
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(5, SRC.size)).cumsum(axis=1)
    ref = CubicSpline(SRC, Y, axis=1, bc_type="not-a-knot")(DST.values())
    out = pre(target_axis=DST).transform(Y, SRC)
    assert np.abs(out - ref).max() <= 1e-6 * np.abs(ref).max()


def test_banded_operator_is_its_dense_matrix() -> None:
    rng = np.random.default_rng(1)
    m = np.zeros((300, 400))
    for i in range(300):
        m[i, max(0, i - 5) : i + 20] = rng.normal(size=len(range(max(0, i - 5), min(400, i + 20))))
    op = BandedOperator(m, block=64)
    x = rng.normal(size=(7, 400)).astype(np.float32)
    np.testing.assert_allclose(op.apply(x), x @ m.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(op.dense(), m.astype(np.float32))
    assert op.nnz_band < m.size  # it is stored banded, not dense
    np.testing.assert_allclose(op.apply(x[0]), x[0] @ m.T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expects 400 points"):
        op.apply(np.ones((2, 3), np.float32))


def test_crop() -> None:
    x = np.linspace(100, 200, 101)
    p = pre(crop=(120.0, 150.0))
    np.testing.assert_array_equal(p.output_axis(x), np.arange(120.0, 151.0))
    np.testing.assert_array_equal(p.transform(x, x), np.arange(120.0, 151.0, dtype=np.float32))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"crop": (50.0, 150.0)}, "crop range 50-150 cm\\^-1 lies outside the measured range 100-200"),
        ({"crop": (150.0, 150.5)}, "fewer than 2 points"),
        ({"target_axis": AxisSpec(start=90.0, stop=180.0, points=10)}, "outside the measured range"),
        ({"crop": (120.0, 160.0), "target_axis": AxisSpec(start=110.0, stop=150.0, points=10)}, "extrapolation"),
        ({"smooth": SmoothConfig(window=201, polyorder=2)}, "longer than the spectrum"),
    ],
)
def test_range_errors(cfg: dict[str, object], match: str) -> None:
    x = np.linspace(100, 200, 101)
    with pytest.raises(PreprocessError, match=match):
        pre(**cfg).transform(np.ones_like(x), x)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="crop high"):
        PreprocessConfig(crop=(200.0, 100.0))
    with pytest.raises(ValueError, match="odd"):
        SmoothConfig(window=8)
    with pytest.raises(ValueError, match="greater than start"):
        AxisSpec(start=5.0, stop=1.0, points=3)
    with pytest.raises(ValueError):
        PreprocessConfig(normalise="max")  # type: ignore[arg-type]
    with pytest.raises(PreprocessError, match="unknown step"):
        Preprocessor(PreprocessConfig(), skip=("resampling",))


def test_smoothing_keeps_cubic_polynomials_and_reduces_noise() -> None:
    x = np.linspace(400, 1800, 300)
    p = pre(smooth=SmoothConfig(window=11, polyorder=3))
    np.testing.assert_allclose(p.transform(poly(x, 3), x), poly(x, 3), rtol=2e-6)
    noise = np.random.default_rng(2).normal(size=x.size)
    assert p.transform(noise, x).std() < 0.6 * noise.std()


def test_despike_removes_a_cosmic_ray_and_leaves_the_rest() -> None:
    x = np.linspace(400, 1800, 500)
    clean = 100 + 50 * np.exp(-(((x - 1000) / 15) ** 2)) + np.random.default_rng(3).normal(0, 0.5, x.size)
    spiked = clean.copy()
    spiked[250] += 2000
    out = pre(despike=DespikeConfig()).transform(spiked, x)
    assert abs(out[250] - clean[250]) < 5
    far = np.r_[0:240, 260:500]
    np.testing.assert_allclose(out[far], clean[far].astype(np.float32))


def test_despike_two_pixel_and_edge_spikes() -> None:
    x = np.linspace(400, 1800, 300)
    clean = 200 + np.random.default_rng(7).normal(0, 1.0, x.size)
    spiked = clean.copy()
    spiked[100] += 900
    spiked[101] += 400  # a two-pixel cosmic ray of uneven height
    spiked[-1] += 1000  # a spike on the last pixel has only one step
    out = pre(despike=DespikeConfig()).transform(spiked, x)
    assert np.abs(out[[100, 101, -1]] - clean[[100, 101, -1]]).max() < 6
    assert np.abs(out - clean).max() < 6


def test_despike_leaves_sharp_real_bands_alone() -> None:
    # Regression: every large first difference used to be replaced, which flattened the flanks of real
    # high-SNR bands 4-10 pixels wide.
    x = np.linspace(400, 1800, 700)
    bands = 50 * np.exp(-(((x - 900) / 6) ** 2)) + 80 * np.exp(-(((x - 1300) / 10) ** 2))
    y = 100 + bands + np.random.default_rng(8).normal(0, 0.3, x.size)
    np.testing.assert_array_equal(pre(despike=DespikeConfig()).transform(y, x), y.astype(np.float32))


@pytest.mark.parametrize("method", ["modpoly", "arpls", "asls", "imodpoly", "snip", "airpls"])
def test_baseline_removes_a_smooth_background(method: str) -> None:
    x = np.linspace(400, 1800, 400)
    peak = 100 * np.exp(-(((x - 1100) / 8) ** 2))
    background = 500 + 0.3 * (x - 400) + 2e-4 * (x - 1100) ** 2
    noise = np.random.default_rng(6).normal(0, 1.0, x.size)  # arpls weighs points by the noise level
    cfg = BaselineConfig(method=method, poly_order=2, lam=1e5, max_half_window=30)  # type: ignore[arg-type]
    out = pre(baseline=cfg).transform(peak + background + noise, x)
    away = np.abs(x - 1100) > 100
    assert np.abs(out[away]).mean() < 0.05 * background.mean()
    assert out[np.argmin(np.abs(x - 1100))] > 60  # the band survives


def test_normalisations() -> None:
    rng = np.random.default_rng(4)
    X = rng.uniform(1, 10, size=(3, 50)).astype(np.float32)
    mm, flat = normalise(X, "minmax")
    assert not flat.any()
    np.testing.assert_allclose(mm.min(axis=1), 0, atol=1e-7)
    np.testing.assert_allclose(mm.max(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(normalise(X, "vector")[0], axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.abs(normalise(X, "area")[0]).sum(axis=1), 1, rtol=1e-5)
    snv = normalise(X, "snv")[0]
    np.testing.assert_allclose(snv.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(snv.std(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(normalise(X, "none")[0], X)
    with pytest.raises(PreprocessError, match="unknown normalisation"):
        normalise(X, "max")


def test_flat_and_nan_rows_are_reported_not_returned_as_garbage() -> None:
    x = np.linspace(400, 1800, 100)
    X = np.vstack([np.linspace(0, 1, 100), np.full(100, 7.0), np.linspace(0, 1, 100)])
    X[2, 5] = np.nan
    p = Preprocessor(PreprocessConfig(normalise="minmax"))
    out, bad = p.transform_rows(X, x)
    assert set(bad) == {1, 2}
    assert "flat spectrum" in bad[1] and "NaN/inf" in bad[2]
    np.testing.assert_allclose(out[0], np.linspace(0, 1, 100), atol=1e-6)
    with pytest.raises(PreprocessError, match="2 spectrum/spectra cannot be preprocessed; row 1: flat"):
        p.transform(X, x)
    with pytest.raises(PreprocessError, match="do not match the axis"):
        p.transform(np.ones((2, 99)), x)


def test_skip_normalise_leaves_scale_but_still_reports_flat_rows() -> None:
    x = np.linspace(400, 1800, 100)
    X = np.vstack([np.linspace(10, 20, 100), np.full(100, 3.0)])
    p = Preprocessor(PreprocessConfig(normalise="minmax"), skip=("normalise",))
    out, bad = p.transform_rows(X, x)
    np.testing.assert_allclose(out[0], np.linspace(10, 20, 100), rtol=1e-6)  # not normalised here
    assert list(bad) == [1]


def test_hash_is_stable_and_changes_with_the_config() -> None:
    c = PreprocessConfig()
    # Pinned: the hash travels in every exported model; a change here invalidates deployed contracts.
    assert c.hash() == "921ba51a43894936a2e731995738ba9da5caf9ca2640df68f8210479a5898561"
    assert PreprocessConfig.from_json(c.to_json()).hash() == c.hash()
    full = PreprocessConfig(
        despike=DespikeConfig(), crop=(500.0, 1700.0), target_axis=DST, baseline=BaselineConfig(),
        smooth=SmoothConfig(), normalise="snv",
    )
    assert PreprocessConfig.from_json(full.to_json()) == full
    hashes = {
        c.hash(),
        full.hash(),
        PreprocessConfig(normalise="vector").hash(),
        PreprocessConfig(interpolation="linear").hash(),
        full.model_copy(update={"smooth": SmoothConfig(window=11)}).hash(),
    }
    assert len(hashes) == 5


def test_pipeline_is_deterministic_and_transform_dataset_keeps_labels() -> None:
    rng = np.random.default_rng(5)
    X = rng.uniform(100, 200, size=(4, SRC.size))
    ds = SpectralDataset(X=X, axis=SRC, y=[0, 1, 0, 1], classes=("a", "b"), groups=["p", "p", "q", "q"])
    cfg = PreprocessConfig(target_axis=DST, smooth=SmoothConfig(), baseline=BaselineConfig(method="modpoly"))
    a = Preprocessor(cfg).transform_dataset(ds)
    b = Preprocessor(PreprocessConfig.from_json(cfg.to_json())).transform_dataset(ds)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.axis, DST.values())
    np.testing.assert_array_equal(a.y, ds.y)
    np.testing.assert_array_equal(a.groups, ds.groups)
    assert a.provenance["preprocess_hash"] == cfg.hash()
    # One spectrum in, one spectrum out, equal to its row in the batch (up to BLAS summation order).
    np.testing.assert_allclose(Preprocessor(cfg).transform(X[2], SRC), a.X[2], rtol=1e-5, atol=1e-6)


def test_inputs_are_never_modified_and_in_place_paths_agree() -> None:
    x = np.linspace(400, 1800, 200)
    X = np.random.default_rng(9).uniform(1, 5, size=(3, 200)).astype(np.float32)
    keep = X.copy()
    for cfg in (
        PreprocessConfig(normalise="minmax"),  # no linear step: the caller's array must not be normalised in place
        PreprocessConfig(target_axis=AxisSpec(start=450.0, stop=1750.0, points=100), normalise="minmax"),
        PreprocessConfig(smooth=SmoothConfig(), normalise="snv"),
    ):
        out = Preprocessor(cfg).transform(X, x)
        np.testing.assert_array_equal(X, keep)
        assert out is not X
    Y = np.random.default_rng(10).normal(size=(600, 50)).astype(np.float32)
    ref, ref_flat = normalise(Y.copy(), "minmax")
    Z = Y.copy()
    out, flat = normalise(Z, "minmax", inplace=True)
    assert out is Z
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(flat, ref_flat)


def test_huge_finite_values_are_not_mistaken_for_nan() -> None:
    x = np.linspace(400, 1800, 100)
    X = np.vstack([np.linspace(1e38, 3e38, 100), np.linspace(0, 1, 100)]).astype(np.float32)
    X[1, 3] = np.inf
    out, bad = Preprocessor(PreprocessConfig(target_axis=AxisSpec(start=500.0, stop=1700.0, points=50))).transform_rows(
        X, x
    )
    assert list(bad) == [1] and "NaN/inf" in bad[1]
    assert np.isfinite(out[0]).all() and out[0].min() == 0 and abs(out[0].max() - 1) < 1e-6


@pytest.mark.parametrize("method", ["minmax", "snv"])
def test_constant_spectrum_is_flat_after_cubic_resampling(method: str) -> None:
    """float32 rounding in resampling must not make a constant (dark) frame look like a spectrum."""
    from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor
    from spectral_core.synth import instrument_axis

    src = instrument_axis(1024)
    pre = Preprocessor(PreprocessConfig(target_axis=AxisSpec(start=400, stop=1800, points=1000), normalise=method))
    X = np.full((3, src.size), 500.0, dtype=np.float32)
    X[2] += np.sin(np.linspace(0, 20, src.size)).astype(np.float32) * 50
    _, bad = pre.transform_rows(X, src)
    assert set(bad) == {0, 1}
    assert "flat" in bad[0]


# Hashes of configs as stored before baselines took any pybaselines method (computed on that code): a deployed
# contract carries its config as JSON and this hash; both must survive the new ``params`` field unchanged.
OLD_CONTRACTS = {
    '{"version":1,"despike":{"threshold":7.0,"width":2},"crop":[500.0,1700.0],"target_axis":{"start":500.0,'
    '"stop":1700.0,"points":600},"interpolation":"cubic","baseline":{"method":"asls","lam":1000000.0,"p":0.02,'
    '"poly_order":3,"max_half_window":40},"smooth":{"window":11,"polyorder":3},"normalise":"snv"}':
    "d24b6fba3316cb538d9793a8c2197ac2d17d7dd85683ee0e920ae75660e8688a",
    '{"version":1,"despike":null,"crop":null,"target_axis":null,"interpolation":"cubic","baseline":{"method":'
    '"snip","lam":100000.0,"p":0.01,"poly_order":3,"max_half_window":30},"smooth":null,"normalise":"minmax"}':
    "a56e0dace66b5f95a9d4c25062ff40d75d7bdde9cc61236c551a483de440da30",
    '{"version":1,"despike":{"threshold":6.0,"width":3},"crop":null,"target_axis":null,"interpolation":"cubic",'
    '"baseline":null,"smooth":null,"normalise":"minmax"}':
    "a30f2d6421e8d2053da1af48a6d2c0385912aea47108e78e30274c0f29a9edeb",
}


@pytest.mark.parametrize("stored", list(OLD_CONTRACTS))
def test_stored_configs_keep_their_json_and_hash(stored: str) -> None:
    cfg = PreprocessConfig.from_json(stored)
    assert cfg.hash() == OLD_CONTRACTS[stored]
    assert cfg.to_json() == stored  # no new key appears in an old contract's config


def test_legacy_methods_get_exactly_their_old_arguments() -> None:
    expected = {"arpls": {"lam"}, "asls": {"lam", "p"}, "airpls": {"lam"}, "modpoly": {"poly_order"},
                "imodpoly": {"poly_order"}, "snip": {"max_half_window"}}
    for method, keys in expected.items():
        assert set(BaselineConfig(method=method).kwargs()) == keys


def test_any_pybaselines_method_with_its_keywords() -> None:
    x = np.linspace(400, 1800, 400)
    peak = 100 * np.exp(-(((x - 1100) / 8) ** 2))
    background = 500 + 0.3 * (x - 400) + 2e-4 * (x - 1100) ** 2
    y = peak + background + np.random.default_rng(6).normal(0, 1.0, x.size)
    # a method outside the old six, set only through params (a morphological one): it removes the background
    ball = PreprocessConfig(baseline=BaselineConfig(method="rolling_ball", params={"half_window": 60}),
                            normalise="none")
    out = Preprocessor(ball).transform(y, x)
    away = np.abs(x - 1100) > 100
    assert np.abs(out[away]).mean() < 0.05 * background.mean() and out[np.argmin(np.abs(x - 1100))] > 60
    cfg = BaselineConfig(method="iasls", lam=1e6, params={"lam_1": 1e-3, "max_iter": 80})
    assert cfg.kwargs() == {"lam": 1e6, "p": 0.01, "lam_1": 1e-3, "max_iter": 80}
    full = PreprocessConfig(baseline=cfg, normalise="none")
    out = Preprocessor(full).transform(y, x)
    # the params reach the method: another lam_1 gives another result
    other = full.model_copy(update={"baseline": cfg.model_copy(update={"params": {"lam_1": 1.0, "max_iter": 80}})})
    assert np.abs(Preprocessor(other).transform(y, x) - out).max() > 1.0
    # It travels: the params are in the JSON, survive the round trip, and change the hash.
    assert '"params":{"lam_1":0.001,"max_iter":80}' in full.to_json()
    back = PreprocessConfig.from_json(full.to_json())
    assert back == full and back.hash() == full.hash()
    assert full.hash() != PreprocessConfig(baseline=BaselineConfig(method="iasls", lam=1e6), normalise="none").hash()
    np.testing.assert_array_equal(Preprocessor(back).transform(y, x), out)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "wavelet"}, "unknown baseline method 'wavelet'; pybaselines has .*arpls"),
    ({"method": "arpls", "params": {"bogus": 1}}, "takes no argument 'bogus'; it accepts lam, diff_order, max_iter"),
    ({"method": "arpls", "params": {"max_iter": "many"}}, "max_iter='many': expected a value like its default 50"),
    ({"method": "arpls", "params": {"weights": 1.0}}, "takes no argument 'weights'"),
    ({"method": "asls", "params": {"lam": 1.0}}, "lam is a field of its own"),
])
def test_bad_baseline_settings_are_refused_naming_what_is_accepted(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BaselineConfig(**kwargs)  # type: ignore[arg-type]


def test_a_row_the_baseline_fails_on_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from pybaselines import Baseline

    real = Baseline.arpls

    def flaky(self: Baseline, data: np.ndarray, **kw: object) -> tuple[np.ndarray, dict[str, object]]:
        if data[0] > 1000:
            raise ValueError("did not converge")
        return real(self, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Baseline, "arpls", flaky)
    x = np.linspace(400, 1800, 200)
    X = np.vstack([np.sin(x / 50) + 10, np.sin(x / 50) + 2000, np.cos(x / 40) + 10])
    out, bad = pre(baseline=BaselineConfig()).transform_rows(X, x)
    assert list(bad) == [1] and "baseline arpls failed: did not converge" in bad[1]
    assert np.isfinite(out).all() and np.abs(out[0]).max() > 0
