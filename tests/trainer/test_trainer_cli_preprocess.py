"""Preprocessing on the command line: every step of THE preprocessing has a flag that overrides the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ramanedge.cli import build_parser
from spectral_core.errors import DataError
from trainer.cli import build_config


def _cfg(*flags: str, config: Path | None = None):  # type: ignore[no-untyped-def]
    argv = ["train", "--data", "d.npz", "--out", "run", *flags]
    if config is not None:
        argv += ["--config", str(config)]
    return build_config(build_parser(only="train").parse_args(argv))


def test_each_step_has_a_flag() -> None:
    pre = _cfg("--despike", "--crop", "500:1700", "--baseline", "arpls:lam=1e6", "--smooth", "11:2",
               "--interpolation", "linear", "--normalise", "snv").preprocess
    assert pre.despike is not None and pre.despike.threshold == 7.0 and pre.despike.width == 2
    assert pre.crop == (500.0, 1700.0)
    assert pre.baseline is not None and pre.baseline.method == "arpls" and pre.baseline.lam == 1e6
    assert pre.smooth is not None and (pre.smooth.window, pre.smooth.polyorder) == (11, 2)
    assert pre.interpolation == "linear" and pre.normalise == "snv"
    pre = _cfg("--despike", "5.5:3", "--baseline", "modpoly:poly_order=5", "--smooth").preprocess
    assert pre.despike is not None and (pre.despike.threshold, pre.despike.width) == (5.5, 3)
    assert pre.baseline is not None and pre.baseline.method == "modpoly" and pre.baseline.poly_order == 5
    assert pre.smooth is not None and (pre.smooth.window, pre.smooth.polyorder) == (9, 3)


def test_off_turns_off_a_step_of_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"preprocess": {"despike": {"threshold": 6}, "smooth": {"window": 7},
                                              "baseline": {"method": "snip"}, "crop": [450, 1750]}}))
    assert _cfg(config=cfg).preprocess.smooth is not None
    pre = _cfg("--despike", "off", "--smooth", "off", "--baseline", "none", "--crop", "off", config=cfg).preprocess
    assert pre.despike is None and pre.smooth is None and pre.baseline is None and pre.crop is None


@pytest.mark.parametrize(("flag", "value", "match"), [
    ("--baseline", "wavelet", "invalid preprocessing option"),
    ("--baseline", "arpls:lam", "KEY=VALUE"),
    ("--baseline", "arpls:lam=big", "not a number"),
    ("--smooth", "8", "invalid preprocessing option"),  # an even window
    ("--crop", "1700:500", "invalid preprocessing option"),
    ("--crop", "500", "LOW:HIGH"),
    ("--despike", "x", "--despike"),
])
def test_malformed_values_are_refused_naming_the_flag(flag: str, value: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        _cfg(flag, value)


def test_baseline_takes_any_pybaselines_method_and_its_keywords() -> None:
    b = _cfg("--baseline", "IASLS:lam=1e6,lam_1=1e-3,max_iter=80").preprocess.baseline
    assert b is not None and b.method == "iasls" and b.lam == 1e6 and b.params == {"lam_1": 1e-3, "max_iter": 80}
    b = _cfg("--baseline", "snip:max_half_window=25,decreasing=true").preprocess.baseline
    assert b is not None and b.max_half_window == 25 and b.params == {"decreasing": True}
    with pytest.raises(DataError, match="takes no argument 'lam_1'; it accepts lam, diff_order, max_iter, tol"):
        _cfg("--baseline", "arpls:lam_1=3")
