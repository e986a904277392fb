"""A per-source wavenumber calibration (``calibration=instrument.json`` in the source URL): every spectrum's axis
is corrected before it is classified and its record names the calibration's SHA-256."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.records import Frame
from edge_runtime.sources import CalibratedSource, DeviceSource, WatchSource, open_source
from spectral_core.calibration import calibrate


def _silicon_calibration(path: Path, offset: float = 3.0) -> str:
    """A silicon calibration of an instrument whose axis reads ``offset`` cm^-1 low; returns its SHA-256."""
    nominal = np.linspace(300.0, 800.0, 600)
    y = 0.02 + 1.0 / (1.0 + ((nominal + offset - 520.45) / 3.0) ** 2)
    cal = calibrate(nominal, y, "silicon")
    cal.save(path)
    return cal.sha256


def _collect(src: object) -> tuple[list[Frame], threading.Lock]:
    got: list[Frame] = []
    lock = threading.Lock()

    def take(f: Frame) -> None:
        with lock:
            got.append(f)

    src.start(take)  # type: ignore[attr-defined]
    return got, lock


def test_a_drop_folder_with_a_calibration_corrects_every_axis_and_names_it(tmp_path: Path) -> None:
    sha = _silicon_calibration(tmp_path / "si.json")
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    src = open_source(f"watch://{drop}?calibration={tmp_path / 'si.json'}", led, settle_s=0.05, poll_s=0.1)
    assert isinstance(src, CalibratedSource) and isinstance(src.inner, WatchSource)
    assert src.url == f"watch://{drop}"  # the ledger identity of the folder is unchanged by the option
    assert src.status()["calibration"]["sha256"] == sha and src.status()["calibration"]["standard"] == "silicon"
    axis = np.linspace(400.0, 700.0, 200)
    (drop / "a.csv").write_text("".join(f"{a:.4f},{100 + np.sin(a / 30):.4f}\n" for a in axis))
    got, _ = _collect(src)
    try:
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got, "the dropped file never arrived"
        f = got[0]
        assert f.error is None and f.axis is not None
        assert np.allclose(f.axis, axis + 3.0, atol=0.2)  # corrected, not the file's own axis
        assert f.metadata["calibration_sha256"] == sha
    finally:
        src.stop()
        src.join(5)
        led.close()


def test_a_device_url_keeps_working_with_the_calibration_option_taken_out(tmp_path: Path) -> None:
    _silicon_calibration(tmp_path / "si.json")
    led = Ledger(tmp_path / "l.sqlite")
    try:
        src = open_source(f"sim://?classes=3&calibration={tmp_path / 'si.json'}&seed=1", led)
        assert isinstance(src, CalibratedSource) and isinstance(src.inner, DeviceSource)
        assert "calibration" not in src.url and "classes=3" in src.url and "seed=1" in src.url
        src.open()  # the driver would refuse an option it does not know: it never sees calibration=
        raw = src.inner.axis  # type: ignore[attr-defined]
        assert raw is not None and src.axis is not None and np.allclose(src.axis, raw + 3.0, atol=0.2)
        src.stop()
    finally:
        led.close()


@pytest.mark.parametrize("query", ["calibration=missing.json", "calibration=", "calibration=a&calibration=b"])
def test_a_bad_calibration_option_refuses_to_start(tmp_path: Path, query: str) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    try:
        with pytest.raises(SettingsError, match="calibration"):
            open_source(f"watch://{tmp_path}?{query}", led)
    finally:
        led.close()
