"""Near-identical spectra on both sides of a split: a cheap check that a split does not leak.

Repeat acquisitions of one sample, or a spectrum stored twice, are near copies of each other. When one sits in
the test part of a split and the other in its training part, the test measures recall, not generalisation,
and accuracy is optimistic however the split was stratified or grouped (e.g. a group id that does not follow
the sample). Two preprocessed spectra are near-identical when their Pearson correlation exceeds
:data:`NEAR_IDENTICAL_R` (0.9999: identical up to float rounding, an offset or a scale; independent acquisitions
of one sample, with their shot noise, stay well below it).

Finding the pairs exactly would cost (spectra^2 x points). Instead every spectrum is centred, scaled to unit
length and projected onto :data:`PROJECTION_DIM` random directions (Johnson-Lindenstrauss: distances kept to
~±20%); the nearest neighbours in that small space are the only candidates, and each candidate's correlation
is then computed exactly on the full spectra, so no pair is reported that does not pass the threshold.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["NEAR_IDENTICAL_R", "near_identical_pairs", "split_leakage"]

logger = logging.getLogger(__name__)

#: Pearson correlation above which two preprocessed spectra count as near-identical.
NEAR_IDENTICAL_R = 0.9999
#: Random directions of the projection that picks candidate pairs.
PROJECTION_DIM = 64
#: Candidates checked exactly per spectrum (its nearest neighbours in the projection).
CANDIDATES = 8
#: At most this many spectra are searched (a random subset beyond): the work is O(n^2 x PROJECTION_DIM).
MAX_SPECTRA = 40_000
_CHUNK = 1024


def near_identical_pairs(
    X: NDArray[np.float32], *, r: float = NEAR_IDENTICAL_R, seed: int = 0
) -> NDArray[np.int64]:
    """Pairs ``(i, j)``, ``i < j``, of rows of ``X`` whose Pearson correlation exceeds ``r``.

    A row with more than :data:`CANDIDATES` near copies may not have all its pairs listed (each is found from
    both ends, so most are); every pair listed passes the threshold exactly. Constant rows are never paired.
    Only the first :data:`MAX_SPECTRA` rows of a random order are searched when ``X`` has more.

    Returns:
        int64 array of shape (pairs, 2), sorted.
    """
    x = np.asarray(X, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        return np.zeros((0, 2), np.int64)
    rows = np.arange(n)
    if n > MAX_SPECTRA:
        rows = np.sort(np.random.default_rng(seed).choice(n, MAX_SPECTRA, replace=False))
        logger.info("leak check on %d of %d spectra (a random subset)", MAX_SPECTRA, n)
    z = x[rows].astype(np.float64)
    z -= z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1)
    live = norm > 0
    z[live] /= norm[live, None]
    z = z.astype(np.float32)
    g = np.random.default_rng(seed).standard_normal((z.shape[1], PROJECTION_DIM)).astype(np.float32)
    proj = z @ g
    pn = np.linalg.norm(proj, axis=1)
    proj[pn > 0] /= pn[pn > 0, None]
    proj[~live] = 0.0
    k = min(CANDIDATES, rows.size - 1)
    found: set[tuple[int, int]] = set()
    for c0 in range(0, rows.size, _CHUNK):
        c1 = min(rows.size, c0 + _CHUNK)
        sim = proj[c0:c1] @ proj.T
        sim[np.arange(c1 - c0), np.arange(c0, c1)] = -np.inf  # not its own neighbour
        cand = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        a = np.repeat(np.arange(c0, c1), k)
        b = cand.ravel()
        exact = np.einsum("ij,ij->i", z[a], z[b])
        hit = (exact > r) & live[a] & live[b]
        for i, j in zip(a[hit].tolist(), b[hit].tolist(), strict=True):
            found.add((min(i, j), max(i, j)))
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.asarray(sorted(found), dtype=np.int64)
    return np.asarray(rows[pairs], dtype=np.int64)


def split_leakage(
    pairs: NDArray[np.int64], splits: list[dict[str, Any]], groups: NDArray[np.str_] | None
) -> dict[str, Any]:
    """Which near-identical ``pairs`` (row indices of the evaluated data) straddle a split: one spectrum in its
    test part, the other in its training or validation part.

    Returns:
        ``{"threshold_r", "near_identical_pairs", "splits", "splits_affected", "pairs_across",
        "distinct_pairs_across", "example"}``: pairs across summed over the splits, distinct pairs across in
        any split, and one example (split, both spectra's indices and groups), or None.
    """
    doc: dict[str, Any] = {"threshold_r": NEAR_IDENTICAL_R, "near_identical_pairs": int(pairs.shape[0]),
                           "splits": len(splits), "splits_affected": 0, "pairs_across": 0,
                           "distinct_pairs_across": 0, "example": None}
    if pairs.size == 0:
        return doc
    ever = np.zeros(pairs.shape[0], dtype=bool)
    for s in splits:
        if "test" not in s or "train" not in s:
            continue
        test = np.zeros(int(pairs.max()) + 1, dtype=bool)
        fit = np.zeros_like(test)
        t = np.asarray(s["test"], dtype=np.int64)
        f = np.concatenate([np.asarray(s.get("train", []), np.int64), np.asarray(s.get("val", []), np.int64)])
        test[t[t < test.size]] = True
        fit[f[f < fit.size]] = True
        a, b = pairs[:, 0], pairs[:, 1]
        across = (test[a] & fit[b]) | (fit[a] & test[b])
        n = int(across.sum())
        if not n:
            continue
        doc["splits_affected"] += 1
        doc["pairs_across"] += n
        ever |= across
        if doc["example"] is None:
            i, j = (int(v) for v in pairs[np.flatnonzero(across)[0]])
            ti, fj = (i, j) if test[i] else (j, i)
            doc["example"] = {
                "split": s.get("name"), "test_index": ti, "train_index": fj,
                "test_group": None if groups is None else str(groups[ti]),
                "train_group": None if groups is None else str(groups[fj]),
            }
    doc["distinct_pairs_across"] = int(ever.sum())
    return doc


def leakage_text(doc: dict[str, Any] | None) -> str | None:
    """One warning sentence for a :func:`split_leakage` document, None when nothing straddles a split."""
    if not doc or not doc.get("pairs_across"):
        return None
    ex = doc["example"]

    def who(i: int, g: str | None) -> str:
        return f"spectrum {i}" + (f" (group {g!r})" if g is not None else "")

    return (
        f"possible leak: {doc['distinct_pairs_across']} pair(s) of near-identical spectra (correlation > "
        f"{doc['threshold_r']} after preprocessing) lie on both sides of a split ({doc['pairs_across']} times in "
        f"{doc['splits_affected']} of {doc['splits']} splits); e.g. in {ex['split']}, test "
        f"{who(ex['test_index'], ex['test_group'])} and training "
        f"{who(ex['train_index'], ex['train_group'])}. Test accuracy may be optimistic: check that repeat "
        "acquisitions share a group (--groups)"
    )
