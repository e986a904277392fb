"""Groups everywhere, honestly reported: repeat acquisitions of one sample never sit on both sides of a split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ramanedge.cli import main
from spectral_core.errors import ReaderError
from spectral_core.io import read_dataset, read_datasets
from trainer.metrics import group_accuracy

AXIS = np.linspace(400.0, 1800.0, 200)


def _sample_folders(root: Path, *, samples: int = 18, repeats: int = 5, seed: int = 0) -> None:
    """Class folders of files, one file per sample holding ``repeats`` near-identical acquisitions (a table, one
    spectrum per column). Each sample's class is drawn at random: the spectra say nothing about the class, so an
    honest evaluation is at chance, and one that splits a sample's repeats is far above it."""
    rng = np.random.default_rng(seed)
    for s in range(samples):
        cls = ["A", "B", "C"][int(rng.integers(3))] if s >= 3 else ["A", "B", "C"][s]
        base = 100 + 50 * np.sin(AXIS / rng.uniform(20, 80) + rng.uniform(0, 6)) + rng.normal(0, 5, AXIS.size)
        cols = [base + rng.normal(0, 0.2, AXIS.size) for _ in range(repeats)]
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["shift," + ",".join(f"r{k}" for k in range(repeats))]
        lines += [f"{a:.3f}," + ",".join(f"{c[i]:.4f}" for c in cols) for i, a in enumerate(AXIS)]
        (folder / f"sample{s:02d}.csv").write_text("\n".join(lines) + "\n")


def test_default_groups_by_file_keep_evaluation_at_chance_and_none_shows_the_leak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    data = tmp_path / "data"
    _sample_folders(data)
    ds = read_dataset(data)
    assert ds.groups is not None and np.unique(ds.groups).size == 18
    rc = main(["evaluate", "--data", str(data), "--out", str(tmp_path / "honest"), "--model", "knn", "--folds", "3"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "split by group: 18 groups" in err
    honest = json.loads((tmp_path / "honest" / "results.json").read_text())
    assert honest["grouping"]["grouped"] and honest["grouping"]["groups"] == 18
    acc = honest["models"]["knn"]["summary"]["accuracy"]["mean"]
    assert "group_accuracy" in honest["models"]["knn"]["summary"]
    assert "split by group" in (tmp_path / "honest" / "results.md").read_text()
    rc = main(["evaluate", "--data", str(data), "--out", str(tmp_path / "leaky"), "--model", "knn", "--folds", "3",
               "--groups", "none"])
    assert rc == 0
    leaky = json.loads((tmp_path / "leaky" / "results.json").read_text())
    assert "spectrum by spectrum" in (tmp_path / "leaky" / "results.md").read_text()
    assert not leaky["grouping"]["grouped"]
    assert leaky["models"]["knn"]["summary"]["accuracy"]["mean"] > 0.95  # the repeats give the answer away
    assert acc < 0.75  # three random classes: chance is about a third


def _one_per_file(root: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in ("A", "B"):
        for patient in ("p1", "p2"):
            for k in range(2):
                f = root / cls / f"{cls}{patient}" / f"scan{k}.csv"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("".join(f"{a:.2f},{v:.3f}\n" for a, v in zip(AXIS, rng.random(AXIS.size), strict=True)))


@pytest.mark.parametrize(("groups", "want"), [
    ("file", ["A/Ap1/scan0.csv", "A/Ap1/scan1.csv"]),
    ("folder", ["A/Ap1", "A/Ap1"]),
    ("regex:(p\\d)", ["p1", "p1"]),
])
def test_group_forms_on_nested_class_folders(tmp_path: Path, groups: str, want: list[str]) -> None:
    _one_per_file(tmp_path)
    ds = read_dataset(tmp_path, pattern="*/*.csv", groups=groups)
    assert ds.groups is not None and ds.groups[:2].tolist() == want
    assert ds.provenance["groups_from"].startswith(groups.split(":", maxsplit=1)[0])


def test_group_column_and_several_files(tmp_path: Path) -> None:
    t = tmp_path / "t.csv"
    t.write_text("label,patient," + ",".join(f"{a:.1f}" for a in AXIS[:5]) + "\n"
                 + "a,p1,1,2,3,4,5\nb,p2,2,3,4,5,6\na,p1,1,2,3,4,6\n")
    ds = read_dataset(t, label_column="label", groups="column:patient")
    assert ds.groups is not None and ds.groups.tolist() == ["p1", "p2", "p1"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for f in (a, b):
        f.write_text("".join(f"{x:.2f},{x % 7:.3f}\n" for x in AXIS))
    both = read_datasets([a, b], groups="file")
    assert both.groups is not None and both.groups.tolist() == [str(a), str(b)]


@pytest.mark.parametrize(("groups", "match"), [("file", "which file"), ("bogus", "choose one of"),
                                               ("regex:(", "not a regular expression")])
def test_a_grouping_that_cannot_apply_is_refused(tmp_path: Path, groups: str, match: str) -> None:
    f = tmp_path / "one.csv"
    f.write_text("".join(f"{x:.2f},{x % 7:.3f}\n" for x in AXIS))
    with pytest.raises(ReaderError, match=match):
        read_dataset(f, groups=groups)


def test_group_accuracy_takes_the_mean_probability_of_each_group() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.5], [0.0, 3.0], [1.0, 0.0]])
    acc, n = group_accuracy(y, scores, np.array(["g1", "g1", "g1", "g2", "g2"]))
    assert n == 2 and acc == 1.0  # g1: mean p favours class 0 though 2 of its 3 spectra say 1
