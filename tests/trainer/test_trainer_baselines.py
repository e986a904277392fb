"""The classical baselines of trainer.baselines: the ANOVA-selected SVM (Yin et al.) and library search."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from spectral_core.spectrum import SpectralDataset
from trainer.baselines import BASELINES, fit_predict_baseline
from trainer.evaluate import MODELS, evaluate


def _bands_in_noise(n: int, points: int, informative: list[int], seed: int, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two classes that differ only at ``informative`` points; every other point is pure noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, points)).astype(np.float32)
    X[:, informative] += shift * y[:, None]
    return X, y.astype(np.int64)


def test_anova_svm_selects_the_informative_wavenumbers_on_the_training_part_only() -> None:
    informative = [10, 50, 90, 130, 170]
    X, y = _bands_in_noise(200, 300, informative, seed=0)
    model = BASELINES["anova-svm"][0](25.0).fit(X, y)
    kept = set(np.flatnonzero(model.named_steps["selectkbest"].get_support()).tolist())
    assert set(informative) <= kept and len(kept) == 25
    # The F-test must be fitted on the training part: with training labels shuffled it must not find the bands
    # (it would if it saw the labels of data passed at predict time).
    y_perm = np.random.default_rng(1).permutation(y)
    model_perm = BASELINES["anova-svm"][0](5.0).fit(X, y_perm)
    assert set(np.flatnonzero(model_perm.named_steps["selectkbest"].get_support())) != set(informative)


def test_anova_svm_chooses_k_on_validation_and_scores_the_test_part() -> None:
    X, y = _bands_in_noise(300, 400, [20, 120, 220], seed=2, shift=2.5)
    scores, info = fit_predict_baseline(
        "anova-svm", X_train=X[:180], y_train=y[:180], X_val=X[180:220], y_val=y[180:220], X_test=X[220:], n_classes=2
    )
    assert scores.shape == (80, 2)
    assert info["k_wavenumbers"] in BASELINES["anova-svm"][1]
    assert float((scores.argmax(1) == y[220:]).mean()) > 0.85
    # a plain RBF SVM on all 400 noisy points does worse: the selection is what makes this baseline
    plain, _ = fit_predict_baseline(
        "svm", X_train=X[:180], y_train=y[:180], X_val=X[180:220], y_val=y[180:220], X_test=X[220:], n_classes=2
    )
    assert float((scores.argmax(1) == y[220:]).mean()) >= float((plain.argmax(1) == y[220:]).mean())


def test_anova_svm_with_fewer_points_than_the_grid_keeps_every_point() -> None:
    X, y = _bands_in_noise(60, 20, [3, 7], seed=3)
    _, info = fit_predict_baseline("anova-svm", X_train=X[:40], y_train=y[:40], X_val=X[40:50], y_val=y[40:50],
                                   X_test=X[50:], n_classes=2)
    assert info["k_wavenumbers"] == 20.0


def test_library_search_matches_by_correlation_not_intensity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((3, 100)).astype(np.float32)
    # queries: each reference scaled and offset (a correlation match is blind to both) plus a little noise
    q = (3.0 * ref + 2.0 + 0.01 * rng.normal(size=ref.shape)).astype(np.float32)
    scores, info = fit_predict_baseline("library", X_train=ref, y_train=np.arange(3), X_val=ref[:0],
                                        y_val=np.zeros(0, np.int64), X_test=q, n_classes=3)
    assert scores.argmax(1).tolist() == [0, 1, 2]
    assert info["n_neighbors"] == 1.0


def test_new_baselines_run_under_evaluate(tmp_path: Path) -> None:
    assert "anova-svm" in MODELS and "library" in MODELS
    X, y = _bands_in_noise(60, 200, [30, 100, 160], seed=5, shift=4.0)
    X += 5.0  # positive spectra: min-max normalisation keeps the bands
    ds = SpectralDataset(X=X, axis=np.linspace(400.0, 1800.0, 200), y=y, classes=("a", "b"))
    doc = evaluate(ds, tmp_path / "ev", protocol="kfold", folds=3, models=("anova-svm", "library"))
    for name in ("anova-svm", "library"):
        assert doc["models"][name]["summary"]["accuracy"]["mean"] > 0.6, name


@pytest.mark.parametrize("name", ["anova-svm", "library"])
def test_unknown_baseline_still_refused(name: str) -> None:
    with pytest.raises(ValueError):
        fit_predict_baseline(name + "-x", X_train=np.zeros((2, 2), np.float32), y_train=np.array([0, 1]),
                             X_val=np.zeros((0, 2), np.float32), y_val=np.zeros(0, np.int64),
                             X_test=np.zeros((1, 2), np.float32), n_classes=2)


def test_logreg_on_row_space_coordinates_is_the_logistic_regression_on_all_points() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # n << d, three classes: the rotation into the spectra's row space must not change the L2 optimum
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    X = rng.normal(size=(90, 600)) + 0.4 * rng.normal(size=(3, 600))[y]
    X_test = rng.normal(size=(40, 600)) + 0.4 * rng.normal(size=(3, 600))[np.arange(40) % 3]
    for c in (0.1, 10.0):
        shipped = BASELINES["logreg"][0](c).fit(X, y)
        assert shipped.named_steps["pca"].n_components_ == 90  # every component: a rotation, not a reduction
        plain = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, tol=1e-10)).fit(X, y)
        b = plain.decision_function(X_test)
        assert np.array_equal(shipped.decision_function(X_test).argmax(1), b.argmax(1)), c
        # both converged tightly: the same optimum, score for score
        tight = BASELINES["logreg"][0](c).set_params(logisticregression__tol=1e-10, logisticregression__max_iter=5000)
        a = tight.fit(X, y).decision_function(X_test)
        assert np.abs(a - b).max() < 1e-4 * np.abs(b).max(), c


def test_every_fit_runs_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    threads: list[int] = []

    class Probe:
        classes_ = np.array([0, 1])

        def fit(self, X: np.ndarray, y: np.ndarray) -> Probe:
            threads.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
            return self

        def decision_function(self, X: np.ndarray) -> np.ndarray:
            return np.zeros(X.shape[0])

    monkeypatch.setitem(BASELINES, "probe", (lambda _p: Probe(), (1.0,), "p"))
    X, y = _bands_in_noise(20, 10, [1], seed=0)
    with threadpool_limits(limits=2):  # the caller's setting must not reach the fit, even on a 1-CPU runner
        fit_predict_baseline("probe", X_train=X, y_train=y, X_val=X[:0], y_val=y[:0], X_test=X, n_classes=2)
    assert threads and set(threads) == {1}


def test_free_cores_is_between_one_and_the_cpus() -> None:
    from trainer.evaluate import free_cores

    assert 1 <= free_cores() <= (os.cpu_count() or 1)
