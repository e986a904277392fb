"""Open a spectrometer by URL. One handler per scheme; an unknown scheme is an error, never a fallback.

=============================================  ==============================================================
``serial:///dev/ttyUSB0?baud=115200``          pyserial port; ``protocol=framed`` (default) or ``ascii``
``serial://spy:///dev/ttyUSB0?file=t.txt``     any pyserial URL after ``serial://`` (spy, rfc2217, socket, loop)
``tcp://127.0.0.1:5555?protocol=ascii``        the same protocols over TCP
``sim://?classes=8&rate=20&seed=1``            in-process simulator (``catalog_seed=0``: training classes)
``replay://recording.npz?rate=10&loop=1``      spectra of a recording, read with spectral_core.io
``seabreeze://`` / ``seabreeze://SERIAL``      Ocean Insight USB spectrometer (the ``seabreeze`` extra)
=============================================  ==============================================================

A pyserial URL is opened with ``serial.serial_for_url``; the options of its handler that do not clash with
ours (:data:`PYSERIAL_OPTIONS`: spy's ``file``, ``color``, ``raw``, ``all``; ``logging``; rfc2217's
``ign_set_control``, ``poll_modem``) are handed to it. A bare ``loop://`` or ``spy://`` is not a device URL.

Link options (serial, tcp): ``timeout`` (s), ``retries``, ``reconnects``, ``backoff`` (s), ``integration_us``,
``excitation`` (nm), and for ASCII ``axis=START:STOP`` (cm^-1). Unknown options are errors.

``replay://`` also takes the reading options of the CLI (``ramanedge info --help``), spelt with ``_`` or ``-``:
``axis=START:STOP:POINTS`` (or an axis .npy), ``labels``, ``class_names`` (or ``classes``), ``pattern``,
``label_from_column``, ``label_column``, ``layout``, ``delimiter`` (``tab`` for a tab), ``encoding``, ``x_var``,
``y_var``, ``axis_var``, ``excitation_nm``, ``resample``, ``format``; e.g.
``replay://spectra.npy?axis=400:1800:300&labels=labels.npy&class_names=a,b``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from device_drivers._base import BaseSpectrometer, Spectrometer
from device_drivers.errors import DeviceURLError, UnknownSchemeError

__all__ = ["PYSERIAL_OPTIONS", "SCHEMES", "open_device", "parse_device_url", "serial_port"]


def parse_device_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split a device URL into (scheme, target, options). The target is netloc + path (a port path, a file)."""
    parts = urlsplit(url)
    if not parts.scheme:
        raise UnknownSchemeError(f"device URL {url!r} has no scheme; known: {', '.join(sorted(SCHEMES))}")
    try:
        opts = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError as exc:
        raise DeviceURLError(f"device URL {url!r}: bad query ({exc})") from None
    return parts.scheme.lower(), parts.netloc + parts.path, opts


class _Opts:
    """Typed access to URL options; every option must be consumed, or the URL is refused."""

    def __init__(self, url: str, opts: dict[str, str]) -> None:
        self.url, self._o, self._used = url, opts, set[str]()

    def _get(self, key: str) -> str | None:
        self._used.add(key)
        return self._o.get(key)

    def text(self, key: str, default: str) -> str:
        v = self._get(key)
        return default if v is None else v

    def num(self, key: str, default: float | None, kind: Callable[[str], Any] = float) -> Any:
        v = self._get(key)
        if v is None:
            return default
        try:
            return kind(v)
        except ValueError:
            raise DeviceURLError(f"{self.url}: option {key}={v!r} is not a {kind.__name__}") from None

    def done(self) -> None:
        extra = sorted(set(self._o) - self._used)
        if extra:
            raise DeviceURLError(f"{self.url}: unknown option(s) {extra}")


