"""A source whose spectra get their wavenumber axis corrected by an instrument calibration."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_runtime.protocols import Source, Submit
from edge_runtime.records import Frame, bounded_text
from edge_runtime.sources._device import MAX_DEVICE_REASON

__all__ = ["CalibratedSource"]

logger = logging.getLogger(__name__)


class CalibratedSource:
    """A source whose spectra get their axis corrected by a wavenumber calibration before they are queued.

    Every frame's axis passes :func:`spectral_core.calibration.apply_calibration` (one shared corrected array
    per source axis, so batching is unchanged) and its record carries the calibration's SHA-256; a spectrum the
    correction cannot be applied to becomes that spectrum's ``calibration`` error record.
    """

    def __init__(self, inner: Source, calibration: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.calibration = calibration

    @property
    def axis(self) -> NDArray[np.float64] | None:
        """The source's corrected axis, when the source knows it before its first spectrum."""
        raw = self.inner.axis
        if raw is None:
            return None
        from spectral_core.calibration import CalibrationError, apply_calibration

        try:
            return apply_calibration(self.calibration, raw)[0]
        except CalibrationError as exc:
            logger.error("%s: the calibration does not apply to the instrument's axis: %s", self.url, exc)
            return None

    @property
    def finished(self) -> bool:
        return self.inner.finished

    def open(self) -> None:
        self.inner.open()

    def start(self, submit: Submit) -> None:
        from spectral_core.calibration import CalibrationError, apply_calibration

        cal = self.calibration

        def calibrated(frame: Frame) -> None:
            if frame.error is None and frame.axis is not None:
                try:
                    frame.axis, extra = apply_calibration(cal, frame.axis)
                    frame.metadata = {**frame.metadata, **extra}
                except CalibrationError as exc:
                    frame.error = ("calibration", bounded_text(str(exc), MAX_DEVICE_REASON))
            submit(frame)

        self.inner.start(calibrated)

    def stop(self) -> None:
        self.inner.stop()

    def join(self, timeout_s: float) -> None:
        self.inner.join(timeout_s)

    def status(self) -> dict[str, Any]:
        return {**self.inner.status(), "calibration": self.calibration.summary()}
