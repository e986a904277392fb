"""Wavenumber calibration of an instrument axis against a reference standard (numpy/scipy only).

A spectrum of a standard (polystyrene, paracetamol, cyclohexane, silicon, or a neon lamp) measured on the
instrument's nominal Raman-shift axis is searched for peaks; the peaks are matched to the standard's reference
positions, and a polynomial correction ``true_shift = nominal + p(nominal)`` is fitted to the matched pairs. Its order follows
the number of matched peaks (one peak: an offset only). The result, a :class:`Calibration`, is written as JSON
with the matched peaks, the residuals (cm^-1) and a hash, and corrects any axis of that instrument with
:meth:`Calibration.apply` (the daemon calls it once per source axis; results are cached per axis).

Reference positions (docs/calibration.md gives the tables and their sources):

* polystyrene, paracetamol (acetaminophen), cyclohexane: ASTM E1840-96 (2022), "Standard Guide for Raman Shift
  Standards for Spectrometer Calibration", average shifts in cm^-1;
* silicon: the first-order optical phonon, 520.45 cm^-1 (one peak: the correction is an offset);
* neon: Ne I emission lines (NIST Atomic Spectra Database, wavelengths in air, nm), converted to Raman shift
  with the excitation wavelength: ``shift = 1e7 / excitation_nm - 1e7 / line_nm``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from spectral_core.atomic import write_text_atomic
from spectral_core.errors import DataError
from spectral_core.hashing import sha256_json
from spectral_core.spectrum import check_axis

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_KEY",
    "STANDARDS",
    "Calibration",
    "CalibrationError",
    "MatchedPeak",
    "Standard",
    "apply_calibration",
    "calibrate",
    "find_peaks_cm1",
    "load_calibration",
    "reference_positions",
]

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "ramanedge-calibration"
#: The metadata/provenance key that carries the hash of the calibration a spectrum's axis was corrected with.
CALIBRATION_KEY = "calibration_sha256"
CALIBRATION_VERSION = 1
# A calibration file is a few kB; anything far larger is not one (bound the input before parsing it).
MAX_FILE_BYTES = 1 << 20
# Widest fitted order: a cubic follows the smooth distortion of a grating spectrometer's axis; higher orders
# only chase the peak-position noise of a dozen reference peaks.
MAX_ORDER = 3


class CalibrationError(DataError):
    """A calibration could not be made (too few peaks matched, wrong standard, poor fit) or read."""


@dataclass(frozen=True)
class Standard:
    """A calibration standard: reference peak positions and where they come from.

    Attributes:
        name: the standard's name on the command line.
        peaks: reference positions, cm^-1 Raman shift (``unit="cm^-1"``) or emission lines in nm (``"nm"``).
        unit: the unit of ``peaks``.
        source: the published table the values come from.
    """

    name: str
    peaks: tuple[float, ...]
    unit: Literal["cm^-1", "nm"]
    source: str


_ASTM = "ASTM E1840-96 (reapproved 2022), Table 1: average Raman shifts from seven laboratories"
# Every value below was checked against published transcriptions of its source (docs/calibration.md names
# them); tests/spectral_core/test_sc_calibration.py pins a few.

STANDARDS: dict[str, Standard] = {
    "polystyrene": Standard(
        "polystyrene",
        (620.9, 795.8, 1001.4, 1031.8, 1155.3, 1450.5, 1583.1, 1602.3, 2852.4, 2904.5, 3054.3),
        "cm^-1", _ASTM,
    ),
    "paracetamol": Standard(
        "paracetamol",
        (213.3, 329.2, 390.9, 465.1, 504.0, 651.6, 710.8, 797.2, 834.5, 857.9, 968.7, 1105.5, 1168.5, 1236.8,
         1278.5, 1323.9, 1371.5, 1515.1, 1561.6, 1648.4, 2931.1, 3064.6, 3102.4, 3326.6),
        "cm^-1", _ASTM + " (4-acetamidophenol)",
    ),
    "cyclohexane": Standard(
        "cyclohexane",
        (384.1, 426.3, 801.3, 1028.3, 1157.6, 1266.4, 1444.4, 2664.4, 2852.9, 2923.8, 2938.3),
        "cm^-1", _ASTM,
    ),
    "silicon": Standard(
        "silicon", (520.45,), "cm^-1",
        "crystalline silicon, first-order phonon at room temperature (NMIJ CRM 5606-a: 520.45 +- 0.28 cm^-1, k=2; "
        "Itoh & Shirono, J. Raman Spectrosc. 2020, doi:10.1002/jrs.6003)",
    ),
    "neon": Standard(
        "neon",
        (540.056, 585.249, 588.190, 594.483, 597.553, 603.000, 607.434, 609.616, 614.306, 616.359, 621.728,
         626.650, 630.479, 633.443, 638.299, 640.225, 650.653, 653.288, 659.895, 667.828, 671.704, 692.947,
         703.241, 717.394, 724.517, 743.890, 747.244, 748.887, 753.577, 754.404, 794.318, 808.246, 811.855,
         813.641, 825.938, 830.033, 836.575, 837.761, 841.843, 849.536, 863.465, 865.438, 878.062,
         885.387, 891.950, 914.867, 920.176, 930.085, 932.651, 942.538, 953.416, 954.741),
        "nm", "NIST Atomic Spectra Database, strong Ne I lines, wavelengths in air",
    ),
}


def reference_positions(standard: str, excitation_nm: float | None = None) -> NDArray[np.float64]:
    """The standard's reference peaks as Raman shifts, cm^-1, ascending.

    Raises:
        CalibrationError: an unknown standard, or neon without a valid excitation wavelength.
    """
    std = _standard(standard)
    peaks = np.asarray(std.peaks, dtype=np.float64)
    if std.unit == "nm":
        if excitation_nm is None or not (math.isfinite(excitation_nm) and 150.0 < excitation_nm < 2000.0):
            raise CalibrationError(
                f"the {std.name} standard is a list of emission lines in nm: give the excitation wavelength "
                f"(--excitation-nm, 150-2000 nm) to convert them to Raman shift, got {excitation_nm}"
            )
        peaks = 1e7 / excitation_nm - 1e7 / peaks
    return np.sort(peaks)


def _standard(name: str) -> Standard:
    std = STANDARDS.get(str(name).lower())
    if std is None:
        raise CalibrationError(f"unknown standard {name!r}; choose from {', '.join(STANDARDS)}")
    return std


# -- peaks ----------------------------------------------------------------------------------------------


def _noise(y: NDArray[np.float64]) -> float:
    """Robust noise level of a spectrum: the MAD of its first differences, scaled to a Gaussian sigma."""
    d = np.diff(y)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2.0), 1e-12 * max(1.0, float(np.max(np.abs(y)))))


def _lorentz(  # noqa: PLR0917 (curve_fit passes the parameters positionally)
    x: NDArray[np.float64], x0: float, gamma: float, amp: float, c0: float, c1: float
) -> Any:
    return amp / (1.0 + ((x - x0) / gamma) ** 2) + c0 + c1 * (x - x0)


def _refine(x: NDArray[np.float64], y: NDArray[np.float64], i: int, half: int) -> float:
    """Sub-pixel position (cm^-1) of the peak at pixel ``i``: a Lorentzian on a sloped background fitted to
    ``half`` pixels either side; the three-point parabola vertex when that fit fails or wanders off."""
    from scipy.optimize import curve_fit

    lo, hi = max(0, i - half), min(x.size, i + half + 1)
    xs, ys = x[lo:hi], y[lo:hi]
    parabola = float(x[i])
    if 0 < i < x.size - 1:
        y0, y1, y2 = y[i - 1], y[i], y[i + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            t = 0.5 * (y0 - y2) / den
            parabola = float(np.interp(i + t, np.arange(x.size), x))
    if xs.size < 6:
        return parabola
    base = float(min(ys[0], ys[-1]))
    width = max(float(xs[-1] - xs[0]) / 4.0, 1e-6)
    p0 = [float(x[i]), width, float(y[i]) - base, base, 0.0]
    try:
        popt, _ = curve_fit(_lorentz, xs, ys, p0=p0, maxfev=2000)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return parabola
    x0 = float(popt[0])
    step = float(np.median(np.diff(xs)))
    if not (math.isfinite(x0) and abs(x0 - x[i]) <= step and popt[2] > 0):
        return parabola
    return x0


def find_peaks_cm1(
    axis: ArrayLike, intensities: ArrayLike, *, min_snr: float = 6.0, max_peaks: int = 200
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Peaks of a spectrum: sub-pixel positions (cm^-1, ascending) and their prominences (intensity units).

    A peak must stand ``min_snr`` noise sigmas and 1% of the strongest peak's prominence above its
    surroundings. At most the ``max_peaks`` most prominent are kept.

    Raises:
        CalibrationError: a spectrum that is too short, not finite, or holds no peak at all.
    """
    from scipy.signal import find_peaks, peak_widths

    x = check_axis(axis, what="standard spectrum axis")
    y = np.asarray(intensities, dtype=np.float64)
    if y.shape != x.shape:
        raise CalibrationError(f"{y.size} intensity values for an axis of {x.size} points")
    if x.size < 16:
        raise CalibrationError(f"a standard spectrum needs at least 16 points, got {x.size}")
    if not np.isfinite(y).all():
        raise CalibrationError(f"the standard spectrum holds {int((~np.isfinite(y)).sum())} NaN/inf value(s)")
    noise = _noise(y)
    idx, props = find_peaks(y, prominence=min_snr * noise)
    if idx.size == 0:
        raise CalibrationError(
            f"no peak stands {min_snr:g} noise sigmas above the spectrum ({x[0]:g}-{x[-1]:g} cm^-1): is this "
            "a spectrum of the standard, with enough signal?"
        )
    prom = np.asarray(props["prominences"], dtype=np.float64)
    keep = prom >= 0.01 * prom.max()
    idx, prom = idx[keep], prom[keep]
    order = np.argsort(-prom)[:max_peaks]
    idx, prom = idx[order], prom[order]
    widths = peak_widths(y, idx, rel_height=0.5)[0]
    pos = np.array([
        _refine(x, y, int(i), int(np.clip(round(float(w)), 3, 15))) for i, w in zip(idx, widths, strict=True)
    ])
    s = np.argsort(pos)
    return pos[s], prom[s]