def _link_options(o: _Opts) -> Any:
    from device_drivers.link import LinkOptions

    d = LinkOptions()
    return LinkOptions(
        timeout_s=o.num("timeout", d.timeout_s), retries=o.num("retries", d.retries, int),
        reconnects=o.num("reconnects", d.reconnects, int), backoff_s=o.num("backoff", d.backoff_s),
        handshake_timeout_s=o.num("handshake_timeout", d.handshake_timeout_s),
    )


def _open_link(url: str, o: _Opts, factory: Any) -> BaseSpectrometer:
    from device_drivers.link import AsciiSpectrometer, FramedSpectrometer

    protocol = o.text("protocol", "framed")
    opts = _link_options(o)
    integ = o.num("integration_us", None, int)
    exc_nm = o.num("excitation", None)
    if protocol == "framed":
        o.done()
        return FramedSpectrometer(url, factory, opts, integration_time_us=integ, excitation_nm=exc_nm)
    if protocol == "ascii":
        axis_raw = o.text("axis", "")
        axis: tuple[float, float] | None = None
        if axis_raw:
            try:
                a, b = (float(v) for v in axis_raw.split(":"))
            except ValueError:
                raise DeviceURLError(f"{url}: axis must be START:STOP in cm^-1, got {axis_raw!r}") from None
            axis = (a, b)
        o.done()
        return AsciiSpectrometer(url, factory, opts, axis_range=axis, excitation_nm=exc_nm,
                                 integration_time_us=integ)
    raise DeviceURLError(f"{url}: protocol must be 'framed' or 'ascii', got {protocol!r}")


#: options of pyserial's URL handlers handed on to them (the others: rfc2217's ``timeout`` would clash with ours)
PYSERIAL_OPTIONS: dict[str, tuple[str, ...]] = {
    "spy": ("file", "color", "raw", "all"),
    "rfc2217": ("logging", "ign_set_control", "poll_modem"),
    "socket": ("logging",),
    "loop": ("logging",),
    "alt": ("class",),
}


def serial_port(url: str, target: str, o: _Opts) -> str:
    """The port string for ``serial.serial_for_url``: a device path, or a pyserial URL with its options.

    Raises:
        DeviceURLError: no port, or a pyserial URL scheme pyserial has no handler for.
    """
    if not target:
        raise DeviceURLError(f"{url}: no port (serial:///dev/ttyUSB0, serial://COM3 or serial://spy://COM3)")
    inner, sep, _ = target.partition("://")
    if not sep:
        return target
    scheme = inner.lower()
    if not scheme.isidentifier() or not _pyserial_handles(scheme):
        raise DeviceURLError(f"{url}: pyserial has no handler for {scheme!r}:// "
                             f"(known: {', '.join(sorted(PYSERIAL_OPTIONS))})")
    passed = [(k, o.text(k, "")) for k in PYSERIAL_OPTIONS.get(scheme, ()) if k in o._o]
    if not passed:
        return target
    return f"{target}?{urlencode(passed, safe='/:')}"


def _pyserial_handles(scheme: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}") is not None
    except ImportError:
        return False


def _open_serial(url: str, target: str, o: _Opts) -> BaseSpectrometer:
    from device_drivers.serial import SerialTransport

    port = serial_port(url, target, o)
    baud = o.num("baud", 115200, int)
    return _open_link(url, o, lambda: SerialTransport(port, baud))


def _open_tcp(url: str, target: str, o: _Opts) -> BaseSpectrometer:
    from device_drivers.tcp import TcpTransport

    host, _, port = target.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise DeviceURLError(f"{url}: expected tcp://HOST:PORT")
    return _open_link(url, o, lambda: TcpTransport(host.strip("[]"), int(port)))


def _open_sim(url: str, target: str, o: _Opts) -> BaseSpectrometer:
    from device_drivers.sim.driver import SimSpectrometer

    if target.strip("/"):
        raise DeviceURLError(f"{url}: sim:// takes options only (sim://?classes=8&rate=20&seed=1)")
    dev = SimSpectrometer(
        url, classes=o.num("classes", 8, int), rate_hz=o.num("rate", 20.0), seed=o.num("seed", 1, int),
        catalog_seed=o.num("catalog_seed", 0, int), pixels=o.num("pixels", 1024, int),
        excitation_nm=o.num("excitation", 785.0), integration_time_us=o.num("integration_us", 50_000, int),
        saturate_every=o.num("saturate_every", 0, int),
    )
    o.done()
    return dev


