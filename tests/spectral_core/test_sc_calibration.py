"""Wavenumber calibration: synthetic standards on a distorted axis are corrected to <= 0.3 cm^-1 RMS; bad
inputs and the wrong standard are refused with reasons; the JSON round-trips with its hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from spectral_core.calibration import (
    CALIBRATION_KEY,
    STANDARDS,
    CalibrationError,
    apply_calibration,
    calibrate,
    find_peaks_cm1,
    load_calibration,
    reference_positions,
)


def distorted_standard(
    standard: str, *, lo: float = 150.0, hi: float = 3400.0, n: int = 1600, excitation_nm: float | None = None,
    a0: float = -6.0, a1: float = 1.002, a2: float = 4e-7, fwhm: float = 6.0, noise: float = 0.01, seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(nominal axis, intensities, true shift of each pixel): Lorentzian peaks at the reference positions seen
    through a known quadratic axis distortion, on a sloped background, with Gaussian noise."""
    rng = np.random.default_rng(seed)
    nominal = np.linspace(lo, hi, n)
    c = 0.5 * (lo + hi)
    true = nominal + a0 + (a1 - 1.0) * (nominal - c) + a2 * (nominal - c) ** 2
    y = 0.05 + 1e-5 * nominal
    for r in reference_positions(standard, excitation_nm):
        y = y + (0.3 + 0.7 * rng.random()) / (1.0 + ((true - r) / (fwhm / 2)) ** 2)
    return nominal, y + rng.normal(0.0, noise, n), true


@pytest.mark.parametrize(
    ("standard", "excitation_nm", "lo", "hi"),
    [
        ("polystyrene", None, 150.0, 3400.0),
        ("paracetamol", None, 150.0, 3400.0),
        ("cyclohexane", None, 150.0, 3400.0),
        ("neon", 785.0, 150.0, 2000.0),
        ("neon", 532.0, 150.0, 3400.0),
    ],
)
def test_a_known_axis_distortion_is_corrected_to_a_third_of_a_wavenumber(
    standard: str, excitation_nm: float | None, lo: float, hi: float
) -> None:
    nominal, y, true = distorted_standard(standard, lo=lo, hi=hi, excitation_nm=excitation_nm)
    before = np.sqrt(np.mean((nominal - true) ** 2))
    cal = calibrate(nominal, y, standard, excitation_nm=excitation_nm)
    assert cal.rms_cm1 <= 0.3 and len(cal.matched) >= 4 and cal.order >= 2
    inside = (nominal >= cal.fit_range_cm1[0]) & (nominal <= cal.fit_range_cm1[1])
    after = np.sqrt(np.mean((cal.apply(nominal)[inside] - true[inside]) ** 2))
    assert before > 5.0 and after <= 0.3, (before, after)
    assert cal.sha256 == cal.content_hash() and len(cal.sha256) == 64


def test_silicon_is_one_peak_and_an_offset() -> None:
    nominal, y, _ = distorted_standard("silicon", lo=200.0, hi=1000.0, n=800, a1=1.0, a2=0.0, a0=-4.0)
    cal = calibrate(nominal, y, "silicon")
    assert cal.order == 0 and len(cal.matched) == 1
    np.testing.assert_allclose(cal.apply(nominal) - nominal, -4.0, atol=0.1)
    assert abs(cal.matched[0].measured_cm1 - (520.45 + 4.0)) < 0.1


def test_peaks_are_found_to_a_fraction_of_a_pixel() -> None:
    x = np.linspace(400.0, 1800.0, 700)  # 2 cm^-1 a pixel
    centres = np.array([612.3, 1001.7, 1450.05])
    y = sum(1.0 / (1.0 + ((x - c) / 3.0) ** 2) for c in centres) + np.random.default_rng(1).normal(0, 0.005, x.size)
    pos, prom = find_peaks_cm1(x, y)
    assert pos.size == 3 and np.all(prom > 0.5)
    np.testing.assert_allclose(pos, centres, atol=0.1)


def test_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    nominal, y, _ = distorted_standard("polystyrene")
    cal = calibrate(nominal, y, "polystyrene", source_name="ps.csv", created="2026-01-01T00:00:00+00:00")
    path = cal.save(tmp_path / "instrument.json")
    back = load_calibration(path)
    assert back.sha256 == cal.sha256 and back.coefficients == cal.coefficients
    np.testing.assert_array_equal(back.apply(nominal), cal.apply(nominal))
    # the same axis gives the same (read-only) array object: the engine groups spectra by axis object
    assert back.apply(nominal) is back.apply(nominal.copy())
    assert not back.apply(nominal).flags.writeable
    # what a source calls per spectrum: the corrected axis and the hash to record
    axis, meta = apply_calibration(back, nominal)
    assert axis is back.apply(nominal) and meta == {CALIBRATION_KEY: cal.sha256}
    same, none = apply_calibration(None, nominal)
    np.testing.assert_array_equal(same, nominal)
    assert none == {}
    doc = json.loads(path.read_text())
    doc["coefficients"][0] += 1.0
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="does not match its content"):
        load_calibration(tmp_path / "edited.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CalibrationError, match="not a ramanedge calibration"):
        load_calibration(tmp_path / "other.json")
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "missing.json")


