"""The drift model: PCA of preprocessed training spectra, Hotelling T^2 and Q, limits from held-out spectra.

Synthetic spectra (spectral_core.synth) carry per-spectrum axis jitter (1.2 cm^-1), band shifts (2.5 cm^-1) and a
fluorescence background up to 2.5x the Raman peak: a drift model must not flag that natural variation, and must
flag what the training set never showed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from spectral_core.contract import ModelContract
from spectral_core.drift import DriftModel, drift_scores, fit_drift, window_alarm
from spectral_core.errors import ContractError, DataError
from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.synth import synth_dataset

PRE = Preprocessor(PreprocessConfig())  # minmax, no baseline correction: a baseline change reaches the model


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # OpenBLAS's default thread pool spins on a busy 2-core CI machine (15 s for a 0.1 s SVD)
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def train_z() -> np.ndarray:
    train = synth_dataset(classes=4, per_class=60, points=400, seed=0)
    return PRE.transform(train.X, train.axis)


@pytest.fixture(scope="module")
def model(train_z) -> DriftModel:
    return fit_drift(train_z)


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """100 new spectra of the training distribution (another noise seed, same classes)."""
    ds = synth_dataset(classes=4, per_class=25, points=400, seed=1)
    return ds.axis, ds.X.astype(np.float64)


def _flags(X: np.ndarray, axis: np.ndarray, model: DriftModel) -> np.ndarray:
    return drift_scores(PRE.transform(X.astype(np.float32), axis), model).flag


def _shifted(axis: np.ndarray, X: np.ndarray, shift_cm1: float) -> np.ndarray:
    """Spectra measured with an axis calibration off by ``shift_cm1`` (bands appear shifted), uncorrected."""
    return np.stack([np.interp(axis, axis + shift_cm1, row) for row in X])


def test_held_out_training_distribution_is_rarely_flagged(model, held_out):
    axis, X = held_out
    flags = _flags(X, axis, model)
    assert flags.mean() <= 0.05
    assert not window_alarm(int(flags.sum()), flags.size, model.expected_flag_rate)
    assert 0 < model.expected_flag_rate <= 0.05  # the limits are 0.99 quantiles of out-of-fold T^2 and Q


def test_uncorrected_axis_shift_is_flagged(model, held_out):
    axis, X = held_out
    ten = _flags(_shifted(axis, X, 10.0), axis, model)
    assert ten.mean() >= 0.4  # one by one, about half of the spectra
    for shift in (5.0, 10.0):  # and a run of them is beyond chance: the window alarm
        flags = _flags(_shifted(axis, X, shift), axis, model)
        assert window_alarm(int(flags.sum()), flags.size, model.expected_flag_rate), shift


def test_baseline_drift_is_flagged(model, held_out):
    axis, X = held_out
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    peak = X.max(axis=1, keepdims=True)
    ripple = np.sin(2 * np.pi * 4 * t)  # an oscillating baseline (etaloning), 10% of the peak
    assert _flags(X + 0.1 * peak * ripple, axis, model).mean() >= 0.6
    step = np.tanh((t - 0.5) * 20)  # a baseline jump across the detector, 30% of the peak
    assert _flags(X + 0.3 * peak * step, axis, model).mean() >= 0.8


def test_t2_catches_a_spectrum_far_inside_the_model_plane(model):
    mean, P, ev = model.arrays()
    far = mean + 10 * np.sqrt(ev[0]) * P[0]  # ten standard deviations along the first component
    s = drift_scores(far[None, :], model)
    assert s.t2[0] > model.t2_limit and s.q[0] < model.q_limit and s.flag[0]


def test_limits_come_from_held_out_spectra_and_the_textbook_limits_are_recorded(model, train_z):
    assert model.limit_method == "cv-quantile" and model.folds == 5 and not model.grouped
    # a PCA describes its own spectra better than new ones: the limits sit above the fitted spectra's quantile
    fitted = drift_scores(train_z, model)
    assert model.q_limit > 1.1 * np.quantile(fitted.q, 0.99)
    assert 1 <= model.n_components <= 16 and model.explained_variance > 0.9
    # the Box chi-square limit assumes the fitted spectra are the monitored ones: far below held-out Q
    assert model.q_limit_box is not None and model.q_limit_box < model.q_limit
    assert model.t2_limit_f is not None and model.t2_limit_f > 0


def test_groups_keep_folds_whole():
    ds = synth_dataset(classes=2, per_class=30, points=120, seed=3)
    groups = np.repeat([f"s{i}" for i in range(12)], 5)
    m = fit_drift(PRE.transform(ds.X, ds.axis), groups=groups)
    assert m.grouped
    m2 = fit_drift(PRE.transform(ds.X, ds.axis), groups=np.arange(60).astype(str))  # one spectrum a group
    assert not m2.grouped


def test_window_alarm_is_a_binomial_test():
    assert not window_alarm(0, 100, 0.02)
    assert not window_alarm(4, 100, 0.02)  # p = 0.05: chance
    assert window_alarm(10, 100, 0.02)  # p ~ 3e-5
    assert not window_alarm(1, 1, 0.02)  # one spectrum alone is no alarm at p < 0.001


def test_bad_input_is_refused(model):
    with pytest.raises(DataError, match="at least 20 spectra"):
        fit_drift(np.random.default_rng(0).random((10, 50)))
    X = np.random.default_rng(0).random((30, 50))
    X[3, 7] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit_drift(X)
    with pytest.raises(DataError, match="do not match"):
        drift_scores(np.zeros((2, 7)), model)


def _contract(drift: DriftModel | None, n: int) -> ModelContract:
    cfg = PreprocessConfig()
    return ModelContract(classes=["a", "b"], axis=list(np.linspace(400.0, 1800.0, n)), preprocess=cfg,
                         preprocess_hash=cfg.hash(), drift=drift)


def test_contract_round_trip_and_old_contracts(model):
    c = _contract(model, 400)
    back = ModelContract.from_metadata(c.to_metadata())
    assert back.drift == model
    X = np.random.default_rng(0).random((3, 400))
    np.testing.assert_array_equal(drift_scores(X, back.drift).q, drift_scores(X, model).q)
    # a contract written before drift models (no "drift" key) still loads, without one
    doc = json.loads(c.to_metadata()["ramanedge.contract"])
    del doc["drift"]
    old = ModelContract.from_metadata({"ramanedge.contract": json.dumps(doc)})
    assert old.drift is None and old.classes == ["a", "b"]


def test_contract_refuses_a_drift_model_of_another_axis(model):
    with pytest.raises(ContractError, match="drift model has 400 points"):
        ModelContract.from_metadata(_contract(None, 300).model_copy(update={"drift": model}).to_metadata())
    bad = json.loads(model.model_dump_json())
    bad["eigenvalues"] = bad["eigenvalues"][:-1]
    with pytest.raises(ValueError, match="k eigenvalues"):
        DriftModel.model_validate(bad)


def test_metadata_size_is_k_by_points(model):
    size = len(model.model_dump_json())
    n_floats = model.n_components * len(model.mean)
    assert size < 20 * (n_floats + 2 * len(model.mean))  # about 14 characters a number, 7 significant digits


@pytest.mark.data
def test_melanoma_held_out_spectra_pass_and_drifted_ones_are_flagged(data_dir):
    """Real SERS spectra (melanoma NH2, 632 spectra x 2,090 points): 70% fit, 30% held out."""
    d = np.load(data_dir / "melanoma-sers-erzina" / "dataset_nh2.npz", allow_pickle=False)
    axis, X = d["axis"], d["X"].astype(np.float64)
    rng = np.random.default_rng(1)
    test = np.zeros(X.shape[0], dtype=bool)
    test[rng.permutation(X.shape[0])[: int(0.3 * X.shape[0])]] = True
    model = fit_drift(PRE.transform(X[~test].astype(np.float32), axis))
    held = X[test]
    flags = _flags(held, axis, model)
    assert flags.mean() <= 0.05
    assert not window_alarm(int(flags.sum()), flags.size, model.expected_flag_rate)
    t = (axis - axis[0]) / (axis[-1] - axis[0])
    assert _flags(held + 0.3 * held.max(axis=1, keepdims=True) * t**2, axis, model).mean() >= 0.9
    shifted = _flags(_shifted(axis, held, 10.0), axis, model)
    assert shifted.mean() >= 0.3
    assert window_alarm(int(shifted.sum()), shifted.size, model.expected_flag_rate)
