"""Groups derived from the spectra themselves, for files that carry no sample id: ``--groups similar[:R]`` and
``--groups adjacent[:R]`` of ``ramanedge train`` and ``evaluate``.

A split is honest only if repeat acquisitions of one sample never sit on both sides of it. When a file says
which spectra belong together (a file per sample, a column, a path pattern) the reading option ``groups`` uses
that (:mod:`spectral_core.io`). When it does not, two derived groupings are the next best thing:

- ``similar[:R]``: spectra whose Pearson correlation exceeds ``R`` (default :data:`SIMILAR_R`) are linked
  (candidate pairs from :func:`trainer.leakage.near_identical_pairs`: each spectrum's few nearest neighbours
  in a random projection, each confirmed exactly; a spectrum with more near copies than that is still
  joined to the rest through them), and every connected component is one group (single linkage: A~B and B~C put A, B and C together). At the default
  this catches copies of one spectrum (stored twice, or under two names); a lower ``R`` also catches repeat
  acquisitions, but components grow by chaining, so look at the largest group it reports.
- ``adjacent[:R]``: neighbouring rows of the file whose correlation exceeds ``R`` (default :data:`ADJACENT_R`)
  are one group, never across a change of label. This suits files written sample by sample, with the
  repeat acquisitions of one sample in consecutive rows (e.g. the COVID-19 serum file: for 63% of its
  spectra the most similar other spectrum is the row before or after).

Both merge with the groups the data already carry (spectra sharing a group stay together), so a documented
grouping is never undone, only widened. Pearson correlation ignores a spectrum's offset and scale, so the
spectra as read give the same links as after min-max or vector normalisation. The result says what was done
(``provenance["groups_from"]``), which ``evaluate`` writes to ``splits.json`` and ``results.md``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError
from spectral_core.spectrum import SpectralDataset
from trainer.leakage import near_identical_pairs

__all__ = ["ADJACENT_R", "DERIVED_GROUPINGS", "SIMILAR_R", "adjacent_groups", "apply_derived_grouping",
           "merge_links", "parse_derived_grouping", "similar_groups"]

logger = logging.getLogger(__name__)

#: default correlation of ``similar``: the leak check's near-identical threshold (copies, not repeats)
SIMILAR_R = 0.9999
#: default correlation of ``adjacent``: repeat acquisitions of one serum sample are above it (see module doc)
ADJACENT_R = 0.99
#: the derived kinds of the ``--groups`` option, with their argument
DERIVED_GROUPINGS = ("similar[:R]", "adjacent[:R]")


def parse_derived_grouping(value: str | None) -> tuple[str, float] | None:
    """``(kind, R)`` when ``value`` names a derived grouping (``similar``, ``similar:0.999``, ``adjacent``...),
    None for any other ``--groups`` value (left to the reader).

    Raises:
        DataError: a derived kind with a threshold that is not a number in (0, 1).
    """
    if value is None:
        return None
    kind, sep, arg = str(value).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in ("similar", "adjacent"):
        return None
    default = SIMILAR_R if kind == "similar" else ADJACENT_R
    if not sep:
        return kind, default
    try:
        r = float(arg)
    except ValueError:
        raise DataError(f"--groups {kind}:R takes a correlation R in (0, 1), got {arg[:40]!r}") from None
    if not 0.0 < r < 1.0:
        raise DataError(f"--groups {kind}:R takes a correlation R in (0, 1), got {r}")
    return kind, r


def merge_links(
    n: int, links: NDArray[np.int64], existing: NDArray[np.str_] | None = None
) -> NDArray[np.int64]:
    """Connected components of ``n`` items joined by ``links`` (pairs of indices) and by equal ``existing``
    group names; component ids are numbered in order of their first item.

    Returns:
        int64 array of length ``n``.
    """
    parent = np.arange(n, dtype=np.int64)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = int(parent[root])
        while parent[a] != root:  # path compression
            parent[a], a = root, int(parent[a])
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for a, b in np.asarray(links, dtype=np.int64).reshape(-1, 2).tolist():
        union(a, b)
    if existing is not None:
        first: dict[str, int] = {}
        for i, g in enumerate(np.asarray(existing, dtype=str).tolist()):
            union(first.setdefault(g, i), i)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, ids = np.unique(roots, return_inverse=True)
    return ids.astype(np.int64)


def _unit_rows(X: NDArray[np.floating]) -> NDArray[np.float64]:
    z = np.asarray(X, dtype=np.float64)
    z = z - z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1)
    z[norm > 0] /= norm[norm > 0, None]
    return z


def similar_groups(
    X: NDArray[np.floating], r: float = SIMILAR_R, existing: NDArray[np.str_] | None = None, *, seed: int = 0
) -> tuple[NDArray[np.int64], int]:
    """Group ids of the connected components of spectra with Pearson correlation above ``r``, merged with
    ``existing`` groups.

    Returns:
        (group id per spectrum, number of links above ``r`` found).
    """
    pairs = near_identical_pairs(np.asarray(X, dtype=np.float32), r=r, seed=seed)
    return merge_links(np.asarray(X).shape[0], pairs, existing), int(pairs.shape[0])


def adjacent_groups(
    X: NDArray[np.floating], r: float = ADJACENT_R, y: NDArray[np.int64] | None = None,
    existing: NDArray[np.str_] | None = None,
) -> tuple[NDArray[np.int64], int]:
    """Group ids of runs of consecutive rows whose neighbours correlate above ``r`` (a run never crosses a
    change of label ``y``), merged with ``existing`` groups.

    Returns:
        (group id per spectrum, number of neighbour links above ``r``).
    """
    z = _unit_rows(X)
    n = z.shape[0]
    if n < 2:
        return merge_links(n, np.zeros((0, 2), np.int64), existing), 0
    r_next = np.einsum("ij,ij->i", z[:-1], z[1:])
    linked = r_next > r
    if y is not None:
        yy = np.asarray(y)
        linked &= yy[1:] == yy[:-1]
    i = np.flatnonzero(linked).astype(np.int64)
    return merge_links(n, np.stack([i, i + 1], axis=1), existing), int(i.size)


def apply_derived_grouping(ds: SpectralDataset, kind: str, r: float) -> SpectralDataset:
    """``ds`` with the groups of a derived grouping (``similar`` or ``adjacent``, threshold ``r``), merged with
    the groups it carries; ``provenance["groups_from"]`` says how they were made.

    Raises:
        DataError: an unknown kind.
    """
    old = None if ds.groups is None else np.asarray(ds.groups, dtype=str)
    if kind == "similar":
        ids, links = similar_groups(ds.X, r, old)
        how = f"similar: spectra with Pearson r > {r:g} joined (connected components)"
    elif kind == "adjacent":
        ids, links = adjacent_groups(ds.X, r, ds.y, old)
        how = f"adjacent: consecutive rows with Pearson r > {r:g} and the same label joined"
    else:
        raise DataError(f"unknown derived grouping {kind!r}; choose {' or '.join(DERIVED_GROUPINGS)}")
    if old is not None:
        before = re.sub(r"; largest group \d+ spectr(um|a)", "", str(ds.provenance.get("groups_from", "the data groups")))
        how += f", merged with {before}"
    sizes = np.bincount(ids)
    info: dict[str, Any] = {"kind": kind, "r": r, "links": links, "groups": int(sizes.size),
                            "largest": int(sizes.max()) if sizes.size else 0}
    if ds.y is not None:
        mixed = sum(np.unique(ds.y[ids == g]).size > 1 for g in range(sizes.size))
        info["mixed_label_groups"] = int(mixed)
        if mixed:
            how += f"; {mixed} group(s) hold spectra of two or more classes"
    how += f"; largest group {info['largest']} spectr{'um' if info['largest'] == 1 else 'a'}"
    logger.info("%d spectra in %d groups (%s)", ds.n_spectra, info["groups"], how)
    groups = np.asarray([f"g{int(g)}" for g in ids], dtype=str)
    return SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=groups,
                           provenance={**ds.provenance, "groups_from": how, "derived_grouping": info},
                           meta=ds.meta)
