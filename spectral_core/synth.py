"""Synthetic, physically shaped Raman spectra: the embedded default for the demo, the tests and the simulator.

Each class is a template of pseudo-Voigt bands. Classes share most of their bands (as real samples of one
matrix do) and differ in a few bands and in band ratios, so a class is not identifiable from one peak.
Every spectrum then gets what a real instrument adds: band shifts and width changes, a fluorescence
background far larger than some bands, an axis calibration offset, Poisson shot noise, read noise, a dark
offset, and occasionally a cosmic-ray spike. A linear model does not reach 100% on it.

The class templates depend only on ``catalog_seed`` and the number of classes, so a simulator seeded
differently still emits the classes a model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spectral_core.spectrum import SpectralDataset

__all__ = ["Band", "SyntheticCatalog", "class_names", "instrument_axis", "synth_dataset"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def class_names(n: int) -> list[str]:
    """Names of the synthetic classes: compound_A, ..., compound_Z, compound_AA, ..."""
    names = []
    for i in range(n):
        s = _LETTERS[i % 26]
        if i >= 26:
            s = _LETTERS[i // 26 - 1] + s
        names.append(f"compound_{s}")
    return names


def instrument_axis(
    pixels: int = 1024, excitation_nm: float = 785.0, start_cm: float = 350.0, stop_cm: float = 1850.0
) -> NDArray[np.float64]:
    """The Raman-shift axis (cm^-1) of a dispersive spectrometer whose pixels are linear in wavelength.

    The result is increasing but not uniform in cm^-1, as on real instruments, so resampling is exercised.
    """
    lam0 = 1e7 / (1e7 / excitation_nm - start_cm)
    lam1 = 1e7 / (1e7 / excitation_nm - stop_cm)
    lam = np.linspace(lam0, lam1, pixels)
    return np.asarray(1e7 / excitation_nm - 1e7 / lam, dtype=np.float64)


@dataclass(frozen=True)
class Band:
    center: float  # cm^-1
    width: float  # FWHM, cm^-1
    height: float  # relative
    eta: float  # Lorentzian fraction of the pseudo-Voigt


def _pseudo_voigt(x: NDArray[np.float64], b: Band, shift: float, wscale: float) -> NDArray[np.float64]:
    c, w = b.center + shift, b.width * wscale
    g = np.exp(-4.0 * np.log(2.0) * ((x - c) / w) ** 2)
    lor = 1.0 / (1.0 + 4.0 * ((x - c) / w) ** 2)
    return np.asarray(b.height * (b.eta * lor + (1.0 - b.eta) * g))


class SyntheticCatalog:
    """Class templates and a sampler of realistic spectra of those classes.

    Args:
        n_classes: number of classes.
        catalog_seed: seeds the templates only (not the per-spectrum noise).
        band_range: cm^-1 range where bands may sit.
    """

    def __init__(
        self, n_classes: int = 8, catalog_seed: int = 0, band_range: tuple[float, float] = (420.0, 1780.0)
    ) -> None:
        if n_classes < 1:
            raise ValueError(f"need at least one class, got {n_classes}")
        rng = np.random.default_rng(np.random.SeedSequence([catalog_seed, n_classes, 7919]))
        lo, hi = band_range
        shared = [
            Band(float(rng.uniform(lo, hi)), float(rng.uniform(8, 30)), float(rng.uniform(0.2, 1.0)),
                 float(rng.uniform(0.3, 0.9)))
            for _ in range(12)
        ]
        self.names = class_names(n_classes)
        self.templates: list[list[Band]] = []
        for _ in range(n_classes):
            bands = [
                Band(b.center + float(rng.normal(0, 2.0)), b.width, b.height * float(rng.uniform(0.8, 1.25)), b.eta)
                for b in shared
            ]
            for _ in range(int(rng.integers(1, 4))):
                bands.append(
                    Band(float(rng.uniform(lo, hi)), float(rng.uniform(6, 22)), float(rng.uniform(0.05, 0.25)),
                         float(rng.uniform(0.3, 0.9)))
                )
            self.templates.append(bands)

    @property
    def n_classes(self) -> int:
        return len(self.templates)

    def clean(self, label: int, axis: NDArray[np.float64]) -> NDArray[np.float64]:
        """The noiseless template of class ``label`` on ``axis`` (peak-normalised)."""
        y = sum(_pseudo_voigt(axis, b, 0.0, 1.0) for b in self.templates[label])
        return np.asarray(y / np.max(y))

    def sample(
        self,
        label: int,
        axis: NDArray[np.float64],
        rng: np.random.Generator,
        *,
        counts: float | None = None,
        spike_probability: float = 0.03,
    ) -> NDArray[np.float64]:
        """One realistic spectrum of class ``label`` in detector counts on ``axis``.

        Args:
            counts: peak Raman signal in counts (random 400-4000 when None).
            spike_probability: chance of a cosmic-ray spike in this spectrum.
        """
        x = np.asarray(axis, dtype=np.float64)
        calib = float(rng.normal(0.0, 1.2))  # axis calibration offset, cm^-1
        raman = np.zeros_like(x)
        for b in self.templates[label]:
            raman += _pseudo_voigt(
                x + calib, b, float(rng.normal(0.0, 2.5)), float(np.clip(rng.normal(1.0, 0.12), 0.6, 1.5))
            ) * float(rng.lognormal(0.0, 0.22))
        # Real samples are rarely pure: a little of another class is mixed in.
        other = int(rng.integers(0, self.n_classes))
        if other != label:
            frac = float(rng.uniform(0.0, 0.3))
            raman *= 1.0 - frac
            for b in self.templates[other]:
                raman += frac * _pseudo_voigt(x + calib, b, 0.0, 1.0)
        raman /= max(float(raman.max()), 1e-12)
        peak = float(counts if counts is not None else rng.uniform(150, 2500))
        # Fluorescence: a broad, smooth, sample-dependent background, often larger than the Raman bands.
        t = (x - x[0]) / (x[-1] - x[0])
        fl = (
            float(rng.uniform(0.2, 2.5)) * np.exp(-((t - float(rng.uniform(-0.5, 1.5))) ** 2)
                                              / (2 * float(rng.uniform(0.3, 1.2)) ** 2))
            + float(rng.uniform(0.0, 0.6)) * (1 - t) ** float(rng.uniform(1.0, 3.0))
        )
        signal = peak * (raman + fl) + 100.0  # 100 counts dark offset
        noisy = rng.poisson(np.clip(signal, 0, None)).astype(np.float64) + rng.normal(0.0, 8.0, x.size)
        if rng.random() < spike_probability:
            i = int(rng.integers(0, x.size))
            noisy[i : i + int(rng.integers(1, 3))] += peak * float(rng.uniform(2.0, 10.0))
        return noisy


def synth_dataset(
    classes: int = 8,
    per_class: int = 200,
    points: int = 1000,
    seed: int = 0,
    *,
    catalog_seed: int = 0,
    axis: NDArray[np.float64] | None = None,
) -> SpectralDataset:
    """A labelled synthetic dataset, ``per_class`` spectra of each of ``classes`` classes.

    By default on a uniform 400-1800 cm^-1 axis of ``points`` points; pass ``axis`` for another
    (e.g. :func:`instrument_axis`). Same arguments, same data, on any machine.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    cat = SyntheticCatalog(classes, catalog_seed)
    ax = np.linspace(400.0, 1800.0, points) if axis is None else np.asarray(axis, dtype=np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729]))
    y = np.repeat(np.arange(classes), per_class)
    rng.shuffle(y)
    X = np.stack([cat.sample(int(lbl), ax, rng) for lbl in y]).astype(np.float32)
    return SpectralDataset(
        X=X,
        axis=ax,
        y=y.astype(np.int64),
        classes=tuple(cat.names),
        provenance={
            "source": "synthetic",
            "generator": "spectral_core.synth",
            "classes": classes,
            "per_class": per_class,
            "seed": seed,
            "catalog_seed": catalog_seed,
        },
    )
