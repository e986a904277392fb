"""device_drivers: spectrometers behind one :class:`Spectrometer` protocol, opened by URL.

Depends on spectral_core, numpy and pyserial only (never torch/onnx/shap). Schemes: ``serial://``, ``tcp://``,
``sim://``, ``replay://``, ``seabreeze://`` (see :func:`open_device`). The simulated instrument
(:class:`SimulatedInstrument`) speaks the real protocols over a real pty or TCP socket;
:mod:`device_drivers.memory` runs them over an in-memory link. Nothing here needs a POSIX system but the pty
simulation (``import device_drivers`` works on Windows).
"""

from device_drivers._base import DeviceInfo, RejectedFrame, Spectrometer
from device_drivers.errors import (
    DeviceDisconnectedError,
    DeviceSettingError,
    DeviceTimeoutError,
    DeviceURLError,
    DriverError,
    ProtocolError,
    SourceExhaustedError,
    UnknownSchemeError,
)
from device_drivers.link import LinkOptions
from device_drivers.sim import FAULT_KINDS, SimConfig, SimulatedInstrument, TruthRecord, read_truth
from device_drivers.url import SCHEMES, open_device

__all__ = [
    "FAULT_KINDS",
    "SCHEMES",
    "DeviceDisconnectedError",
    "DeviceInfo",
    "DeviceSettingError",
    "DeviceTimeoutError",
    "DeviceURLError",
    "DriverError",
    "LinkOptions",
    "ProtocolError",
    "RejectedFrame",
    "SimConfig",
    "SimulatedInstrument",
    "SourceExhaustedError",
    "Spectrometer",
    "TruthRecord",
    "UnknownSchemeError",
    "open_device",
    "read_truth",
]
