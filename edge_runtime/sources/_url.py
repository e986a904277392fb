"""The source for a URL: ``watch://`` drop folders, anything else an instrument, either with a calibration."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.protocols import Source
from edge_runtime.sources._calibrated import CalibratedSource
from edge_runtime.sources._device import DeviceSource
from edge_runtime.sources._watch import WatchSource

__all__ = ["open_source"]


def open_source(url: str, ledger: Ledger, **watch_options: Any) -> Source:
    """The source for ``url``: ``watch://`` drop folders here, anything else through device_drivers.

    A ``calibration=instrument.json`` option (any source) corrects every spectrum's axis with that file
    (``ramanedge calibrate``); the option is taken out of the URL the source itself sees, so the source's
    identity in the ledger does not change when a calibration is added or renewed.
    """
    if "://" not in url:
        raise SettingsError(f"source {url!r} is not a URL (e.g. serial:///dev/ttyUSB0, sim://, watch:///dir)")
    inner_url, cal_path = _split_calibration(url)
    src: Source = WatchSource(inner_url, ledger, **watch_options) if inner_url.startswith("watch:") else (
        DeviceSource(inner_url))
    if cal_path is None:
        return src
    from spectral_core.calibration import CalibrationError, load_calibration

    try:
        calibration = load_calibration(cal_path)
    except CalibrationError as exc:
        raise SettingsError(f"{url}: {exc}") from None
    return CalibratedSource(src, calibration)


def _split_calibration(url: str) -> tuple[str, str | None]:
    """(``url`` without its ``calibration=`` option, that option's path or None)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    # the other options stay exactly as written (no re-encoding): the source parses them itself
    kept, paths = [], []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == "calibration":
            paths.append(unquote(value))
        else:
            kept.append(item)
    if not paths:
        return url, None
    if len(paths) > 1 or not paths[0]:
        raise SettingsError(f"{url}: give calibration= once, with the path of a `ramanedge calibrate` file")
    return base + ("?" + "&".join(kept) if kept else ""), paths[0]
