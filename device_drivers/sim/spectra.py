"""What the simulated instrument emits: synthetic spectra of known classes, or the spectra of a real data set."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from device_drivers.errors import DriverError
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import SyntheticCatalog, instrument_axis

__all__ = ["DatasetSpectra", "SpectraSource", "SpectrumGenerator"]


class SpectraSource(Protocol):
    """What the simulator emits: spectra on ``axis`` (cm^-1) with their true class (``names[label]``)."""

    axis: NDArray[np.float64]
    max_counts: float
    last_index: int | None

    @property
    def names(self) -> tuple[str, ...]: ...

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]: ...


class SpectrumGenerator:
    """Synthetic spectra in detector counts on the instrument axis (cm^-1), with their true classes."""

    last_index: int | None = None

    def __init__(self, classes: int = 8, catalog_seed: int = 0, seed: int = 1, *, pixels: int = 1024,
                 excitation_nm: float = 785.0, max_counts: float = 65535.0) -> None:
        self.catalog = SyntheticCatalog(classes, catalog_seed)
        self.axis = instrument_axis(pixels, excitation_nm)
        self.max_counts = float(max_counts)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 48611]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.catalog.names)

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]:
        """(label, counts, saturated) of the next spectrum."""
        label = int(self.rng.integers(0, self.catalog.n_classes))
        y = self.catalog.sample(label, self.axis, self.rng)
        if saturate:
            y = y * (1.5 * self.max_counts / max(float(y.max()), 1.0))
        y = np.clip(y, 0.0, self.max_counts)
        return label, y, bool(y.max() >= self.max_counts)


class DatasetSpectra:
    """The spectra of a real data set, in file order (from the start again after the last), on its own axis.

    Its labels are the ground truth (label -1 and an empty class name when the file has none). Intensities
    are sent as they are (float32 on the wire), so the full scale is set well above the data: ten times the
    largest absolute value (a saturate fault scales a spectrum up to it).

    Args:
        ds: the data set, e.g. from :func:`spectral_core.io.read_dataset` with the CLI's reading options.
        max_counts: full scale; default ten times the largest absolute intensity.
    """

    def __init__(self, ds: SpectralDataset, *, max_counts: float | None = None) -> None:
        if ds.n_spectra == 0:
            raise DriverError("the data set holds no spectra to simulate")
        self.ds = ds
        self.axis = np.asarray(ds.axis, dtype=np.float64)
        finite = np.abs(ds.X[np.isfinite(ds.X)])
        peak = float(finite.max()) if finite.size else 1.0
        self.max_counts = float(max_counts) if max_counts is not None else 10.0 * max(peak, 1e-30)
        self.last_index: int | None = None
        self._i = 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.ds.classes)

    def next(self, *, saturate: bool = False) -> tuple[int, NDArray[np.float64], bool]:
        """(label, intensities, saturated) of the next row; label -1 when the data set has no labels."""
        i = self._i
        self._i = (i + 1) % self.ds.n_spectra
        self.last_index = i
        y = np.asarray(self.ds.X[i], dtype=np.float64)
        if saturate:
            y = np.minimum(y * (1.5 * self.max_counts / max(float(np.nanmax(y)), 1e-30)), self.max_counts)
        label = -1 if self.ds.y is None else int(self.ds.y[i])
        return label, y, bool(np.nanmax(y) >= self.max_counts)
