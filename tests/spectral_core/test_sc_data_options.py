"""One set of reading options for every command that reads data; ``--data`` repeatable; ``ramanedge convert``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ramanedge.cli import build_parser, main
from spectral_core.io import read_dataset, write_npz
from spectral_core.synth import synth_dataset

# every command that reads spectra, with the arguments it needs besides its data
READERS = {
    "info": ["{A}", "{B}"],
    "convert": ["{A}", "{B}", "--out", "x.npz"],
    "train": ["--data", "{A}", "--data", "{B}", "--out", "run"],
    "evaluate": ["--data", "{A}", "--data", "{B}", "--out", "ev"],
    "validate": ["m.onnx", "--run", "run", "--data", "{A}", "--data", "{B}"],
    "explain": ["run", "--data", "{A}", "--data", "{B}", "--out", "ex"],
    "embed": ["run", "--data", "{A}", "--data", "{B}", "--out", "em"],
    "calibrate-unknown": ["m.onnx", "--data", "{A}", "--data", "{B}", "--out", "n.onnx"],
}
READ_FLAGS = ["--axis", "400:1800:10", "--delimiter", "tab", "--layout", "rows", "--encoding", "latin-1",
              "--excitation-nm", "785", "--resample", "400:1800:10", "--format", "table", "--label-column", "0"]


@pytest.mark.parametrize("command", sorted(READERS))
def test_every_reading_command_takes_the_same_options_and_several_data_paths(command: str) -> None:
    argv = [command, *(a.format(A="a.csv", B="b.csv") for a in READERS[command]), *READ_FLAGS]
    args = build_parser(only=command).parse_args(argv)
    paths = args.data if hasattr(args, "data") else args.inputs
    assert [str(p) for p in paths] == ["a.csv", "b.csv"]  # both kept, never silently only the last
    assert (args.axis, args.excitation_nm, args.resample, args.format) == ("400:1800:10", 785.0, "400:1800:10",
                                                                            "table")


def _csv(path: Path, axis: np.ndarray, y: np.ndarray) -> Path:
    path.write_text("".join(f"{a:.4f},{v:.6f}\n" for a, v in zip(axis, y, strict=True)))
    return path


def test_convert_stacks_files_on_one_axis_and_refuses_mixed_axes_without_resample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    a = _csv(tmp_path / "a.csv", np.linspace(400, 1800, 700), rng.random(700))
    b = _csv(tmp_path / "b.csv", np.linspace(401, 1799, 650), rng.random(650))
    assert main(["convert", str(a), str(b), "--out", str(tmp_path / "x.npz")]) == 2
    assert "resample" in capsys.readouterr().err
    assert main(["convert", str(a), str(b), "--out", str(tmp_path / "x.npz"), "--resample", "450:1750:300"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ds = read_dataset(tmp_path / "x.npz")
    assert ds.n_spectra == summary["spectra"] == 2 and ds.n_points == 300
    assert ds.axis[0] == 450 and ds.axis[-1] == 1750


def test_convert_keeps_classes_and_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = synth_dataset(classes=3, per_class=4, points=50, seed=0)
    groups = np.repeat(np.arange(6), 2).astype(str)
    ds = type(ds)(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=groups)
    src = write_npz(ds, tmp_path / "in.npz")
    keep = f"{ds.classes[2]},{ds.classes[0]}"
    assert main(["convert", str(src), "--out", str(tmp_path / "out.npz"), "--keep-classes", keep]) == 0
    out = read_dataset(tmp_path / "out.npz")
    assert list(out.classes) == [ds.classes[2], ds.classes[0]] and out.n_spectra == 8
    assert ds.y is not None and out.groups is not None
    assert out.groups.tolist() == groups[np.isin(ds.y, [0, 2])].tolist()
    assert main(["convert", str(src), "--out", str(tmp_path / "out.csv")]) == 2  # only .npz is written


def test_train_reads_every_data_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    ds = synth_dataset(classes=2, per_class=12, points=120, seed=0)
    a = write_npz(ds.subset(np.arange(0, 24, 2)), tmp_path / "a.npz")
    b = write_npz(ds.subset(np.arange(1, 24, 2)), tmp_path / "b.npz")
    rc = main(["train", "--data", str(a), "--data", str(b), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--batch-size", "8", "--window", "20", "--step", "10", "--threads", "1", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_train"] + summary["n_val"] == 24  # both files, not only the last one
