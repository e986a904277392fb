"""Where spectra come from: instruments opened by device URL, and ``watch://`` drop folders.

A source runs in its own thread and hands :class:`~edge_runtime.records.Frame` objects to ``submit`` (which
blocks while the daemon's bounded queue is full: back-pressure, never a dropped spectrum). Everything a
source cannot read still becomes a frame, with ``error`` set, so it ends in the ledger with its reason.

One job a module:

- :mod:`edge_runtime.protocols` holds the :class:`Source` protocol (what the daemon requires of a source) and
  the ``submit`` callback type; they are re-exported here.
- ``_device``: :class:`DeviceSource`, an instrument opened with :func:`device_drivers.open_device`.
- ``_calibrated``: :class:`CalibratedSource`, any source with its axis corrected by a calibration file.
- ``_events`` (and ``_inotify``): how a drop folder learns of new files (inotify, watchdog, polling).
- ``_watch``: :class:`WatchSource`, the drop folder's claim / read / commit / move-on state machine.
- ``_names``, ``_files``, ``_parse``: a dropped file's reference, filesystem steps, and its spectra.
- ``_url``: :func:`open_source`, the source for a URL.
"""

from __future__ import annotations

from edge_runtime.protocols import Source, Submit
from edge_runtime.settings import DEFAULT_TEMP_SUFFIXES
from edge_runtime.sources._calibrated import CalibratedSource
from edge_runtime.sources._device import DeviceSource
from edge_runtime.sources._events import EVENT_BACKENDS
from edge_runtime.sources._names import input_ref, name_of_ref
from edge_runtime.sources._url import open_source
from edge_runtime.sources._watch import LINK_POLICIES, WatchSource, watch_path

__all__ = [
    "DEFAULT_TEMP_SUFFIXES",
    "EVENT_BACKENDS",
    "LINK_POLICIES",
    "CalibratedSource",
    "DeviceSource",
    "Source",
    "Submit",
    "WatchSource",
    "input_ref",
    "name_of_ref",
    "open_source",
    "watch_path",
]
