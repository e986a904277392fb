"""How a drop folder learns of new files: inotify on Linux, watchdog elsewhere, polling as the last resort.

Every backend has the same small interface: ``wait(timeout_s) -> (names, events_lost)``, ``take_states()``
(which files a writer still holds open, inotify only), ``wakeup()``, ``close()``, and ``name`` / ``dead``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TypeAlias, get_args

from edge_runtime.errors import SettingsError
from edge_runtime.settings import ServeSettings
from edge_runtime.sources._inotify import Inotify
from edge_runtime.sources._inotify import available as inotify_available

__all__ = ["EVENT_BACKENDS", "Events", "PollOnly", "WatchdogEvents", "open_events"]

logger = logging.getLogger(__name__)


class PollOnly:
    """No filesystem events: the folder is only scanned (network shares, or when asked)."""

    name = "poll"
    dead = False

    def __init__(self) -> None:
        self._wake = threading.Event()

    def wait(self, timeout_s: float) -> tuple[set[str], bool]:
        self._wake.wait(timeout_s)
        self._wake.clear()
        return set(), False

    def take_states(self) -> dict[str, bool]:
        """No open/close events here: every file is judged by the settle check alone."""
        return {}

    def wakeup(self) -> None:
        self._wake.set()

    def close(self) -> None:
        pass


class WatchdogEvents(PollOnly):
    """Filesystem events through watchdog (macOS, Windows, or Linux without usable inotify)."""

    name = "watchdog"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        names: set[str] = set()
        lock = threading.Lock()
        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                p = Path(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
                if p.parent == folder:
                    with lock:
                        names.add(p.name)
                    wake.set()

        self._names, self._lock = names, lock
        obs = Observer()
        obs.schedule(_Handler(), str(folder), recursive=False)
        obs.daemon = True
        obs.start()
        self._observer = obs

    def wait(self, timeout_s: float) -> tuple[set[str], bool]:
        super().wait(timeout_s)
        with self._lock:
            names = set(self._names)
            self._names.clear()
        return names, False

    def close(self) -> None:
        try:
            self._observer.unschedule_all()  # before stop: a late event must find no dead emitter
        except (OSError, KeyError, RuntimeError) as exc:
            logger.debug("watchdog unschedule: %s", exc)
        self._observer.stop()
        self._observer.join(5.0)


#: the ``watch_events`` choices, read from the settings model (one list for flags, settings and the source)
EVENT_BACKENDS: tuple[str, ...] = get_args(ServeSettings.model_fields["watch_events"].annotation)
#: an open event backend
Events: TypeAlias = PollOnly | Inotify


def open_events(folder: Path, backend: str, url: str) -> Events:
    """The event source for ``folder``: inotify on Linux, watchdog elsewhere, polling as the last resort."""
    if backend not in EVENT_BACKENDS:
        raise SettingsError(f"watch events must be one of {EVENT_BACKENDS}, got {backend!r}")
    if backend == "poll":
        return PollOnly()
    if backend in ("auto", "inotify") and inotify_available():
        try:
            return Inotify(folder)
        except OSError as exc:
            if backend == "inotify":
                raise SettingsError(f"{url}: inotify: {exc}") from None
            logger.warning("%s: inotify unavailable (%s); trying watchdog", url, exc)
    elif backend == "inotify":
        raise SettingsError(f"{url}: inotify is not available on this system")
    try:
        return WatchdogEvents(folder)
    except (ImportError, OSError) as exc:
        if backend == "watchdog":
            raise SettingsError(f"{url}: watchdog: {exc}") from None
        logger.warning("%s: filesystem events unavailable (%s); polling only", url, exc)
        return PollOnly()