@pytest.mark.parametrize("wrong", ["cyclohexane", "paracetamol", "silicon"])
def test_the_wrong_standard_is_refused(wrong: str) -> None:
    nominal, y, _ = distorted_standard("polystyrene")
    with pytest.raises(CalibrationError, match=rf"(only \d+ of the \d+ {wrong} reference|the {wrong} peaks fit poorly)"):
        calibrate(nominal, y, wrong)


def test_bad_inputs_give_clear_errors() -> None:
    nominal, y, _ = distorted_standard("polystyrene")
    with pytest.raises(CalibrationError, match="unknown standard 'teflon'"):
        calibrate(nominal, y, "teflon")
    with pytest.raises(CalibrationError, match="excitation wavelength"):
        calibrate(nominal, y, "neon")
    with pytest.raises(CalibrationError, match="no peak stands"):
        calibrate(nominal, 1.0 + 1e-4 * nominal, "polystyrene")
    with pytest.raises(CalibrationError, match=r"only \d of the 11 polystyrene"):
        calibrate(nominal, np.random.default_rng(0).normal(0, 1, nominal.size), "polystyrene")
    narrow = (nominal > 1700) & (nominal < 2600)  # covers none of the polystyrene peaks
    with pytest.raises(CalibrationError, match="covers none of the polystyrene reference peaks"):
        calibrate(nominal[narrow], y[narrow], "polystyrene")
    bad = y.copy()
    bad[5] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate(nominal, bad, "polystyrene")
    # weak signal: only the strongest few peaks rise above the noise
    _, weak, _ = distorted_standard("polystyrene", noise=0.2, seed=4)
    with pytest.raises(CalibrationError, match=r"only \d+ of the \d+ polystyrene reference peaks"):
        calibrate(nominal, weak, "polystyrene")


def test_a_correction_that_folds_the_axis_is_refused() -> None:
    nominal, y, _ = distorted_standard("polystyrene")
    cal = calibrate(nominal, y, "polystyrene")
    cal.coefficients = [0.0, 0.0, -1e4]  # folds over anywhere: a correction for some other range
    cal._cache.clear()
    with pytest.raises(CalibrationError, match="does not keep the axis"):
        cal.apply(nominal)


def test_every_standard_has_sorted_distinct_reference_peaks() -> None:
    for name, std in STANDARDS.items():
        peaks = np.asarray(std.peaks)
        assert peaks.size >= 1 and np.all(np.diff(peaks) > 0), name
        assert std.source


def test_calibrate_command_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ramanedge.cli import main

    nominal, y, _ = distorted_standard("polystyrene")
    spec = tmp_path / "ps.csv"
    np.savetxt(spec, np.c_[nominal, y], delimiter=",")
    out = tmp_path / "instrument.json"
    assert main(["calibrate", str(spec), "--standard", "polystyrene", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    cal = load_calibration(out)
    assert doc["sha256"] == cal.sha256 and cal.rms_cm1 <= 0.3 and cal.source_name == "ps.csv"
    # the wrong standard: a clear error on stderr, exit status 2, no file
    assert main(["calibrate", str(spec), "--standard", "silicon", "--out", str(tmp_path / "si.json")]) == 2
    assert "silicon" in capsys.readouterr().err and not (tmp_path / "si.json").exists()
    pytest.importorskip("matplotlib")
    assert doc["plot"] == str(out.with_suffix(".png")) and out.with_suffix(".png").stat().st_size > 1000


def test_reference_tables_hold_the_verified_values() -> None:
    """Values checked against published copies of the sources (docs/calibration.md), including the two the
    check corrected (paracetamol 1561.6 cm^-1, neon 603.000 nm) and the neon lines it left out."""
    peaks = {name: STANDARDS[name].peaks for name in STANDARDS}
    assert peaks["polystyrene"][:4] == (620.9, 795.8, 1001.4, 1031.8) and peaks["polystyrene"][-1] == 3054.3
    assert len(peaks["polystyrene"]) == 11 and len(peaks["cyclohexane"]) == 11 and len(peaks["paracetamol"]) == 24
    assert {801.3, 1028.3, 1444.4, 2664.4, 2938.3} <= set(peaks["cyclohexane"])
    assert {213.3, 857.9, 1323.9, 1561.6, 1648.4, 3326.6} <= set(peaks["paracetamol"])
    assert 1561.5 not in peaks["paracetamol"]
    assert peaks["silicon"] == (520.45,)
    assert {585.249, 603.000, 640.225, 703.241, 794.318, 841.843, 914.867, 954.741} <= set(peaks["neon"])
    assert not {602.000, 859.126, 886.575, 922.006} & set(peaks["neon"])
    assert all(np.diff(p).min() > 0 for p in peaks.values() if len(p) > 1)
    # the 603.000 nm line, 785 nm excitation: 1e7/785 - 1e7/603 cm^-1
    shifts = reference_positions("neon", 785.0)
    assert np.isclose(shifts, 1e7 / 785.0 - 1e7 / 603.0).any()
