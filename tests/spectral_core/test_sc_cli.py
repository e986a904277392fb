"""`ramanedge info` with the reading options, on small files (the real data sets are in test_sc_real_data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ramanedge.cli import main


def test_info_on_a_class_folder_with_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for cls, n in (("b", 2), ("a", 3)):
        (tmp_path / cls).mkdir()
        rows = "".join(f"{i},{i + 1},{i + 5}\n" for i in range(n))
        (tmp_path / cls / "COOH.csv").write_text("0,1,2\n" + rows)
        (tmp_path / cls / "NH2.csv").write_text("0,1,2\n1,1,1\n")
    rc = main(["info", str(tmp_path), "--pattern", "COOH.csv", "--axis", "100:300:3", "--classes", "b,a"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["classes"] == {"b": 2, "a": 3}
    assert out["spectra"] == 5 and out["points"] == 3 and out["axis"]["step_mean"] == 100.0
    assert out["reader"] == "class-folders"


def test_info_tab_delimiter_and_mat_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scipy.io import savemat

    (tmp_path / "s.txt").write_text("100\t1\n200\t2\n300\t3\n")
    assert main(["info", str(tmp_path / "s.txt"), "--delimiter", "tab"]) == 0
    assert json.loads(capsys.readouterr().out)["spectra"] == 1
    savemat(tmp_path / "d.mat", {"S": np.ones((4, 3)) * np.arange(3), "lab": np.array([1, 0, 1, 0]), "w": np.arange(3.0)})
    rc = main(["info", str(tmp_path / "d.mat"), "--x-var", "S", "--y-var", "lab", "--axis-var", "w", "--classes", "no,yes"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["classes"] == {"no": 2, "yes": 2}


def test_info_fails_with_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("100,1\n101,x\n")
    rc = main(["info", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and str(bad) in err and "line 2, column 2" in err


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`ramanedge info x | head`: the reader is gone before the output is written -> no traceback, status 141."""
    import os
    import subprocess
    import sys

    data = tmp_path / "one.csv"
    data.write_text("".join(f"{400 + i},{i % 7}\n" for i in range(50)))
    r, w = os.pipe()
    os.close(r)  # the reader went away before a byte was written: every write raises EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "ramanedge", "info", str(data)], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
