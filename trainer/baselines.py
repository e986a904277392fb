"""Classical baselines (scikit-learn) evaluated under the very same splits and preprocessing as RamanNet.

Each baseline has a small hyper-parameter grid; the value is chosen on the split's validation part (the same
spectra RamanNet uses to choose its checkpoint), then the model is fitted on the training part. Inputs are the
preprocessed spectra (THE preprocessing); the pipelines add their own standardisation where the method needs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BASELINES", "baseline_split", "fit_predict_baseline"]

logger = logging.getLogger(__name__)

Float = NDArray[np.float32]


def _svm(c: float) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale"))


def _logreg(c: float) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Fitted on the coordinates of the standardised spectra in their own row space (PCA keeping EVERY
    # component, no whitening: a rotation, not a reduction). The L2 penalty is rotation invariant and the
    # optimal weights lie in the span of the training spectra, so the optimum and every score are those of the
    # fit on all points, while with far fewer spectra than points (n << d) each lbfgs step costs n instead of
    # d per spectrum: 480 x 2,090 spectra went from 80-142 s to about 1 s per C (docs/benchmarks.md).
    return make_pipeline(StandardScaler(), PCA(svd_solver="full"), LogisticRegression(C=c, max_iter=3000))


def _pca_svm(c: float) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # 0.99 of the variance: the number of components adapts to the data set.
    return make_pipeline(StandardScaler(), PCA(n_components=0.99, svd_solver="full", random_state=0),
                         SVC(C=c, kernel="rbf", gamma="scale"))


def _knn(k: float) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=int(k))


def _anova_svm(k: float) -> Any:
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # Yin et al. (2021), the COVID-19 serum study: an SVM on the wavenumbers an ANOVA F-test ranks highest.
    # Inside the pipeline the F-test sees the training part only (selection on all spectra would leak the
    # test labels). The grid is the number of wavenumbers kept; C and gamma are SVC's defaults.
    return make_pipeline(SelectKBest(f_classif, k=int(k)), StandardScaler(), SVC(C=1.0, kernel="rbf", gamma="scale"))


def _centre_rows(X: Float) -> Float:
    return X - X.mean(axis=1, keepdims=True)


def _library(k: float) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # Spectral library search as vendors' software does it: the training spectra are the library, a query
    # takes the class of its best match by Pearson correlation (= cosine similarity of mean-centred spectra).
    return make_pipeline(FunctionTransformer(_centre_rows),
                         KNeighborsClassifier(n_neighbors=int(k), metric="cosine", algorithm="brute"))


# name -> (factory of one hyper-parameter, the grid, the parameter's name)
BASELINES: dict[str, tuple[Callable[[float], Any], tuple[float, ...], str]] = {
    "svm": (_svm, (1.0, 10.0, 100.0), "C"),
    "logreg": (_logreg, (0.1, 1.0, 10.0), "C"),
    "pca-svm": (_pca_svm, (1.0, 10.0, 100.0), "C"),
    "knn": (_knn, (1.0, 3.0, 5.0), "n_neighbors"),
    "anova-svm": (_anova_svm, (25.0, 50.0, 100.0, 200.0), "k_wavenumbers"),
    "library": (_library, (1.0,), "n_neighbors"),
}


def _scores(model: Any, X: Float, n_classes: int) -> NDArray[np.float64]:
    """[N, C] class scores over all C classes (columns of classes absent from training stay -inf)."""
    if hasattr(model, "predict_proba") and not hasattr(model, "decision_function"):
        raw = np.asarray(model.predict_proba(X), dtype=np.float64)
    else:
        raw = np.asarray(model.decision_function(X), dtype=np.float64)
    known = np.asarray(model.classes_, dtype=np.int64)
    if raw.ndim == 1:  # binary decision function: positive means classes_[1]
        raw = np.stack([-raw, raw], axis=1)
    out = np.full((X.shape[0], n_classes), -np.inf)
    out[:, known] = raw
    return out


def fit_predict_baseline(
    name: str,
    *,
    X_train: Float,
    y_train: NDArray[np.int64],
    X_val: Float,
    y_val: NDArray[np.int64],
    X_test: Float,
    n_classes: int,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Choose the hyper-parameter on the validation part, fit on the training part, score the test part.

    Returns:
        (scores [N_test, C], info) where info names the chosen parameter and the validation accuracy.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    from threadpoolctl import threadpool_limits

    # One BLAS/OpenMP thread a fit: these matrices are small, so a second thread gains little on a quiet
    # machine and, spinning against another job for a busy core, made a logistic regression 10x slower
    # (docs/benchmarks.md). Parallelism comes from running folds and models side by side (trainer.evaluate).
    with threadpool_limits(limits=1):
        return _fit_predict(name, X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test,
                            n_classes=n_classes)


def _fit_predict(
    name: str,
    *,
    X_train: Float,
    y_train: NDArray[np.int64],
    X_val: Float,
    y_val: NDArray[np.int64],
    X_test: Float,
    n_classes: int,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    make, grid, pname = BASELINES[name]
    if name == "knn":
        smallest = int(np.bincount(y_train).max()) if y_train.size else 1
        grid = tuple(g for g in grid if g <= max(1, min(smallest, y_train.size))) or (1.0,)
    if name == "anova-svm":
        grid = tuple(g for g in grid if g < X_train.shape[1]) or (float(X_train.shape[1]),)
    best_val, best_p, best_model = -1.0, grid[0], None
    if X_val.shape[0] == 0 or len(grid) == 1:
        best_model = make(grid[0]).fit(X_train, y_train)
        best_val = float("nan")
    else:
        for p in grid:
            m = make(p).fit(X_train, y_train)
            acc = float((_scores(m, X_val, n_classes).argmax(1) == y_val).mean())
            if acc > best_val:
                best_val, best_p, best_model = acc, p, m
    logger.debug("%s: %s=%s (validation accuracy %.4f)", name, pname, best_p, best_val)
    return _scores(best_model, X_test, n_classes), {pname: best_p, "val_accuracy": best_val}


def baseline_split(
    name: str, i: int, split: str, *, X_tr: NDArray[np.float32], y_tr: NDArray[np.int64], X_va: NDArray[np.float32],
    y_va: NDArray[np.int64], X_test: NDArray[np.float32], y_test: NDArray[np.int64], classes: list[str],
    groups_test: NDArray[Any] | None = None,
) -> tuple[str, int, dict[str, Any]]:
    """One baseline on one split, scored: (name, i, metrics with ``split`` and ``seconds``; with the test
    spectra's groups, also ``group_accuracy`` and ``test_groups``).

    A joblib task of trainer.evaluate. It lives here, not there, because a worker process imports the module of
    the function it runs, and trainer.evaluate imports torch (seconds per worker); this module does not.
    """
    from trainer.metrics import classification_metrics, group_accuracy

    t0 = time.perf_counter()
    scores, extra = fit_predict_baseline(
        name, X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_test, n_classes=len(classes)
    )
    m = classification_metrics(y_test, scores, classes)
    if groups_test is not None:
        m["group_accuracy"], m["test_groups"] = group_accuracy(y_test, scores, groups_test)
    m.update(split=split, seconds=time.perf_counter() - t0, **extra)
    return name, i, m
