"""Errors of the device drivers, rooted in :mod:`spectral_core.errors`.

Everything a driver raises on purpose is a :class:`~spectral_core.errors.DriverError` (an ``OSError``), or a
``ValueError`` for what the caller asked: :class:`DeviceURLError` for a URL that cannot be opened as written,
:class:`DeviceSettingError` for a setting no device takes (an integration time of 0 us).
"""

from __future__ import annotations

from spectral_core.errors import DeviceTimeoutError, DriverError, RamanEdgeError

__all__ = [
    "DeviceDisconnectedError",
    "DeviceSettingError",
    "DeviceTimeoutError",
    "DeviceURLError",
    "DriverError",
    "ProtocolError",
    "SourceExhaustedError",
    "UnknownSchemeError",
]


class DeviceURLError(RamanEdgeError, ValueError):
    """A device URL that cannot be opened as written (bad path, unknown or malformed parameter)."""


class DeviceSettingError(RamanEdgeError, ValueError):
    """A setting outside what any device takes (integration time <= 0 us, a negative rate, an unknown fault)."""


class UnknownSchemeError(DeviceURLError):
    """A device URL whose scheme no driver handles. Never answered with a fallback driver."""


class ProtocolError(DriverError):
    """Bytes that break the protocol beyond what the parser recovers from, or a payload that is malformed."""


class DeviceDisconnectedError(DriverError, ConnectionError):
    """The link to the device is gone and reconnecting failed within the retry budget."""


class SourceExhaustedError(DriverError):
    """A finite source (a replayed recording) has no more spectra."""
