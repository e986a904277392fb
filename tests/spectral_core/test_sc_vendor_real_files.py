"""Real Andor Solis files (tests/spectral_core/data/real_sif, origin and licence in its SOURCE.md), read with our
own SIF reader and compared with what Solis itself exported (``raman1.asc``) and with the sample's known
Raman bands. The other real vendor files that were checked are listed in docs/formats_binary.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks

from spectral_core.errors import ReaderError
from spectral_core.io import read_dataset

DATA = Path(__file__).parent / "data" / "real_sif"


def test_a_wavelength_mode_file_matches_the_solis_export_and_needs_the_laser() -> None:
    solis = np.loadtxt(DATA / "raman1.asc", max_rows=1024)  # wavelength (nm), counts; then the settings
    with pytest.raises(ReaderError, match=r"Solis shows 'Wavelength'.*\(422\) is not used; pass excitation_nm="):
        read_dataset(DATA / "raman1.sif")
    ds = read_dataset(DATA / "raman1.sif", excitation_nm=405.0)
    assert ds.X.shape == (1, 1024) and ds.provenance["format"] == "SIF 65567"
    wavelength = 1e7 / (1e7 / 405.0 - ds.axis)
    np.testing.assert_allclose(wavelength, solis[:, 0], atol=1e-4)  # the export rounds to 5 decimals
    np.testing.assert_allclose(ds.X[0], solis[:, 1], rtol=1e-5)  # and counts to 6 significant digits
    assert ds.X[0, 0] == 280099.0 and ds.provenance["x_axis_label"] == "Wavelength"


def test_a_raman_mode_file_uses_its_laser_and_shows_hematite_bands() -> None:
    ds = read_dataset(DATA / "DD58_785_1_Fe2O3_5x10s.sif")
    assert ds.provenance["x_axis_label"] == "Raman shift" and "785.0 nm (from the file)" in ds.provenance["converted_from"]
    assert ds.X.shape == (1, 1024) and 70 < ds.axis[0] < 90 and 1550 < ds.axis[-1] < 1570
    y = ds.X[0]
    peaks = ds.axis[find_peaks(y, prominence=0.05 * (y.max() - y.min()))[0]]
    # hematite (alpha-Fe2O3): about 290, 410, 500, 610 and 1320 cm^-1; this instrument reads ~10 cm^-1 low
    for band in (291.0, 410.0, 497.0, 611.0, 1320.0):
        assert np.min(np.abs(peaks - band)) < 20.0, (band, peaks)
