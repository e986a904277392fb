"""seabreeze:// against a stand-in for the public API of ``seabreeze.spectrometers`` (no hardware here)."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import numpy as np
import pytest

from device_drivers import DeviceURLError, DriverError, open_device
from device_drivers.cli import list_devices
from device_drivers.seabreeze_driver import list_seabreeze_devices
from spectral_core.errors import MissingExtraError


class SeaBreezeError(Exception):
    pass


class _Dev:
    def __init__(self, model: str, serial_number: str) -> None:
        self.model, self.serial_number = model, serial_number


class FakeSpectrometer:
    """The subset of seabreeze.spectrometers.Spectrometer that the driver may use."""

    devices: ClassVar[list[_Dev]] = [_Dev("QE-PRO", "QEP01234"), _Dev("HR4000", "HR4C5678")]
    opened: ClassVar[list[FakeSpectrometer]] = []

    def __init__(self, dev: _Dev) -> None:
        self.model, self.serial_number = dev.model, dev.serial_number
        self.pixels = 100
        self.max_intensity = 200000.0
        self.integration_us: list[int] = []
        self.closed = False
        self.calls = 0
        FakeSpectrometer.opened.append(self)

    @classmethod
    def from_serial_number(cls, serial: str) -> FakeSpectrometer:
        for d in cls.devices:
            if d.serial_number == serial:
                return cls(d)
        raise SeaBreezeError(f"No device attached with serial number '{serial}'.")

    @classmethod
    def from_first_available(cls) -> FakeSpectrometer:
        return cls(cls.devices[0])

    def wavelengths(self) -> np.ndarray:
        return np.linspace(800.0, 900.0, self.pixels)

    def intensities(self, correct_dark_counts: bool = False, correct_nonlinearity: bool = False) -> np.ndarray:
        self.calls += 1
        y = np.full(self.pixels, 1000.0) + self.calls
        if self.calls == 2:
            y[10] = self.max_intensity
        return y

    def integration_time_micros(self, us: int) -> None:
        if us < 8:
            raise SeaBreezeError("integration time too short")
        self.integration_us.append(us)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_seabreeze(monkeypatch: pytest.MonkeyPatch) -> Any:
    pkg = types.ModuleType("seabreeze")
    mod = types.ModuleType("seabreeze.spectrometers")
    mod.Spectrometer = FakeSpectrometer  # type: ignore[attr-defined]
    mod.SeaBreezeError = SeaBreezeError  # type: ignore[attr-defined]
    mod.list_devices = lambda: list(FakeSpectrometer.devices)  # type: ignore[attr-defined]
    pkg.spectrometers = mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seabreeze", pkg)
    monkeypatch.setitem(sys.modules, "seabreeze.spectrometers", mod)
    FakeSpectrometer.opened = []
    return mod


def test_first_available_device(fake_seabreeze: Any) -> None:
    with open_device("seabreeze://?excitation=785&integration_us=20000") as dev:
        info = dev.info
        a, b = dev.acquire(), dev.acquire()
        dev.set_integration_time_us(5000)
        assert dev.get_integration_time_us() == 5000
    fake = FakeSpectrometer.opened[0]
    assert (info.model, info.serial, info.pixels, info.axis_unit) == ("QE-PRO", "QEP01234", 100, "nm")
    assert info.saturation_level == 200000.0
    expected_axis = 1e7 / 785.0 - 1e7 / np.linspace(800.0, 900.0, 100)
    np.testing.assert_allclose(a.axis, expected_axis)
    assert (a.metadata["seq"], b.metadata["seq"]) == (0, 1)
    assert (a.metadata["saturated"], b.metadata["saturated"]) == (False, True)
    assert a.metadata["integration_time_us"] == 20000 and a.metadata["device_serial"] == "QEP01234"
    assert fake.integration_us == [20000, 5000] and fake.closed


def test_by_serial_and_vendor_errors_wrapped(fake_seabreeze: Any) -> None:
    with open_device("seabreeze://HR4C5678?excitation=532") as dev:
        assert dev.info.model == "HR4000"
        with pytest.raises(DriverError, match="too short"):
            dev.set_integration_time_us(1)
    with pytest.raises(DriverError, match="No device attached"):
        open_device("seabreeze://NOPE?excitation=785")


def test_excitation_is_required(fake_seabreeze: Any) -> None:
    with pytest.raises(DeviceURLError, match="excitation"):
        open_device("seabreeze://")


def test_listing(fake_seabreeze: Any) -> None:
    assert [d["serial"] for d in list_seabreeze_devices()] == ["QEP01234", "HR4C5678"]
    assert [d["url"] for d in list_devices()["seabreeze"]] == ["seabreeze://QEP01234", "seabreeze://HR4C5678"]


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "seabreeze", None)
    monkeypatch.setitem(sys.modules, "seabreeze.spectrometers", None)
    with pytest.raises(MissingExtraError, match=r"ramanedge\[seabreeze\]"):
        open_device("seabreeze://?excitation=785")
    assert "seabreeze_unavailable" in list_devices()
