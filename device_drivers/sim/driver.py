"""The in-process ``sim://`` driver: the simulator's spectra without any transport."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator

from device_drivers._base import BaseSpectrometer, DeviceInfo
from device_drivers.errors import DeviceSettingError, DriverError
from device_drivers.sim.config import TruthRecord
from device_drivers.sim.spectra import SpectrumGenerator
from spectral_core.spectrum import Spectrum

__all__ = ["SimSpectrometer"]

#: ground-truth records a ``sim://`` driver keeps (the latest ones): a long run stays bounded
TRUTH_KEPT = 100_000


class SimSpectrometer(BaseSpectrometer):
    """The in-process ``sim://`` driver: synthetic spectra at ``rate_hz``, true class in the metadata.

    Metadata adds ``label`` (class name), ``label_index`` and ``classes`` (all names, in index order).
    ``truth`` holds the ground truth of the latest :data:`TRUTH_KEPT` spectra emitted.
    """

    def __init__(self, url: str = "sim://", *, classes: int = 8, rate_hz: float = 20.0, seed: int = 1,
                 catalog_seed: int = 0, pixels: int = 1024, excitation_nm: float = 785.0,
                 integration_time_us: int = 50_000, saturate_every: int = 0) -> None:
        super().__init__()
        if rate_hz < 0:
            raise DeviceSettingError(f"rate must be >= 0 spectra/s, got {rate_hz}")
        self.url = url
        self.gen = SpectrumGenerator(classes, catalog_seed, seed, pixels=pixels, excitation_nm=excitation_nm)
        self.rate_hz = float(rate_hz)
        self.saturate_every = int(saturate_every)
        self._integration_us = int(integration_time_us)
        self._info = DeviceInfo(
            model="RamanEdge-Sim (in-process)", serial=f"SIM-{seed}", pixels=pixels, axis=self.gen.axis,
            axis_unit="cm-1", excitation_nm=excitation_nm, max_counts=65535.0, saturation_level=65535.0,
        )
        self._seq = 0
        self._next_due = time.monotonic()
        self.truth: deque[TruthRecord] = deque(maxlen=TRUTH_KEPT)  # the latest spectra emitted

    @property
    def info(self) -> DeviceInfo:
        return self._info

    @property
    def classes(self) -> list[str]:
        return list(self.gen.catalog.names)

    def acquire(self) -> Spectrum:
        """The next spectrum, paced at ``rate_hz`` on the monotonic clock."""
        if self._closed:
            raise DriverError(f"{self.url}: closed")
        if self.rate_hz > 0:
            now = time.monotonic()
            if self._next_due > now:
                time.sleep(self._next_due - now)
            self._next_due = max(self._next_due + 1.0 / self.rate_hz, time.monotonic() - 1.0 / self.rate_hz)
        seq = self._seq
        self._seq += 1
        sat = self.saturate_every > 0 and (seq + 1) % self.saturate_every == 0
        label, counts, saturated = self.gen.next(saturate=sat)
        name = self.gen.catalog.names[label]
        self.truth.append(TruthRecord(seq, label, name, "sent", ("saturate",) if sat else (), saturated,
                                      time.monotonic()))
        return self._make_spectrum(counts, seq=seq, extra={
            "label": name, "label_index": label, "classes": self.classes,
        })

    def stream(self) -> Generator[Spectrum, None, None]:
        while not self._closed:
            yield self.acquire()