# -- matching and fitting ---------------------------------------------------------------------------------


def _order_for(n: int) -> int:
    """Polynomial order for ``n`` matched peaks: offset (1), linear (2-3), quadratic (4-5), cubic (6+)."""
    if n <= 1:
        return 0
    if n <= 3:
        return 1
    if n <= 5:
        return 2
    return MAX_ORDER


def _assign(
    predicted: NDArray[np.float64], refs: NDArray[np.float64], tol: float
) -> list[tuple[int, int]]:
    """One-to-one (reference index, peak index) pairs: each reference takes the nearest predicted peak within
    ``tol`` cm^-1; a peak wanted by two references goes to the closer one."""
    best: dict[int, tuple[float, int]] = {}
    for j, r in enumerate(refs):
        if predicted.size == 0:
            break
        k = int(np.argmin(np.abs(predicted - r)))
        d = abs(float(predicted[k] - r))
        if d <= tol and (k not in best or d < best[k][0]):
            best[k] = (d, j)
    return sorted((j, k) for k, (_, j) in best.items())


def _best_offset(
    peaks: NDArray[np.float64], prom: NDArray[np.float64], refs: NDArray[np.float64], max_offset: float, tol: float
) -> float:
    """The constant offset (measured - reference, cm^-1) that matches the most references, strong peaks first."""
    weight = prom / prom.max()
    cands = (peaks[:, None] - refs[None, :]).ravel()
    cands = cands[np.abs(cands) <= max_offset]
    best, best_score = 0.0, (-1.0, -1.0)
    for d in np.unique(np.round(cands, 3)):
        pairs = _assign(peaks - d, refs, tol)
        score = (float(len(pairs)), float(sum(weight[k] for _, k in pairs)))
        if score > best_score:
            best, best_score = float(d), score
    return best


