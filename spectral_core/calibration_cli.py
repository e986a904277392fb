"""``ramanedge calibrate``: fit an instrument's axis correction from a spectrum of a standard.

Base install only: the PNG plot needs matplotlib (the [train] extra), imported lazily; without it the
calibration JSON is still written and the plot is skipped with a message saying why.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spectral_core.calibration import STANDARDS, Calibration, calibrate
from spectral_core.cli import _add_read_options, read_options
from spectral_core.hashing import sha256_file

__all__ = ["configure_calibrate", "plot_calibration", "run_calibrate"]


def configure_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("spectrum", help="one spectrum of the standard, on the instrument's own axis")
    p.add_argument("--standard", required=True, choices=sorted(STANDARDS), help="the standard measured")
    p.add_argument("--out", required=True, help="the calibration JSON to write (e.g. instrument.json)")
    p.add_argument("--plot", help="the PNG to write (default: OUT with .png); needs matplotlib")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.add_argument("--order", type=int, choices=range(0, 4), metavar="0-3",
                   help="polynomial order (default: by the number of matched peaks)")
    p.add_argument("--max-offset", type=float, default=25.0, metavar="CM1",
                   help="largest axis error searched for, cm^-1 (default 25)")
    p.add_argument("--match-tol", type=float, default=3.0, metavar="CM1",
                   help="a peak matches a reference within this, cm^-1, once the offset is removed (default 3)")
    # --excitation-nm (a reading option) is also the laser wavelength that puts the neon lines on the shift axis.
    _add_read_options(p)


def run_calibrate(args: argparse.Namespace) -> int:
    from spectral_core.io import read_spectrum

    src = Path(args.spectrum)
    s = read_spectrum(src, **read_options(args))
    cal = calibrate(
        s.axis, s.intensities, args.standard, excitation_nm=args.excitation_nm, order=args.order,
        max_offset_cm1=args.max_offset, match_tol_cm1=args.match_tol, source_name=src.name,
        source_sha256=sha256_file(src), created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    out = cal.save(args.out)
    doc: dict[str, Any] = {"out": str(out), **cal.summary()}
    if not args.no_plot:
        png = Path(args.plot) if args.plot else out.with_suffix(".png")
        try:
            plot_calibration(cal, s.axis, s.intensities, png)
            doc["plot"] = str(png)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "matplotlib":
                raise
            print(  # noqa: T201 (a command's user message)
                f"ramanedge calibrate: matplotlib is not installed, so the plot was skipped ({out} was written); "
                "pip install 'ramanedge[train]' for the plot",
                file=sys.stderr,
            )
    print(json.dumps(doc))  # noqa: T201 (the command's result)
    return 0


def plot_calibration(cal: Calibration, axis: np.ndarray, intensities: np.ndarray, path: Path) -> Path:
    """Two panels: the standard's spectrum with the matched peaks, and the correction with its residuals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6.5), constrained_layout=True)
    a1.plot(axis, intensities, lw=0.8, color="0.2")
    for m in cal.matched:
        a1.axvline(m.measured_cm1, color="tab:blue", lw=0.6, alpha=0.6)
    for u in cal.unmatched_cm1:
        a1.axvline(u, color="tab:red", lw=0.6, ls=":", alpha=0.6)
    a1.set_xlabel("nominal Raman shift (cm$^{-1}$)")
    a1.set_ylabel("intensity")
    a1.set_title(f"{cal.standard}: {len(cal.matched)} peaks matched (blue), {len(cal.unmatched_cm1)} not (red)")
    x = np.asarray(axis, dtype=np.float64)
    a2.plot(x, cal.correct(x) - x, color="tab:blue", label=f"correction (order {cal.order})")
    meas = np.array([m.measured_cm1 for m in cal.matched])
    ref = np.array([m.reference_cm1 for m in cal.matched])
    a2.plot(meas, ref - meas, "o", color="tab:orange", label="reference - measured")
    a2.set_xlabel("nominal Raman shift (cm$^{-1}$)")
    a2.set_ylabel("shift correction (cm$^{-1}$)")
    a2.set_title(f"residual RMS {cal.rms_cm1:.3f} cm$^{{-1}}$, max {cal.max_abs_cm1:.3f}; sha256 {cal.sha256[:12]}")
    a2.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
