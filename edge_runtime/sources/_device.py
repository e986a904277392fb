"""Spectra from an instrument opened by device URL (serial://, tcp://, sim://, replay://, seabreeze://)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from edge_runtime.protocols import Submit
from edge_runtime.records import Frame, bounded_text
from spectral_core.errors import DriverError, RamanEdgeError

__all__ = ["MAX_DEVICE_REASON", "DeviceSource"]

logger = logging.getLogger(__name__)

#: characters of a driver's error message kept in a device error record
MAX_DEVICE_REASON = 2000


class DeviceSource:
    """Spectra from an instrument opened with :func:`device_drivers.open_device`.

    The device is opened in :meth:`start`, so a bad URL or an absent instrument fails start-up loudly. A link
    that fails later is recorded as an error and reopened with back-off until the daemon stops. Every frame
    the driver rejects (malformed, damaged on the link, or missing from a sequence gap) is recorded as its own
    error with the driver's reason and the seq when known (from the driver's ``events()``; a driver without
    it is read with ``stream()`` and its sequence gaps and ``lost`` counter are recorded instead).

    Args:
        url: any device_drivers URL (serial://, tcp://, sim://, replay://, seabreeze://).
        reconnect_s: first back-off before reopening a failed device, s (doubles to 30 s).
    """

    def __init__(self, url: str, *, reconnect_s: float = 0.5) -> None:
        self.url = url
        self.reconnect_s = reconnect_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dev: Any = None
        self._dev_lock = threading.Lock()
        self.frames = 0
        self.errors = 0
        self.exhausted = False
        self.state = "new"
        self.axis: np.ndarray[Any, np.dtype[np.float64]] | None = None

    def _open(self) -> Any:
        from device_drivers import open_device

        return open_device(self.url)

    def open(self) -> None:
        """Open the device now (so a bad URL fails start-up) and learn its axis (cm^-1) when it says."""
        if self._dev is not None:
            return
        self._dev = self._open()
        self.state = "open"
        try:
            self.axis = np.asarray(self._dev.info.raman_shift(), dtype=np.float64)
        except (DriverError, RamanEdgeError, ValueError) as exc:
            logger.warning("%s: axis unknown before the first spectrum: %s", self.url, exc)

    def start(self, submit: Submit) -> None:
        self.open()
        self._thread = threading.Thread(target=self._run, args=(submit,), name=f"source:{self.url}", daemon=True)
        self._thread.start()

    def _error(self, submit: Submit, reason: str, ref: str = "link") -> None:
        self.errors += 1
        reason = bounded_text(reason, MAX_DEVICE_REASON)  # a driver's message may quote what the device sent
        submit(Frame(source=self.url, ref=ref, axis=None, intensities=None, error=("device", reason)))

    def _run(self, submit: Submit) -> None:
        from device_drivers import RejectedFrame
        from device_drivers.errors import SourceExhaustedError

        backoff = self.reconnect_s
        while not self._stop.is_set():
            dev = self._dev
            if dev is None:
                try:
                    dev = self._open()
                except (DriverError, RamanEdgeError, OSError) as exc:
                    self.state = f"reconnecting: {exc}"
                    logger.warning("%s: reopen failed (%s); next try in %.1f s", self.url, exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                with self._dev_lock:
                    if self._stop.is_set():
                        dev.close()
                        break
                    self._dev = dev
                self.state = "open"
                logger.info("%s: reopened", self.url)
            base_lost = int(dev.stats.get("lost", 0))
            accounted = 0
            events = getattr(dev, "events", None)
            explicit = callable(events)
            items = events if callable(events) else dev.stream
            try:
                for spec in items():
                    backoff = self.reconnect_s
                    if isinstance(spec, RejectedFrame):
                        self._rejected(submit, dev, spec)
                        if self._stop.is_set():
                            break
                        continue
                    if explicit:
                        submit(self._frame(spec))
                        if self._stop.is_set():
                            break
                        continue
                    seq = spec.metadata.get("seq")
                    gap = int(spec.metadata.get("lost_before") or 0)
                    if gap > 0:
                        # the driver saw a jump in sequence numbers: those spectra never arrived
                        self._error(submit, f"{gap} spectrum(s) lost on the link before seq {seq} (sequence gap)",
                                    ref=f"lost-before-seq={seq}")
                        accounted += gap
                    submit(self._frame(spec))
                    lost = int(dev.stats.get("lost", 0)) - base_lost
                    if lost > accounted:
                        self._error(submit, f"{lost - accounted} spectrum(s) lost or garbled on the link "
                                            f"(driver counter, near seq {seq})", ref=f"lost-near-seq={seq}")
                        accounted = lost
                    if self._stop.is_set():
                        break
            except SourceExhaustedError:
                self.exhausted = True
                logger.info("%s: source exhausted after %d spectra", self.url, self.frames)
                break
            except (DriverError, OSError, RamanEdgeError, ValueError) as exc:
                # a broken link, or a payload the driver could not turn into a spectrum: recorded, reopened
                if self._stop.is_set():
                    break  # the daemon closed the device to stop a blocking read
                self._error(submit, f"{type(exc).__name__}: {exc}")
                logger.warning("%s: %s; reopening", self.url, exc)
            finally:
                with self._dev_lock:
                    self._dev = None
                try:
                    dev.close()
                except (DriverError, OSError) as exc:
                    logger.debug("%s: close: %s", self.url, exc)
            if self._stop.is_set() or self.exhausted:
                break
        self.state = "exhausted" if self.exhausted else "stopped"

    def _rejected(self, submit: Submit, dev: Any, bad: Any) -> None:
        """One error record for a frame the driver rejected, with its reason and seq (when known)."""
        self.errors += 1
        meta: dict[str, Any] = {"rejected": bad.kind}
        if bad.seq is not None:
            meta["seq"] = int(bad.seq)
        try:
            meta["device_serial"] = dev.info.serial
        except (DriverError, RamanEdgeError, AttributeError) as exc:  # not known yet: the record says the rest
            logger.debug("%s: device serial unknown for a rejected frame: %s", self.url, exc)
        ref = f"seq={bad.seq}" if bad.seq is not None else f"rejected-{self.errors}"
        submit(Frame(source=self.url, ref=ref, axis=None, intensities=None, metadata=meta,
                     t_received=bad.t_monotonic, acquired_at=bad.t_wall, error=("device", bad.reason)))

    def _frame(self, spec: Any) -> Frame:
        self.frames += 1
        meta = dict(spec.metadata)
        seq = meta.get("seq")
        t_mono = meta.get("t_monotonic")
        return Frame(
            source=self.url,
            ref=f"seq={seq}" if seq is not None else f"n={self.frames}",
            axis=spec.axis,
            intensities=spec.intensities,
            metadata=meta,
            t_received=float(t_mono) if isinstance(t_mono, (int, float)) else time.monotonic(),
            acquired_at=meta.get("t_wall"),
        )

    def stop(self) -> None:
        self._stop.set()
        with self._dev_lock:
            dev = self._dev
        if dev is not None:
            try:
                dev.close()
            except (DriverError, OSError) as exc:
                logger.debug("%s: close: %s", self.url, exc)

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "state": self.state, "spectra": self.frames, "errors": self.errors}