#: replay:// options read as the CLI's reading options (``read_dataset`` keyword -> converter)
REPLAY_READ_OPTIONS: dict[str, Callable[[str], Any]] = {
    **{k: str for k in ("axis", "labels", "class_names", "pattern", "label_from_column", "label_column", "layout",
                        "delimiter", "encoding", "x_var", "y_var", "axis_var", "resample", "format")},
    "excitation_nm": float,
}
_REPLAY_ALIASES = {"classes": "class_names", "excitation": "excitation_nm"}


def _replay_read_options(url: str, o: _Opts) -> dict[str, Any]:
    """The reading options of a replay:// URL (``class-names`` and ``class_names`` alike)."""
    out: dict[str, Any] = {}
    for given in list(o._o):
        key = given.replace("-", "_")
        key = _REPLAY_ALIASES.get(key, key)
        if key not in REPLAY_READ_OPTIONS:
            continue
        if key in out:
            raise DeviceURLError(f"{url}: reading option {key!r} given twice")
        out[key] = o.num(given, None, REPLAY_READ_OPTIONS[key])
    if out.get("delimiter") in ("\\t", "tab"):
        out["delimiter"] = "\t"
    if out.get("layout") not in (None, "auto", "rows", "columns"):
        raise DeviceURLError(f"{url}: layout must be auto, rows or columns, got {out['layout']!r}")
    return out


def _open_replay(url: str, target: str, o: _Opts) -> BaseSpectrometer:
    from device_drivers.replay import ReplaySpectrometer

    if not target:
        raise DeviceURLError(f"{url}: no file (replay://recording.npz or replay:///abs/path.npz)")
    rate = o.num("rate", 0.0)
    loop = o.num("loop", 0, int)
    read_opts = _replay_read_options(url, o)
    o.done()
    return ReplaySpectrometer(url, target, rate_hz=rate, loop=bool(loop), read_options=read_opts)


def _open_seabreeze(url: str, target: str, o: _Opts) -> BaseSpectrometer:
    from device_drivers.seabreeze_driver import SeabreezeSpectrometer

    exc_nm = o.num("excitation", None)
    integ = o.num("integration_us", None, int)
    sat = o.num("saturation", None)
    o.done()
    return SeabreezeSpectrometer(url, target.strip("/") or None, excitation_nm=exc_nm,
                                 integration_time_us=integ, saturation_level=sat)


SCHEMES: dict[str, Callable[[str, str, _Opts], BaseSpectrometer]] = {
    "serial": _open_serial,
    "tcp": _open_tcp,
    "sim": _open_sim,
    "replay": _open_replay,
    "seabreeze": _open_seabreeze,
}


def open_device(url: str) -> Spectrometer:
    """Open the spectrometer named by ``url`` (see the module docstring for schemes and options).

    Raises:
        UnknownSchemeError: no driver for the scheme (a ValueError; never a fallback to another driver).
        DeviceURLError: a malformed URL or an unknown option (a ValueError).
        DriverError: the device could not be opened (DeviceTimeoutError when it does not answer).
        MissingExtraError: ``seabreeze://`` without the ``seabreeze`` extra installed.
    """
    scheme, target, opts = parse_device_url(url)
    handler = SCHEMES.get(scheme)
    if handler is None:
        hint = f" (a pyserial URL goes after serial://, e.g. serial://{url})" if scheme in PYSERIAL_OPTIONS else ""
        raise UnknownSchemeError(
            f"no driver for scheme {scheme!r} in {url!r}; known: {', '.join(sorted(SCHEMES))}{hint}")
    return handler(url, target, _Opts(url, opts))
