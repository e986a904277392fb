"""How good is the RamanNet embedding? The paper's claim (it separates classes better than PCA) as a measurement.

``ramanedge embed RUN --data HELDOUT --out DIR [--reference TRAIN]`` compares, on held-out spectra:

- ``embedding``: the run's L2-normalised embedding (``embedding_dim`` values a spectrum);
- ``pca``: PCA of the same preprocessed spectra with as many components as the embedding has (same budget);
- ``spectra``: the preprocessed spectra themselves (all points), the no-learning reference;
- ``embedding_2d`` / ``pca_2d``: the 2-D PCA projections drawn in ``embedding.png``.

In each space: k-NN accuracy (Euclidean; on unit vectors that orders neighbours as cosine does) and the
silhouette score of the true classes. With ``--reference`` (the training data) the PCA and the k-NN are fitted
on the reference and scored on ``--data``; without it, k-NN accuracy is a stratified 5-fold cross-validation
within ``--data`` (PCA, unsupervised, fitted on ``--data`` itself). Either way ``--data`` should be spectra the run was not
trained on: when its fingerprint equals the run's training data, the numbers are reported but flagged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError
from trainer.rundata import load_for_run, require_train_extra

if TYPE_CHECKING:
    from trainer.model import RamanNet

__all__ = ["configure_embed", "embed_spectra", "embedding_quality", "run_embed"]

logger = logging.getLogger(__name__)

Int = NDArray[np.int64]


def embed_spectra(model: RamanNet, X: NDArray[np.float32], batch: int = 512) -> NDArray[np.float32]:
    """The run's embedding (n, embedding_dim), unit L2 norm, of preprocessed spectra ``X`` (n, L)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, X.shape[0], batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(X[i : i + batch])))[1].numpy())
    return np.concatenate(out).astype(np.float32)


def _silhouette(Z: NDArray[Any], y: Int) -> float | None:
    from sklearn.metrics import silhouette_score

    if np.unique(y).size < 2 or np.unique(y).size >= y.size:
        return None
    return float(silhouette_score(Z, y, metric="euclidean"))