class MatchedPeak(BaseModel):
    """One reference peak found in the spectrum, cm^-1."""

    model_config = ConfigDict(extra="forbid")

    reference_cm1: float
    measured_cm1: float = Field(description="the peak's position on the instrument's nominal axis")
    corrected_cm1: float = Field(description="the measured position after the correction")
    residual_cm1: float = Field(description="corrected - reference")


class Calibration(BaseModel):
    """An axis correction of one instrument: ``true_shift = nominal + p(nominal)``, cm^-1.

    ``coefficients`` are those of the :class:`numpy.polynomial.Polynomial` ``p`` on ``domain`` (mapped to
    [-1, 1]); order 0 is a constant offset.
    ``sha256`` hashes everything but itself and ``created``, so the same correction always has the same hash.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["ramanedge-calibration"] = "ramanedge-calibration"
    version: Literal[1] = 1
    standard: str
    reference_source: str
    excitation_nm: float | None = None
    variable: Literal["raman_shift_cm1"] = "raman_shift_cm1"
    order: int = Field(ge=0, le=MAX_ORDER)
    domain: tuple[float, float]
    coefficients: list[float]
    fit_range_cm1: tuple[float, float] = Field(description="nominal range spanned by the matched peaks")
    matched: list[MatchedPeak]
    unmatched_cm1: list[float] = Field(default_factory=list, description="reference peaks in range not found")
    rms_cm1: float
    max_abs_cm1: float
    source_name: str = ""
    source_sha256: str = ""
    created: str = ""
    sha256: str = ""

    _cache: OrderedDict[bytes, NDArray[np.float64]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def content_hash(self) -> str:
        """SHA-256 of the correction and its evidence (all fields but ``sha256`` and ``created``)."""
        return sha256_json(self.model_dump(mode="json", exclude={"sha256", "created"}))

    def correct(self, nominal: ArrayLike) -> NDArray[np.float64]:
        """The correction at ``nominal`` cm^-1 (no checks): the true Raman shift, cm^-1."""
        return _eval(np.asarray(self.coefficients, dtype=np.float64), np.asarray(nominal, dtype=np.float64),
                     self.domain)

    def apply(self, axis: ArrayLike) -> NDArray[np.float64]:
        """The corrected axis (cm^-1) of spectra measured on the nominal ``axis``; read-only, cached per axis.

        The same array object is returned for equal axes, so a caller that groups spectra by axis object (the
        engine) keeps one group per instrument axis.

        Raises:
            CalibrationError: the correction makes the axis non-increasing (applied far outside its range).
        """
        a = check_axis(axis, what="axis to calibrate")
        key = a.tobytes()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        out = self.correct(a)
        if out.size > 1 and not (np.all(np.isfinite(out)) and np.all(np.diff(out) > 0)):
            raise CalibrationError(
                f"calibration {self.sha256[:12]} ({self.standard}, fitted on {self.fit_range_cm1[0]:g}-"
                f"{self.fit_range_cm1[1]:g} cm^-1) does not keep the axis {a[0]:g}-{a[-1]:g} cm^-1 increasing: "
                "it was made for another axis range; calibrate with a standard that covers this range"
            )
        out.setflags(write=False)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return out

    def summary(self) -> dict[str, Any]:
        """A short JSON-able description (for logs, /api/state and the command line)."""
        return {
            "standard": self.standard,
            "sha256": self.sha256,
            "order": self.order,
            "matched": len(self.matched),
            "unmatched": len(self.unmatched_cm1),
            "rms_cm1": round(self.rms_cm1, 4),
            "max_abs_cm1": round(self.max_abs_cm1, 4),
            "fit_range_cm1": list(self.fit_range_cm1),
        }

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the calibration JSON atomically; returns the path."""
        return write_text_atomic(path, self.to_json())


