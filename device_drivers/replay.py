"""``replay://``: the spectra of a recording, one after another, as if an instrument sent them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from device_drivers._base import BaseSpectrometer, DeviceInfo
from device_drivers.errors import DeviceURLError, DriverError, SourceExhaustedError
from spectral_core.errors import ReaderError
from spectral_core.io import read_dataset
from spectral_core.spectrum import Spectrum

__all__ = ["ReplaySpectrometer"]

logger = logging.getLogger(__name__)


class ReplaySpectrometer(BaseSpectrometer):
    """Replays a file readable by :func:`spectral_core.io.read_dataset` (e.g. written by ``ramanedge acquire``).

    Args:
        path: the recording.
        rate_hz: spectra per second on the monotonic clock (0: as fast as asked).
        loop: start again at the end instead of ending.
        read_options: reader options, as ``read_dataset`` takes them (the CLI's reading options: ``axis``,
            ``labels``, ``class_names``, ``delimiter``, ``layout``, ``pattern``, ...).

    After the last spectrum (unless looping) ``acquire()`` and ``stream()`` raise :class:`SourceExhaustedError`
    (a DriverError), so a consumer can tell a finished recording from a closed device. Metadata adds ``index`` (row in the file) and ``label`` when the file has one.
    """

    def __init__(self, url: str, path: str | Path, *, rate_hz: float = 0.0, loop: bool = False,
                 read_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if rate_hz < 0:
            raise DeviceURLError(f"{url}: rate must be >= 0, got {rate_hz}")
        self.url = url
        try:
            self.ds = read_dataset(path, **dict(read_options or {}))
        except ReaderError as exc:
            raise DriverError(f"{url}: cannot replay: {exc}") from exc
        if self.ds.n_spectra == 0:
            raise DriverError(f"{url}: the recording holds no spectra")
        self.rate_hz, self.loop = float(rate_hz), loop
        self._i = 0
        self._next_due = time.monotonic()
        self._info = DeviceInfo(
            model="replay", serial=str(Path(path).name), pixels=self.ds.n_points, axis=self.ds.axis,
            axis_unit="cm-1", max_counts=float(np.finfo(np.float32).max),
            saturation_level=float(np.finfo(np.float32).max),
        )
        self._integration_us = int(self.ds.provenance.get("integration_time_us", 0) or 0)

    @property
    def info(self) -> DeviceInfo:
        return self._info

    def acquire(self) -> Spectrum:
        """The next spectrum of the recording, paced at ``rate_hz``."""
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        if self._i >= self.ds.n_spectra:
            if not self.loop:
                raise SourceExhaustedError(f"{self.url}: all {self.ds.n_spectra} spectra replayed")
            self._i = 0
        if self.rate_hz > 0:
            now = time.monotonic()
            if self._next_due > now:
                time.sleep(self._next_due - now)
            self._next_due = max(self._next_due + 1.0 / self.rate_hz, time.monotonic() - 1.0 / self.rate_hz)
        i = self._i
        self._i += 1
        extra: dict[str, object] = {"index": i}
        if self.ds.y is not None:
            extra["label"] = self.ds.classes[int(self.ds.y[i])]
            extra["label_index"] = int(self.ds.y[i])
        seq = int(self._counters["spectra"])
        return self._make_spectrum(self.ds.X[i], seq=seq, extra=extra)
