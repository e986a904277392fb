"""Groups derived from the spectra (``--groups similar[:R]`` / ``adjacent[:R]``) for files without sample ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ramanedge.cli import main
from spectral_core.errors import DataError
from spectral_core.io import write_npz
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset
from trainer.grouping import (
    adjacent_groups,
    apply_derived_grouping,
    merge_links,
    parse_derived_grouping,
    similar_groups,
)


def _planted(copies: int = 6, seed: int = 5) -> tuple[SpectralDataset, list[tuple[int, int]]]:
    """60 independent synthetic spectra plus ``copies`` copies (scaled and offset) of some of them, shuffled;
    returns the data and the planted (original, copy) row pairs."""
    ds = synth_dataset(classes=3, per_class=20, points=300, seed=seed)
    X = np.asarray(ds.X, dtype=np.float32)
    y = np.asarray(ds.y)
    rng = np.random.default_rng(seed)
    src = rng.choice(60, copies, replace=False)
    X2 = np.vstack([X, X[src] * 1.3 + 2.0])
    y2 = np.r_[y, y[src]]
    order = rng.permutation(X2.shape[0])
    where = np.argsort(order)  # old row -> new row
    pairs = [(int(where[s]), int(where[60 + k])) for k, s in enumerate(src)]
    return SpectralDataset(X=X2[order], axis=ds.axis, y=y2[order], classes=ds.classes), pairs


def test_similar_puts_each_planted_copy_with_its_original_and_nothing_else() -> None:
    ds, pairs = _planted()
    ids, links = similar_groups(ds.X)
    assert links == len(pairs)
    for a, b in pairs:
        assert ids[a] == ids[b]
    # everything else stays on its own: 66 spectra, 6 pairs joined -> 60 groups of which 6 hold two
    assert np.unique(ids).size == ds.n_spectra - len(pairs)
    assert sorted(np.bincount(ids).tolist()).count(2) == len(pairs)


def test_components_chain_and_merge_with_existing_groups() -> None:
    ids = merge_links(6, np.array([[0, 1], [1, 2]]), np.array(["a", "b", "b", "c", "d", "c"]))
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] == ids[5] and ids[3] != ids[0] and ids[4] not in (ids[0], ids[3])
    assert np.unique(ids).size == 3


def test_adjacent_joins_runs_of_repeats_and_breaks_at_a_new_label() -> None:
    base = synth_dataset(classes=2, per_class=3, points=400, seed=1)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i, repeats in enumerate((3, 2, 1, 3, 2, 1)):  # six samples, repeat acquisitions in consecutive rows
        for _ in range(repeats):
            rows.append(base.X[i] + rng.normal(0, 0.001 * float(np.ptp(base.X[i])), base.X.shape[1]))
            labels.append(int(base.y[i]))
    X = np.asarray(rows, dtype=np.float32)
    y = np.asarray(labels)
    ids, _ = adjacent_groups(X, 0.99, y)
    assert ids.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 5]
    # the same spectrum twice across a change of label stays in two groups
    ids2, links = adjacent_groups(np.vstack([X[:1], X[:1]]), 0.99, np.array([0, 1]))
    assert links == 0 and ids2.tolist() == [0, 1]


def test_parse() -> None:
    assert parse_derived_grouping("similar") == ("similar", 0.9999)
    assert parse_derived_grouping("Similar:0.999") == ("similar", 0.999)
    assert parse_derived_grouping("adjacent") == ("adjacent", 0.99)
    assert parse_derived_grouping("file") is None and parse_derived_grouping("regex:p(\\d+)") is None
    for bad in ("similar:x", "similar:1.5", "adjacent:0"):
        with pytest.raises(DataError, match="correlation R"):
            parse_derived_grouping(bad)


def test_provenance_says_how_groups_were_made() -> None:
    ds, _ = _planted()
    out = apply_derived_grouping(ds, "similar", 0.9999)
    assert out.groups is not None and np.unique(out.groups).size == 60
    assert "Pearson r > 0.9999" in out.provenance["groups_from"]
    assert out.provenance["derived_grouping"]["largest"] == 2


def _evaluate(data: Path, out: Path, *extra: str) -> dict:
    argv = ["evaluate", "--data", str(data), "--out", str(out), "--folds", "3", "--model", "knn", "--jobs", "1",
            "--quiet", *extra]
    assert main(argv) == 0
    return {"splits": json.loads((out / "splits.json").read_text()),
            "results": json.loads((out / "results.json").read_text()),
            "md": (out / "results.md").read_text()}


def test_evaluate_groups_similar_keeps_copies_on_one_side(tmp_path: Path) -> None:
    ds, pairs = _planted(copies=12)
    write_npz(ds, tmp_path / "d.npz")
    plain = _evaluate(tmp_path / "d.npz", tmp_path / "plain")
    # without groups some planted copies straddle a fold: the contrast shows the grouping is what removes it
    assert plain["results"]["leakage"]["distinct_pairs_across"] > 0
    grouped = _evaluate(tmp_path / "d.npz", tmp_path / "grouped", "--groups", "similar")
    g = grouped["splits"]["grouping"]
    assert g["grouped"] and g["groups"] == ds.n_spectra - len(pairs) and "similar" in g["from"]
    assert grouped["results"]["leakage"]["distinct_pairs_across"] == 0
    for s in grouped["splits"]["splits"]:
        test = set(s["test"])
        assert all((a in test) == (b in test) for a, b in pairs)
    assert "split by group" in grouped["md"] and "similar" in grouped["md"]
    assert "group accuracy" in grouped["md"]
