"""The simulated instrument, in modules by concern.

- :mod:`~device_drivers.sim.spectra`: what it emits (synthetic classes, or a real data set's spectra);
- :mod:`~device_drivers.sim.faults`: what each injected fault does to the bytes on the link (pure);
- :mod:`~device_drivers.sim.config`: :class:`SimConfig` and the ground truth it records (:class:`TruthRecord`);
- :mod:`~device_drivers.sim.instrument`: :class:`SimulatedInstrument`, the device side of the real protocols
  over a pty or a TCP socket, in a thread (the pty needs a POSIX system; TCP works everywhere);
- :mod:`~device_drivers.sim.driver`: :class:`SimSpectrometer`, the in-process ``sim://`` driver.
"""

from device_drivers.sim.config import SimConfig, TruthRecord, read_truth
from device_drivers.sim.driver import SimSpectrometer
from device_drivers.sim.faults import FAULT_KINDS
from device_drivers.sim.instrument import SimulatedInstrument
from device_drivers.sim.spectra import DatasetSpectra, SpectraSource, SpectrumGenerator

__all__ = [
    "FAULT_KINDS",
    "DatasetSpectra",
    "SimConfig",
    "SimSpectrometer",
    "SimulatedInstrument",
    "SpectraSource",
    "SpectrumGenerator",
    "TruthRecord",
    "read_truth",
]
