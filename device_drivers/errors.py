"""Errors of the device drivers, rooted in :mod:`spectral_core.errors`.

Everything a driver raises on purpose is a :class:`~spectral_core.errors.DriverError` (an ``OSError``) or,
for a bad URL, a :class:`DeviceURLError` (a ``ValueError``).
"""

from __future__ import annotations

from spectral_core.errors import DeviceTimeoutError, DriverError, RamanEdgeError

__all__ = [
    "DeviceDisconnectedError",
    "DeviceTimeoutError",
    "DeviceURLError",
    "DriverError",
    "ProtocolError",
    "SourceExhaustedError",
    "UnknownSchemeError",
]


class DeviceURLError(RamanEdgeError, ValueError):
    """A device URL that cannot be opened as written (bad path, unknown or malformed parameter)."""


class UnknownSchemeError(DeviceURLError):
    """A device URL whose scheme no driver handles. Never answered with a fallback driver."""


class ProtocolError(DriverError):
    """Bytes that break the protocol beyond what the parser recovers from, or a payload that is malformed."""


class DeviceDisconnectedError(DriverError, ConnectionError):
    """The link to the device is gone and reconnecting failed within the retry budget."""


class SourceExhaustedError(DriverError):
    """A finite source (a replayed recording) has no more spectra."""