def apply_calibration(
    calibration: Calibration | None, axis: ArrayLike
) -> tuple[NDArray[np.float64], dict[str, str]]:
    """What a source does with each spectrum: ``(corrected axis, metadata to record)``.

    With no calibration, the axis as it is and no metadata. The corrected axis is one shared read-only array
    per source axis (see :meth:`Calibration.apply`), so the engine still batches a source's spectra together.

    Raises:
        CalibrationError: the correction cannot be applied to this axis (record it as that spectrum's error).
    """
    if calibration is None:
        return np.asarray(axis, dtype=np.float64), {}
    return calibration.apply(axis), {CALIBRATION_KEY: calibration.sha256}


def load_calibration(path: str | Path) -> Calibration:
    """Read and check a calibration file (format, fields, hash).

    Raises:
        CalibrationError: unreadable, too large, not a calibration, or edited since it was written.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CalibrationError(f"{p}: {size} bytes is too large for a calibration file (<= {MAX_FILE_BYTES})")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{p}: cannot read the calibration file ({exc})") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise CalibrationError(f"{p}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"{p}: not a ramanedge calibration (format must be {CALIBRATION_FORMAT!r})")
    try:
        cal = Calibration.model_validate(raw)
    except ValidationError as exc:
        raise CalibrationError(f"{p}: invalid calibration: {exc}") from None
    if cal.content_hash() != cal.sha256:
        raise CalibrationError(f"{p}: its sha256 does not match its content (edited or corrupted); calibrate again")
    return cal


def calibrate(
    axis: ArrayLike,
    intensities: ArrayLike,
    standard: str,
    *,
    excitation_nm: float | None = None,
    order: int | None = None,
    max_offset_cm1: float = 25.0,
    match_tol_cm1: float = 3.0,
    max_rms_cm1: float = 1.5,
    min_fraction: float = 0.5,
    source_name: str = "",
    source_sha256: str = "",
    created: str = "",
) -> Calibration:
    """Fit the axis correction of an instrument from one spectrum of a standard.

    Args:
        axis: the instrument's nominal Raman-shift axis, cm^-1.
        intensities: the standard's spectrum on ``axis``.
        standard: one of :data:`STANDARDS`.
        excitation_nm: laser wavelength, nm (neon only: it converts the emission lines to Raman shift).
        order: polynomial order (default: by the number of matched peaks, at most :data:`MAX_ORDER`).
        max_offset_cm1: the largest axis error searched for, cm^-1.
        match_tol_cm1: a peak matches a reference within this, cm^-1, once the offset is removed.
        max_rms_cm1: refuse a fit whose residual RMS exceeds this, cm^-1.
        min_fraction: refuse unless this share of the reference peaks inside the axis range is matched.

    Raises:
        CalibrationError: no reference peak in range, too few matched (wrong standard, weak signal), a
            poor fit, or bad input.
    """
    std = _standard(standard)
    x = check_axis(axis, what="standard spectrum axis")
    refs_all = reference_positions(std.name, excitation_nm)
    inside = refs_all[(refs_all >= x[0] + 2.0) & (refs_all <= x[-1] - 2.0)]
    if inside.size == 0:
        raise CalibrationError(
            f"the spectrum's axis {x[0]:g}-{x[-1]:g} cm^-1 covers none of the {std.name} reference peaks "
            f"({refs_all[0]:g}-{refs_all[-1]:g} cm^-1)"
        )
    peaks, prom = find_peaks_cm1(x, intensities)
    need = 1 if inside.size == 1 else max(2, math.ceil(min_fraction * inside.size))
    # 1. The constant offset that explains most references, 2. refits of increasing order, rematching each time.
    offset = _best_offset(peaks, prom, inside, max_offset_cm1, match_tol_cm1)
    pairs = _assign(peaks - offset, inside, match_tol_cm1)
    coef_fit = None
    for _ in range(4):
        if len(pairs) < need:
            break
        m = np.array([peaks[k] for _, k in pairs])
        r = np.array([inside[j] for j, _ in pairs])
        deg = _order_for(len(pairs)) if order is None else min(int(order), len(pairs) - 1)
        coef_fit = _fit(m, r, deg, (float(x[0]), float(x[-1])))
        new = _assign(_eval(coef_fit, peaks, (float(x[0]), float(x[-1]))), inside, match_tol_cm1)
        if new == pairs:
            break
        pairs = new
    if len(pairs) < need or coef_fit is None:
        found = ", ".join(f"{inside[j]:g}" for j, _ in pairs) or "none"
        raise CalibrationError(
            f"only {len(pairs)} of the {inside.size} {std.name} reference peaks in {x[0]:g}-{x[-1]:g} cm^-1 "
            f"were found within {match_tol_cm1:g} cm^-1 after an offset of up to {max_offset_cm1:g} cm^-1 "
            f"(matched: {found}; {need} needed): is this a spectrum of {std.name}, with enough signal?"
        )
    domain = (float(x[0]), float(x[-1]))
    m = np.array([peaks[k] for _, k in pairs])
    r = np.array([inside[j] for j, _ in pairs])
    deg = _order_for(len(pairs)) if order is None else min(int(order), len(pairs) - 1)
    if order is not None and not 0 <= int(order) <= MAX_ORDER:
        raise CalibrationError(f"polynomial order must be 0-{MAX_ORDER}, got {order}")
    coef = _fit(m, r, deg, domain)
    corrected = _eval(coef, m, domain)
    resid = corrected - r
    rms = float(np.sqrt(np.mean(resid**2)))
    if rms > max_rms_cm1:
        raise CalibrationError(
            f"the {std.name} peaks fit poorly: residual RMS {rms:.2f} cm^-1 (> {max_rms_cm1:g}) over {len(pairs)} "
            "peaks; check the standard, the excitation wavelength and the signal"
        )
    matched_refs = {j for j, _ in pairs}
    cal = Calibration(
        standard=std.name,
        reference_source=std.source,
        excitation_nm=excitation_nm,
        order=deg,
        domain=domain,
        coefficients=[float(c) for c in coef],
        fit_range_cm1=(float(m.min()), float(m.max())),
        matched=[
            MatchedPeak(reference_cm1=float(ri), measured_cm1=round(float(mi), 4),
                        corrected_cm1=round(float(ci), 4), residual_cm1=round(float(di), 4))
            for ri, mi, ci, di in zip(r, m, corrected, resid, strict=True)
        ],
        unmatched_cm1=[float(v) for j, v in enumerate(inside) if j not in matched_refs],
        rms_cm1=rms,
        max_abs_cm1=float(np.max(np.abs(resid))),
        source_name=source_name,
        source_sha256=source_sha256,
        created=created,
    )
    cal.sha256 = cal.content_hash()
    logger.info(
        "calibration on %s: %d of %d peaks matched, order %d, RMS %.3f cm^-1", std.name, len(pairs), inside.size,
        deg, rms,
    )
    return cal


def _fit(m: NDArray[np.float64], r: NDArray[np.float64], deg: int, domain: tuple[float, float]) -> NDArray[np.float64]:
    from numpy.polynomial import Polynomial

    p = Polynomial.fit(m, r - m, deg, domain=list(domain), window=[-1.0, 1.0])
    return np.asarray(p.coef, dtype=np.float64)


def _eval(coef: NDArray[np.float64], v: NDArray[np.float64], domain: tuple[float, float]) -> NDArray[np.float64]:
    from numpy.polynomial import Polynomial

    return np.asarray(v + Polynomial(coef, domain=list(domain), window=[-1.0, 1.0])(v), dtype=np.float64)