def embedding_quality(
    spaces_fit: dict[str, Any] | None,
    spaces_test: dict[str, NDArray[Any]],
    y_test: Int,
    *,
    y_fit: Int | None = None,
    k: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """k-NN accuracy and silhouette of each space.

    Args:
        spaces_fit: space name -> reference rows (k-NN is fitted there, scored on ``spaces_test``); None for
            a stratified 5-fold cross-validation within ``spaces_test``.
        spaces_test: space name -> held-out rows (n, d).
        y_test, y_fit: labels.
        k: neighbours.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    out: dict[str, dict[str, float | None]] = {}
    for name, Zt in spaces_test.items():
        if spaces_fit is not None:
            if y_fit is None:
                raise DataError("reference labels are needed with a reference set")
            knn = KNeighborsClassifier(n_neighbors=k).fit(spaces_fit[name], y_fit)
            pred = knn.predict(Zt)
        else:
            folds = min(5, int(np.bincount(y_test)[np.bincount(y_test) > 0].min()))
            if folds < 2:
                raise DataError("every class needs at least 2 held-out spectra for a cross-validated k-NN")
            est = KNeighborsClassifier(n_neighbors=k)
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            pred = cross_val_predict(est, Zt, y_test, cv=cv)
        out[name] = {"knn_accuracy": float(np.mean(pred == y_test)), "silhouette": _silhouette(Zt, y_test)}
    return out


def configure_embed(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ramanedge embed``."""
    parser.add_argument("run", metavar="RUN", help="run directory written by `ramanedge train`")
    from spectral_core.cli import add_data_option

    add_data_option(parser, help="held-out labelled spectra (not used to train the run)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument(
        "--reference", metavar="FILE",
        help="training spectra: fit PCA and k-NN there and score --data (default: 5-fold CV within --data)",
    )
    parser.add_argument("--k", type=int, default=5, help="neighbours of the k-NN (default 5)")
    parser.add_argument("--projection", choices=("pca", "tsne"), default="pca", help="2-D projection in the plot")
    parser.add_argument("--seed", type=int, default=0)


def run_embed(args: argparse.Namespace) -> int:
    """``ramanedge embed``: write ``embedding.json`` and ``embedding.png`` into ``--out``."""
    require_train_extra("ramanedge embed", ("torch", "sklearn", "matplotlib"))
    from sklearn.decomposition import PCA

    from trainer.checkpoint import load_run

    if args.k < 1:
        raise DataError(f"--k must be at least 1, got {args.k}")
    model, info = load_run(args.run)
    from spectral_core.cli import read_data

    test = load_for_run(read_data(args), info)
    ref = load_for_run(read_data(args, "reference"), info) if args.reference else None
    if test.y is None or (ref is not None and ref.y is None):  # load_for_run refused these already
        raise DataError("embed needs labelled spectra")
    seen = test.fingerprint == info.data_sha256
    if seen:
        logger.warning("%s is the run's training data: its numbers are optimistic, pass held-out spectra", test.source)
    fit_X = ref.X if ref is not None else test.X
    n_fit = fit_X.shape[0]
    if args.k >= n_fit:
        raise DataError(f"--k {args.k} needs more than {n_fit} reference spectra")
    n_comp = min(info.model.embedding_dim, n_fit - 1, fit_X.shape[1])

    E_test = embed_spectra(model, test.X)
    pca = PCA(n_components=n_comp, random_state=args.seed).fit(fit_X)
    spaces_test = {"embedding": E_test, "pca": pca.transform(test.X), "spectra": test.X}
    spaces_fit: dict[str, Any] | None = None
    E_fit = E_test
    if ref is not None:
        E_fit = embed_spectra(model, ref.X)
        spaces_fit = {"embedding": E_fit, "pca": pca.transform(ref.X), "spectra": ref.X}
    p_emb = PCA(n_components=2, random_state=args.seed).fit(E_fit)
    spaces_test["embedding_2d"] = p_emb.transform(E_test)
    spaces_test["pca_2d"] = spaces_test["pca"][:, :2]
    if spaces_fit is not None:
        spaces_fit["embedding_2d"] = p_emb.transform(E_fit)
        spaces_fit["pca_2d"] = spaces_fit["pca"][:, :2]
    metrics = embedding_quality(
        spaces_fit, spaces_test, test.y, y_fit=None if ref is None else ref.y, k=args.k, seed=args.seed
    )

    if args.projection == "tsne":
        from sklearn.manifold import TSNE

        perp = float(min(30.0, max(2.0, (test.X.shape[0] - 1) / 3)))
        P_emb = TSNE(2, perplexity=perp, random_state=args.seed, init="pca").fit_transform(E_test)
        P_pca = TSNE(2, perplexity=perp, random_state=args.seed, init="pca").fit_transform(
            spaces_test["pca"][:, : min(50, n_comp)]
        )
        labels: list[tuple[str, str]] = [("t-SNE 1", "t-SNE 2")] * 2
    else:
        P_emb, P_pca = spaces_test["embedding_2d"], spaces_test["pca_2d"]
        labels = [
            (f"PC 1 ({100 * ratios[0]:.0f}% of the {what} variance)",
             f"PC 2 ({100 * ratios[1]:.0f}% of the {what} variance)")
            for what, ratios in (("embedding", p_emb.explained_variance_ratio_),
                                 ("spectra", pca.explained_variance_ratio_))
        ]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = []
    for key, title in (("embedding", "RamanNet embedding"), ("pca", "PCA of the preprocessed spectra")):
        sil = metrics[key]["silhouette"]
        titles.append(f"{title} ({args.projection} 2-D)\n{key}: k-NN acc {metrics[key]['knn_accuracy']:.3f}, "
                      f"silhouette " + (f"{sil:.3f}" if sil is not None else "n/a"))
    from trainer.plots import plot_embedding

    plot_embedding(out / "embedding.png", list(zip((P_emb, P_pca), titles, labels, strict=True)),
                   y=test.y, classes=info.classes)
    report = {
        "run": str(args.run),
        "data": test.source,
        "reference": None if ref is None else ref.source,
        "protocol": "fit on reference, score on data" if ref is not None else "stratified 5-fold CV within data",
        "seen_in_training": seen,
        "n_test": int(test.X.shape[0]),
        "n_reference": None if ref is None else int(ref.X.shape[0]),
        "k": args.k,
        "embedding_dim": info.model.embedding_dim,
        "pca_components": n_comp,
        "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
        "metrics": metrics,
    }
    (out / "embedding.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"{'space':<14}{'k-NN acc':>10}{'silhouette':>12}"]
    for name, m in metrics.items():
        sil = m["silhouette"]
        lines.append(f"{name:<14}{m['knn_accuracy']:>10.3f}{(f'{sil:.3f}' if sil is not None else 'n/a'):>12}")
    sys.stdout.write(f"wrote {out}/embedding.json and embedding.png\n" + "\n".join(lines) + "\n")
    return 0
