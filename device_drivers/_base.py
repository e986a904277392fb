"""The one spectrometer interface, the device description, and the shared driver plumbing."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from spectral_core.spectrum import Spectrum

__all__ = ["BaseSpectrometer", "DeviceInfo", "RejectedFrame", "Spectrometer", "nm_to_raman_shift"]

logger = logging.getLogger(__name__)


def nm_to_raman_shift(wavelength_nm: NDArray[Any], excitation_nm: float) -> NDArray[np.float64]:
    """Raman shift in cm^-1 of scattered light at ``wavelength_nm`` for a laser at ``excitation_nm``."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    return np.asarray(1e7 / float(excitation_nm) - 1e7 / lam, dtype=np.float64)


@dataclass(frozen=True)
class DeviceInfo:
    """What a spectrometer says about itself.

    Attributes:
        model: model name.
        serial: serial number (unique per device).
        pixels: number of detector pixels (length of every spectrum).
        axis: the pixel axis in ``axis_unit`` (cm^-1 Raman shift or nm wavelength), float64.
        axis_unit: ``"cm-1"`` or ``"nm"``.
        excitation_nm: laser wavelength, nm; needed to convert an nm axis to Raman shift. None when unknown.
        min_counts / max_counts: the detector's intensity range, counts.
        saturation_level: counts at or above which a pixel is saturated (usually ``max_counts``).
        extra: anything else the device reported (firmware version, ...), JSON-serialisable.
    """

    model: str
    serial: str
    pixels: int
    axis: NDArray[np.float64]
    axis_unit: str = "cm-1"
    excitation_nm: float | None = None
    min_counts: float = 0.0
    max_counts: float = 65535.0
    saturation_level: float = 65535.0
    extra: dict[str, Any] = field(default_factory=dict)

    def raman_shift(self) -> NDArray[np.float64]:
        """The axis as Raman shift in cm^-1 (converted from nm with ``excitation_nm`` when needed)."""
        if self.axis_unit == "cm-1":
            return np.asarray(self.axis, dtype=np.float64)
        if self.excitation_nm is None:
            from device_drivers.errors import ProtocolError

            raise ProtocolError(
                f"{self.model} {self.serial} reports its axis in nm without an excitation wavelength; "
                "give one (excitation=785 in the device URL)"
            )
        return nm_to_raman_shift(self.axis, self.excitation_nm)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (axis as its range, not every value)."""
        return {
            "model": self.model,
            "serial": self.serial,
            "pixels": self.pixels,
            "axis_unit": self.axis_unit,
            "axis_min": float(np.min(self.axis)) if self.pixels else None,
            "axis_max": float(np.max(self.axis)) if self.pixels else None,
            "excitation_nm": self.excitation_nm,
            "min_counts": self.min_counts,
            "max_counts": self.max_counts,
            "saturation_level": self.saturation_level,
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclass(frozen=True)
class RejectedFrame:
    """A spectrum the device sent (or is known to have sent) that could not be handed out.

    :meth:`BaseSpectrometer.events` yields one per bad frame or line, in stream order with the good spectra,
    so a consumer can record each with its reason instead of reading a counter.

    Attributes:
        reason: what was wrong, bounded (quotes at most a few characters of the content).
        seq: the sender's sequence number when known (for an unnumbered ASCII line: the host's count of data
            lines, the same numbering the good lines get); None when unknown.
        kind: ``"malformed"`` (arrived intact but not a valid spectrum: wrong pixel count, NaN, text),
            ``"garbled"`` (damaged on the link: CRC error, truncated) or ``"lost"`` (never arrived: a sequence
            gap).
        t_monotonic: time.monotonic() when the driver noticed it, s.
        t_wall: wall-clock time when the driver noticed it, s since the epoch.
    """

    reason: str
    seq: int | None
    kind: str = "malformed"
    t_monotonic: float = field(default_factory=time.monotonic)
    t_wall: float = field(default_factory=time.time)


@runtime_checkable
class Spectrometer(Protocol):
    """Every driver, whatever the transport. Opened by :func:`device_drivers.open_device`.

    ``acquire`` and ``stream`` return :class:`~spectral_core.Spectrum` objects whose metadata holds at least
    ``seq`` (int), ``t_monotonic`` (s, time.monotonic at arrival), ``t_wall`` (s since the epoch),
    ``device_serial``, ``integration_time_us`` and ``saturated`` (bool). Neither raises anything but a
    :class:`~spectral_core.errors.DriverError` (``DeviceTimeoutError`` for a stalled device) once the driver's
    retries are exhausted.
    """

    url: str

    @property
    def info(self) -> DeviceInfo: ...

    @property
    def stats(self) -> dict[str, int | float]: ...

    def get_integration_time_us(self) -> int: ...

    def set_integration_time_us(self, us: int) -> None: ...

    def acquire(self) -> Spectrum: ...

    def stream(self) -> Generator[Spectrum, None, None]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Spectrometer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class BaseSpectrometer:
    """Shared plumbing: context manager, ``stream`` from ``acquire``, metadata and saturation, counters."""

    url: str = ""

    def __init__(self) -> None:
        self._closed = False
        self._counters: dict[str, int | float] = {
            "spectra": 0,
            "saturated": 0,
            "reconnects": 0,
            "timeouts": 0,
            "lost": 0,
            "last_gap_s": 0.0,
        }
        self._integration_us = 0

    @property
    def info(self) -> DeviceInfo:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> dict[str, int | float]:
        """Counters since open: spectra, saturated, reconnects, timeouts, lost, last_gap_s (+ driver specific)."""
        return dict(self._counters)

    def get_integration_time_us(self) -> int:
        """Integration time, microseconds."""
        return self._integration_us

    def set_integration_time_us(self, us: int) -> None:
        """Set the integration time, microseconds."""
        from device_drivers.errors import DeviceSettingError

        if int(us) <= 0:
            raise DeviceSettingError(f"integration time must be positive, got {us} us")
        self._integration_us = int(us)

    @property
    def integration_time_us(self) -> int:
        return self.get_integration_time_us()

    @integration_time_us.setter
    def integration_time_us(self, us: int) -> None:
        self.set_integration_time_us(us)

    def acquire(self) -> Spectrum:
        raise NotImplementedError

    def stream(self) -> Generator[Spectrum, None, None]:
        """Spectra one after another until :meth:`close`; raises only a DriverError after retries."""
        while not self._closed:
            yield self.acquire()

    def events(self) -> Generator[Spectrum | RejectedFrame, None, None]:
        """Like :meth:`stream`, and also a :class:`RejectedFrame` for every bad frame or line, in order.

        Drivers without a wire protocol (simulated, replayed, USB through a vendor library) never reject one,
        so the default is :meth:`stream` itself.
        """
        yield from self.stream()

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> BaseSpectrometer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:  # a driver left open must not keep a port or thread alive
        if not getattr(self, "_closed", True):
            # AttributeError: a constructor that failed half way (its own error was already raised).
            with contextlib.suppress(OSError, AttributeError):
                self.close()

    def _make_spectrum(
        self,
        counts: NDArray[Any],
        *,
        seq: int,
        integration_time_us: int | None = None,
        device_saturated: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Spectrum:
        """A Spectrum on the device's Raman-shift axis with the standard metadata; counts saturation."""
        info = self.info
        x = np.asarray(counts, dtype=np.float32)
        saturated = bool(device_saturated or (x.size and float(np.max(x)) >= info.saturation_level))
        meta: dict[str, Any] = {
            "source": self.url,
            "seq": int(seq),
            "t_monotonic": time.monotonic(),
            "t_wall": time.time(),
            "device_model": info.model,
            "device_serial": info.serial,
            "integration_time_us": int(self._integration_us if integration_time_us is None else integration_time_us),
            "saturated": saturated,
        }
        if extra:
            meta.update(extra)
        self._counters["spectra"] = int(self._counters["spectra"]) + 1
        if saturated:
            self._counters["saturated"] = int(self._counters["saturated"]) + 1
            logger.info("%s: spectrum seq %d is saturated", self.url, seq)
        return Spectrum.from_unsorted(info.raman_shift(), x, meta)

    def _count(self, key: str, n: int = 1) -> None:
        self._counters[key] = int(self._counters.get(key, 0)) + n
