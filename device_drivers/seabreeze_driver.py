"""``seabreeze://``: Ocean Insight (Ocean Optics) USB spectrometers through python-seabreeze (an extra).

Only the public API of ``seabreeze.spectrometers`` is used (``list_devices``, ``Spectrometer.from_serial_number``,
``from_first_available``, ``wavelengths``, ``intensities``, ``integration_time_micros``, ``serial_number``,
``model``, ``pixels``, ``max_intensity``, ``close``). Vendor errors are wrapped at this boundary in
:class:`~spectral_core.errors.DriverError`, keeping their message.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import numpy as np

from device_drivers._base import BaseSpectrometer, DeviceInfo
from device_drivers.errors import DeviceURLError, DriverError
from spectral_core.errors import MissingExtraError
from spectral_core.spectrum import Spectrum

__all__ = ["SeabreezeSpectrometer", "list_seabreeze_devices", "load_seabreeze"]

logger = logging.getLogger(__name__)


def load_seabreeze() -> ModuleType:
    """``seabreeze.spectrometers``, or MissingExtraError naming the extra."""
    try:
        return importlib.import_module("seabreeze.spectrometers")
    except ImportError as exc:
        raise MissingExtraError("seabreeze:// spectrometers", "seabreeze", "seabreeze") from exc


def _vendor_errors(sb: ModuleType) -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, RuntimeError]
    err = getattr(sb, "SeaBreezeError", None)
    if isinstance(err, type) and issubclass(err, BaseException):
        errs.append(err)
    return tuple(errs)


def list_seabreeze_devices() -> list[dict[str, str]]:
    """Model and serial of each attached device ([] when none; MissingExtraError without the extra)."""
    sb = load_seabreeze()
    try:
        devs = sb.list_devices()
    except _vendor_errors(sb) as exc:
        raise DriverError(f"seabreeze: listing devices failed: {exc}") from exc
    return [{"model": str(d.model), "serial": str(d.serial_number), "url": f"seabreeze://{d.serial_number}"}
            for d in devs]


class SeabreezeSpectrometer(BaseSpectrometer):
    """One Ocean Insight spectrometer.

    Args:
        serial: serial number, or None for the first available device.
        excitation_nm: laser wavelength, nm (required: the device reports its axis in nm).
        integration_time_us: set at open when given, microseconds.
        saturation_level: counts treated as saturated (default: the device's ``max_intensity``).
    """

    def __init__(self, url: str, serial: str | None = None, *, excitation_nm: float | None = None,
                 integration_time_us: int | None = None, saturation_level: float | None = None) -> None:
        super().__init__()
        self.url = url
        if excitation_nm is None:
            raise DeviceURLError(
                f"{url}: the spectrometer reports wavelengths in nm; give the laser wavelength, "
                "e.g. seabreeze://?excitation=785"
            )
        sb = load_seabreeze()
        self._errors = _vendor_errors(sb)
        try:
            if serial:
                self._dev: Any = sb.Spectrometer.from_serial_number(serial)
            else:
                self._dev = sb.Spectrometer.from_first_available()
            wl = np.asarray(self._dev.wavelengths(), dtype=np.float64)
            model, sn = str(self._dev.model), str(self._dev.serial_number)
            pixels = int(getattr(self._dev, "pixels", wl.size))
            max_i = float(getattr(self._dev, "max_intensity", 65535.0))
        except self._errors as exc:
            raise DriverError(f"{url}: cannot open seabreeze device {serial or '(first)'}: {exc}") from exc
        if wl.size != pixels:
            raise DriverError(f"{url}: {wl.size} wavelengths for {pixels} pixels")
        self._info = DeviceInfo(
            model=model, serial=sn, pixels=pixels, axis=wl, axis_unit="nm", excitation_nm=float(excitation_nm),
            max_counts=max_i, saturation_level=float(saturation_level if saturation_level is not None else max_i),
        )
        self._info.raman_shift()
        self.set_integration_time_us(integration_time_us or 100_000)
        self._seq = 0

    @property
    def info(self) -> DeviceInfo:
        return self._info

    def set_integration_time_us(self, us: int) -> None:
        """Set the integration time on the device, microseconds."""
        super().set_integration_time_us(us)
        try:
            self._dev.integration_time_micros(int(us))
        except self._errors as exc:
            raise DriverError(f"{self.url}: setting integration time {us} us failed: {exc}") from exc

    def acquire(self) -> Spectrum:
        """One spectrum (blocks for about one integration time)."""
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        try:
            counts = np.asarray(self._dev.intensities(), dtype=np.float64)
        except self._errors as exc:
            raise DriverError(f"{self.url}: acquisition failed: {exc}") from exc
        seq = self._seq
        self._seq += 1
        return self._make_spectrum(counts, seq=seq)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._dev.close()
        except self._errors as exc:
            logger.warning("%s: close failed: %s", self.url, exc)
