"""The one exception hierarchy of ramanedge.

Every error raised on purpose by any ramanedge package derives from :class:`RamanEdgeError`. Subclasses also
inherit the builtin that matches their meaning (``ValueError`` for bad input, ``TimeoutError`` for a stalled
device, ``ImportError`` for a missing extra), in the style of pyserial's ``SerialException(IOError)``, so code
that already catches the builtin keeps working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AxisError",
    "ContractError",
    "DataError",
    "DeviceTimeoutError",
    "DriverError",
    "MissingExtraError",
    "ModelFileError",
    "PreprocessError",
    "ProviderError",
    "RamanEdgeError",
    "ReaderError",
    "ValidationReportError",
]


class RamanEdgeError(Exception):
    """Root of every error ramanedge raises on purpose."""


class DataError(RamanEdgeError, ValueError):
    """Spectral data that cannot be used as it is (NaN, wrong shape, ragged rows, ...)."""


class ReaderError(DataError):
    """A file (or folder) that cannot be read as spectra. The message names the file and what is wrong."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AxisError(DataError):
    """A spectral axis that is non-monotonic, duplicated, non-finite or does not cover what is asked."""


class PreprocessError(DataError):
    """A preprocessing step that cannot be applied to the given spectra or configuration."""


class ContractError(RamanEdgeError, ValueError):
    """A model contract that is missing, malformed, of another version, or does not match the data."""


class ValidationReportError(ContractError):
    """A validation report that cannot be read: not JSON, not a ramanedge report, another format version, or
    fields that do not match the schema (:mod:`spectral_core.validation_report`)."""


class ProviderError(RamanEdgeError, RuntimeError):
    """The requested onnxruntime execution provider is unknown, not available or did not load (never answered
    with a silent fallback)."""


class ModelFileError(RamanEdgeError, FileNotFoundError):
    """A model file that does not exist or is not a regular file."""


class MissingExtraError(RamanEdgeError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, feature: str, extra: str, missing: str | None = None) -> None:
        self.feature = feature
        self.extra = extra
        what = f" ({missing} is not installed)" if missing else ""
        super().__init__(f"{feature} needs the [{extra}] extra{what}: pip install 'ramanedge[{extra}]'")


class DriverError(RamanEdgeError, OSError):
    """A spectrometer or transport failed (unplugged, refused, protocol broken beyond recovery)."""


class DeviceTimeoutError(DriverError, TimeoutError):
    """A device did not answer within its timeout (measured on the monotonic clock)."""
