"""Helpers shared by the binary vendor readers (WDF, SPC, SPE, SIF): bounded reads that name the byte offset
and the field expected when a file is truncated, wavelength -> Raman shift conversion, and building the dataset.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._common import make_dataset
from spectral_core.spectrum import SpectralDataset

__all__ = ["MAX_BINARY_BYTES", "ByteView", "build_dataset", "load_binary", "raman_shift"]

logger = logging.getLogger(__name__)

# A vendor file larger than this is refused before it is read. Reading peaks at about 5x the file size (the
# bytes, then float64 and float32 copies in the data model), so 1 GiB bounds a read to ~5 GB; a map of 100,000
# spectra of 1,024 float32 points is 400 MB.
MAX_BINARY_BYTES = 1024**3


def load_binary(path: Path, fmt: str) -> ByteView:
    """Read the whole file ``path`` (at most :data:`MAX_BINARY_BYTES`) for the ``fmt`` reader.

    Raises:
        ReaderError: unreadable, empty or too large.
    """
    try:
        size = path.stat().st_size
        if size > MAX_BINARY_BYTES:
            raise ReaderError(path, f"{size} bytes is more than the {MAX_BINARY_BYTES} bytes a {fmt} file may have")
        data = path.read_bytes()
    except OSError as exc:
        raise ReaderError(path, f"cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ReaderError(path, f"empty file (expected a {fmt} file)")
    return ByteView(path, data, fmt)


class ByteView:
    """The bytes of one vendor file with bounded, named reads.

    Every read names the field it wants; a read past the end raises a :class:`ReaderError` that says which
    field was expected at which byte offset and where the file ends.
    """

    def __init__(self, path: Path, data: bytes, fmt: str) -> None:
        self.path = path
        self.data = data
        self.fmt = fmt

    def __len__(self) -> int:
        return len(self.data)

    def need(self, offset: int, size: int, what: str) -> None:
        """Check that ``size`` bytes of ``what`` exist at ``offset``."""
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ReaderError(
                self.path,
                f"truncated {self.fmt} file: expected {what} ({size} bytes) at byte {offset}, "
                f"but the file ends at byte {len(self.data)}",
            )

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[Any, ...]:
        """``struct.unpack_from(fmt, ...)`` at ``offset`` after a bounds check."""
        self.need(offset, struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, offset)

    def one(self, fmt: str, offset: int, what: str) -> Any:
        """The single value of ``fmt`` at ``offset``."""
        return self.unpack(fmt, offset, what)[0]

    def array(self, dtype: DTypeLike, count: int, offset: int, what: str) -> NDArray[Any]:
        """``count`` items of ``dtype`` at ``offset``: a read-only view on the file bytes (no copy)."""
        dt = np.dtype(dtype)
        if count < 0:
            raise ReaderError(self.path, f"{what}: negative count {count}")
        self.need(offset, count * dt.itemsize, what)
        return np.frombuffer(self.data, dtype=dt, count=count, offset=offset)

    def text(self, offset: int, size: int, what: str) -> str:
        """A fixed-size, NUL-padded text field (Latin-1, which decodes any byte)."""
        self.need(offset, size, what)
        return self.data[offset : offset + size].split(b"\x00", 1)[0].decode("latin-1").strip()


def raman_shift(
    wavelength_nm: NDArray[np.float64], excitation_nm: float | None, path: Path, source: str
) -> NDArray[np.float64]:
    """Raman shift in cm^-1 of absolute wavelengths (nm) for a laser at ``excitation_nm`` (nm).

    Args:
        source: where the excitation came from, for the error message ("the file", "excitation_nm=").

    Raises:
        ReaderError: no or non-positive excitation wavelength, or non-positive wavelengths.
    """
    if excitation_nm is None:
        raise ReaderError(
            path,
            "the axis is an absolute wavelength (nm), not a Raman shift, and the file names no laser "
            "wavelength; pass excitation_nm= (--excitation-nm, laser wavelength in nm) to convert it to cm^-1",
        )
    if not (np.isfinite(excitation_nm) and excitation_nm > 0):
        raise ReaderError(path, f"excitation wavelength from {source} must be positive, got {excitation_nm}")
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    if np.any(~np.isfinite(lam)) or np.any(lam <= 0):
        shown = f"{np.nanmin(lam):g} to {np.nanmax(lam):g} nm" if np.isfinite(lam).any() else "none finite"
        raise ReaderError(
            path, f"non-positive or non-finite wavelengths on the axis ({shown}): the file's wavelength "
            "calibration is missing or wrong; calibrate the spectrometer in its software first",
        )
    return 1e7 / float(excitation_nm) - 1e7 / lam


def build_dataset(
    path: Path,
    X: NDArray[Any],
    axis: NDArray[Any],
    *,
    reader: str,
    metadata: dict[str, Any],
    spectrum_metadata: list[dict[str, Any]] | None = None,
) -> SpectralDataset:
    """A dataset of the spectra ``X`` (rows) on ``axis`` (cm^-1), reversed when the file stores it decreasing.

    Per-spectrum facts (map coordinates, subfile z values, frame numbers) go to
    ``provenance["spectrum_metadata"]``, one dict a spectrum in file order.
    """
    ax = np.asarray(axis, dtype=np.float64)
    x2 = np.asarray(X)
    if ax.ndim == 1 and ax.size >= 2 and ax[0] > ax[-1]:
        ax = ax[::-1]
        x2 = x2[:, ::-1]
    prov: dict[str, Any] = {"source": str(path), "reader": reader, **metadata}
    meta: dict[str, Any] = {}
    if spectrum_metadata is not None:
        prov["spectrum_metadata"] = spectrum_metadata
        # the same facts as per-spectrum columns (SpectralDataset.meta): keys every spectrum has, scalar values
        keys = set.intersection(*(set(m) for m in spectrum_metadata)) if spectrum_metadata else set()
        for key in sorted(keys):
            values = [m[key] for m in spectrum_metadata]
            if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in values):
                meta[key] = np.asarray(values)
    return make_dataset(path, X=x2, axis=ax, provenance=prov, meta=meta)
