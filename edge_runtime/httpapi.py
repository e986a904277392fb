"""The HTTP API of the daemon (127.0.0.1 by default), on the standard library's HTTP parser with a bounded server.

GET  /healthz            200 while the process and its worker are alive
GET  /readyz             200 once the model passed its self-test and the sources are running; 503 otherwise
GET  /metrics            Prometheus text format
GET  /results?since=ID   committed records with id > ID (``limit`` <= 10000, default 1000)
POST /classify           one spectrum as JSON -> its committed record (strict validation, size limit)
GET  /                   the live dashboard (static/index.html; its script polls /api/state)
GET  /static/NAME        the dashboard's files, shipped in the package (no CDN, nothing from the internet)
GET  /api/state          what the dashboard shows, as JSON
POST /login              the dashboard's token form (sets a session cookie)

The server around the parser is built for a daemon left alone for months (see docs/security.md):

- at most ``http_max_connections`` connections are served at once, each by one of as many worker threads; the
  next connection is accepted only when one of them is free, so the others wait in the kernel's listen
  backlog (``LISTEN_BACKLOG``) and take no descriptor from the process (file and device processing keep theirs);
- reading one request (request line, headers and body) has a deadline of ``http_timeout_s`` in all, and every
  write a socket timeout of as long: a client that sends nothing, trickles, or stops reading is dropped;
- the ``Host`` header must name the bound address, a loopback name for a loopback or wildcard bind, or one of
  ``http_allowed_hosts`` (421 otherwise): a web page cannot reach a loopback daemon by DNS rebinding;
- with a token (``RAMANEDGE_HTTP_TOKEN``), every endpoint but ``/healthz`` needs ``Authorization: Bearer
  TOKEN`` or the dashboard's cookie (401 otherwise; constant-time comparison). ``/?token=TOKEN`` or the login
  form sets that cookie (HttpOnly, SameSite=Strict), derived from the token, never the token itself.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import html
import io
import ipaddress
import json
import logging
import queue
import re
import selectors
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_runtime.engine import MAX_POINTS
from edge_runtime.records import Committed, Frame, Record, bounded_text
from edge_runtime.settings import is_loopback_host

if TYPE_CHECKING:
    from edge_runtime.settings import ServeSettings

__all__ = [
    "BINARY_CTYPE", "CSV_CTYPE", "LISTEN_BACKLOG", "ClassifyMeta", "ClassifyRequest", "HttpApi", "HttpOptions", "exposure_warning",
    "parse_classify_json", "parse_csv_spectrum",
]

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 128
#: ``POST /classify`` with ``Content-Type: application/octet-stream``: the body is little-endian floats, the
#: intensities on the model axis, or (layout ``axis,intensities``) the axis in cm^-1 followed by as many
#: intensities; nothing is parsed, so a long spectrum costs the daemon no more than copying its bytes
BINARY_CTYPE = "application/octet-stream"
#: ``POST /classify`` with ``Content-Type: text/csv``: what an instrument exports, pasted or piped as it is: one
#: value a line (intensities on the model axis) or two (axis in cm^-1 and intensity), separated by a comma,
#: semicolon, tab or spaces; an optional header line; ``#`` comments
CSV_CTYPE = "text/csv"
LAYOUT_HEADER = "X-Spectrum-Layout"
DTYPE_HEADER = "X-Spectrum-Dtype"
META_HEADER = "X-Spectrum-Meta"
_LAYOUTS = {"intensities": 1, "axis,intensities": 2}
#: a JSON body at least this long has its number arrays validated in pieces of about ``_CHUNK_BYTES`` (see
#: :func:`parse_classify_json`); one 1.3 MB body validated in one call held the interpreter lock for ~45 ms
_FAST_MIN_BYTES = 64 << 10
_CHUNK_BYTES = 32 << 10
_ARRAY_KEY = re.compile(rb'"(axis|intensities)"\s*:\s*\[')
_DTYPES: dict[str, np.dtype[Any]] = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4")}
COOKIE_NAME = "ramanedge_session"
_LOGIN_MAX_BYTES = 4096
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_SECRET_QUERY = re.compile(r"(token=)[^&\s]*", re.IGNORECASE)
STATIC_DIR = Path(__file__).with_name("static")
_CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
           ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, Path]:
    """The dashboard's files by name (a fixed list read once: no path from a request touches the disk)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _CTYPES}
Scalar = str | int | float | bool | None


class ClassifyMeta(BaseModel):
    """What a spectrum carries besides its numbers (in a JSON body, or the ``X-Spectrum-Meta`` header of a
    binary one). Strict: unknown keys refused.

    Attributes:
        ref: the caller's reference for this spectrum (kept in the ledger as the input reference).
        metadata: free key/value facts kept with the record (device_serial, integration_time_us, ...).
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    ref: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Scalar] = Field(default_factory=dict, max_length=64)


class ClassifyRequest(ClassifyMeta):
    """Body of ``POST /classify`` as JSON. Strict: numbers must be JSON numbers, NaN/Infinity and unknown keys
    refused. The longest array allowed is the validation context's ``max_points`` (the daemon's setting;
    :data:`~edge_runtime.engine.MAX_POINTS` without a context).

    Attributes:
        intensities: counts, one per axis point.
        axis: wavenumbers in cm^-1, increasing; omitted means the model axis.
    """

    intensities: list[float] = Field(min_length=2)
    axis: list[float] | None = Field(default=None, min_length=2)

    @field_validator("intensities", "axis", mode="after")
    @classmethod
    def _at_most_max_points(cls, v: list[float] | None, info: ValidationInfo) -> list[float] | None:
        limit = _max_points(info.context)
        if v is not None and len(v) > limit:
            raise ValueError(f"{len(v):,} points, more than max_points={limit:,}")
        return v

    @model_validator(mode="after")
    def _same_length(self) -> ClassifyRequest:
        if self.axis is not None and len(self.axis) != len(self.intensities):
            raise ValueError(f"axis has {len(self.axis)} points but intensities has {len(self.intensities)}")
        return self


def _max_points(context: Any) -> int:
    """The ``max_points`` of a validation context (``{"max_points": n}``), else the default limit."""
    limit = context.get("max_points") if isinstance(context, dict) else None
    return int(limit) if isinstance(limit, int) else MAX_POINTS


_FLOATS: TypeAdapter[list[float]] = TypeAdapter(list[float], config=ConfigDict(strict=True, allow_inf_nan=False))


def parse_classify_json(
    body: bytes, max_points: int = MAX_POINTS
) -> tuple[ClassifyMeta, NDArray[np.float64] | None, NDArray[np.float64]]:
    """A ``POST /classify`` JSON body as (ref and metadata, axis or None, intensities), validated exactly as
    :class:`ClassifyRequest` does, with arrays of at most ``max_points`` values.

    Raises:
        ValidationError: the body is not a valid request (the full validation's report).
    """
    fast = _parse_in_pieces(body, max_points) if len(body) >= _FAST_MIN_BYTES else None
    if fast is not None:
        return fast
    req = ClassifyRequest.model_validate_json(body, context={"max_points": max_points})
    axis = np.asarray(req.axis, dtype=np.float64) if req.axis is not None else None
    return req, axis, np.asarray(req.intensities, dtype=np.float64)


def _parse_in_pieces(
    body: bytes, max_points: int = MAX_POINTS
) -> tuple[ClassifyMeta, NDArray[np.float64] | None, NDArray[np.float64]] | None:
    """The long arrays of a valid body validated a piece at a time, or None to leave the body to the full
    validation (which then reports what is wrong).

    One call validating 131,072 numbers holds the interpreter lock for tens of ms, and every other request
    thread and the worker wait that long. Here each piece (``_CHUNK_BYTES``, cut at a comma) is validated by
    the same strict parser (``list[float]``, strict, no NaN/Infinity), so other threads run between pieces.
    The rest of the body, each array replaced by a 2-number placeholder, goes through :class:`ClassifyRequest`
    itself. Anything unusual (a key twice, a nested or empty array, a piece that does not validate) gives None.
    """
    spans: dict[str, tuple[int, int]] = {}
    for m in _ARRAY_KEY.finditer(body):
        key = m.group(1).decode()
        close = body.find(b"]", m.end())
        if key in spans or close < 0:
            return None
        spans[key] = (m.end(), close)
    if "intensities" not in spans:
        return None
    rest, prev = [], 0
    for start, stop in sorted(spans.values()):
        rest += [body[prev:start], b"0,0"]
        prev = stop
    rest.append(body[prev:])
    try:
        req = ClassifyRequest.model_validate_json(b"".join(rest), context={"max_points": max_points})
    except ValidationError:
        return None
    if req.intensities != [0.0, 0.0] or (req.axis is not None) != ("axis" in spans):
        return None
    arrays: dict[str, NDArray[np.float64]] = {}
    for key, (start, stop) in spans.items():
        parts, pos, count = [], start, 0
        while True:
            cut = body.find(b",", min(pos + _CHUNK_BYTES, stop), stop)
            cut = stop if cut < 0 else cut
            try:
                values = _FLOATS.validate_json(b"[" + body[pos:cut] + b"]")
            except ValidationError:
                return None
            count += len(values)
            if not values or count > max_points:  # an empty piece: [], [1,], [1,,2]
                return None
            parts.append(np.asarray(values, dtype=np.float64))
            if cut == stop:
                break
            pos = cut + 1
        arrays[key] = np.concatenate(parts)
    x, axis = arrays["intensities"], arrays.get("axis")
    if x.size < 2 or (axis is not None and axis.size != x.size):
        return None
    return req, axis, x


@dataclass(frozen=True)
class HttpOptions:
    """How the server guards itself (the ``http_*`` settings).

    Attributes:
        token: the bearer token; None: no authentication (only allowed on loopback or with ``insecure``).
        allowed_hosts: extra names accepted in the Host header (lower case); ``*`` accepts any.
        max_connections: connections served at once (one worker thread each).
        timeout_s: deadline for reading one request and socket timeout of each write, s.
    """

    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 32
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, s: ServeSettings) -> HttpOptions:
        return cls(token=s.http_token.get_secret_value() if s.http_token is not None else None,
                   allowed_hosts=tuple(h.strip().lower().rstrip(".") for h in s.http_allowed_hosts if h.strip()),
                   max_connections=s.http_max_connections, timeout_s=s.http_timeout_s)


class DaemonView(Protocol):
    """What the HTTP API needs from the daemon."""

    settings: ServeSettings
    max_request_bytes: int
    request_timeout_s: float

    def healthy(self) -> bool: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> str: ...

    def results_since(self, since: int, limit: int) -> list[Record]: ...

    def model_axis(self) -> list[float]: ...

    def offer(self, frame: Frame, timeout_s: float) -> bool: ...

    def dashboard_state(self) -> dict[str, Any]: ...


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _form(text: str) -> dict[str, list[str]]:
    """A query string or form body; one that is malformed or has too many fields counts as empty."""
    try:
        return parse_qs(text, max_num_fields=8) if text else {}
    except ValueError:
        return {}


def _same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so the length of the secret does not show either)."""
    return hmac.compare_digest(_digest(given), _digest(expected))


class _Server(HTTPServer):
    """Binds and listens (backlog ``LISTEN_BACKLOG``); :class:`HttpApi` runs the accept loop and the workers."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    view: DaemonView
    static: dict[str, Path]
    options: HttpOptions
    cookie_value: str | None
    bound_host: str

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks the host up in DNS (getfqdn), which can stall start-up offline
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def host_problem(self, values: list[str] | None) -> tuple[int, str] | None:
        """Why a request's Host header is refused (status, reason), or None when it names this daemon."""
        if not values:
            return 400, "a Host header is required"
        if len(values) > 1:
            return 400, "more than one Host header"
        raw = values[0].strip()
        if not raw or any(c in raw for c in "/@?#\\ ,"):
            return 400, "malformed Host header"
        try:
            u = urlsplit("//" + raw)
            name = (u.hostname or "").rstrip(".")
            _ = u.port
        except ValueError:
            return 400, "malformed Host header"
        allowed = self.options.allowed_hosts
        bound = self.bound_host.lower()
        if not name:
            return 400, "malformed Host header"
        if "*" in allowed or name in allowed or name == bound:
            return None
        try:
            bound_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(bound)
        except ValueError:
            bound_ip = None
        wildcard = bound_ip is not None and bound_ip.is_unspecified
        # A name is what DNS rebinding needs: only names the operator allowed pass, and "localhost", which
        # browsers never resolve through DNS. An address literal cannot be rebound.
        if name == "localhost":
            if wildcard or is_loopback_host(bound):
                return None
        else:
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                ip = None
            if ip is not None and (wildcard or ip == bound_ip or (ip.is_loopback and is_loopback_host(bound))):
                return None
        return 421, (f"this daemon does not answer for host {name[:100]!r}; use its address, or add the name to "
                     "http_allowed_hosts")


class _DeadlineReader(io.RawIOBase):
    """The socket's read side, bounded by the handler's deadline for the whole request (not per read: a
    client trickling one byte a second would reset a per-read timeout for ever)."""

    def __init__(self, sock: socket.socket, handler: _Handler) -> None:
        super().__init__()
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self._handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received within the deadline")
        self._sock.settimeout(left)
        return self._sock.recv_into(b)


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ramanedge: sign in</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1>ramanedge</h1><p>{message}</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="off"
 autofocus required></label> <button type="submit">Open the dashboard</button></form>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "ramanedge"
    deadline = float("inf")

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.options.timeout_s)
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 65536)

    def handle_one_request(self) -> None:
        # one deadline for the request line, the headers and the body; waiting for the next request on a
        # kept-alive connection counts too, so an idle connection gives its worker back after the same time
        self.deadline = time.monotonic() + self.server.options.timeout_s
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), _SECRET_QUERY.sub(r"\1***", format % args))

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.connection.settimeout(self.server.options.timeout_s)  # writes: a socket timeout of their own
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:  # e.g. a body left unread: the client must not send another request on it
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- the gate: Host header, then the token ------------------------------------------------------------

    def _gate(self, path: str, query: str) -> bool:
        """True when the request may go on; otherwise the refusal has been sent."""
        srv = self.server
        problem = srv.host_problem(self.headers.get_all("Host"))
        if problem is not None:
            self.close_connection = True
            self._error(*problem)
            return False
        token = srv.options.token
        if token is None or path == "/healthz" or (path == "/login" and self.command == "POST"):
            return True
        scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and _same_secret(given.strip(), token):
            return True
        if srv.cookie_value is not None and _same_secret(self._cookie(), srv.cookie_value):
            return True
        if path in ("/", "/index.html") and self.command in ("GET", "HEAD"):
            q = _form(query)
            if "token" in q:
                if _same_secret(q["token"][-1], token):
                    self._signed_in()
                else:
                    self._login_page(401, "That token is not right. Enter the daemon's token.")
                return False
            self._login_page(401, "This daemon needs its token (RAMANEDGE_HTTP_TOKEN).")
            return False
        self.close_connection = self.command == "POST"  # an unread body: the connection cannot be reused
        self._json(401, {"error": "Unauthorized", "detail": "a bearer token is required: "
                         "Authorization: Bearer <RAMANEDGE_HTTP_TOKEN>"}, {"WWW-Authenticate": 'Bearer realm="ramanedge"'})
        return False

    def _cookie(self) -> str:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        morsel = jar.get(COOKIE_NAME)
        return morsel.value if morsel is not None else ""

    def _signed_in(self) -> None:
        """303 to the dashboard with the session cookie (the token leaves the address bar and the history)."""
        cookie = f"{COOKIE_NAME}={self.server.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        self._send(303, b"", "text/plain; charset=utf-8", {"Location": "/", "Set-Cookie": cookie})

    def _login_page(self, status: int, message: str) -> None:
        body = _LOGIN_PAGE.format(message=html.escape(message)).encode()
        self._send(status, body, "text/html; charset=utf-8", {"WWW-Authenticate": 'Bearer realm="ramanedge"'})

    def _login(self) -> None:
        length_h = self.headers.get("Content-Length", "")
        self.close_connection = True
        if not length_h.isdigit() or int(length_h) > _LOGIN_MAX_BYTES:
            self._error(400, f"the login form needs a Content-Length of at most {_LOGIN_MAX_BYTES} bytes")
            return
        form = _form(self.rfile.read(int(length_h)).decode("utf-8", "replace"))
        token = self.server.options.token
        if token is None:
            self._send(303, b"", "text/plain; charset=utf-8", {"Location": "/"})
        elif _same_secret(form.get("token", [""])[-1], token):
            self._signed_in()
        else:
            self._login_page(401, "That token is not right. Enter the daemon's token.")

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":"), default=str).encode(), headers=headers)

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._json(status, {"error": HTTPStatus(status).phrase, "detail": message, **extra})

    def do_GET(self) -> None:
        view = self.server.view
        url = urlsplit(self.path)
        if not self._gate(url.path, url.query):
            return
        if url.path == "/healthz":
            ok = view.healthy()
            self._json(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})
        elif url.path == "/readyz":
            ready, info = view.readiness()
            self._json(200 if ready else 503, {"ready": ready, **info})
        elif url.path == "/metrics":
            self._send(200, view.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif url.path == "/results":
            self._results(view, url.query)
        elif url.path in ("/", "/index.html"):
            self._static("index.html")
        elif url.path.startswith("/static/"):
            self._static(url.path.removeprefix("/static/"))
        elif url.path == "/api/state":
            self._json(200, view.dashboard_state())
        else:
            self._error(404, f"no such endpoint {url.path!r}; try /healthz, /readyz, /metrics, /results, /classify")

    do_HEAD = do_GET

    def _static(self, name: str) -> None:
        path = self.server.static.get(name)
        if path is None:
            self._error(404, f"no such file {name!r}")
            return
        try:
            body = path.read_bytes()
        except OSError as exc:
            self._error(500, f"cannot read {name}: {exc}")
            return
        self._send(200, body, _CTYPES[path.suffix])

    def _results(self, view: DaemonView, query: str) -> None:
        try:
            q = parse_qs(query, strict_parsing=bool(query), max_num_fields=8)
        except ValueError as exc:
            self._error(400, f"bad query string: {exc}")
            return
        unknown = sorted(set(q) - {"since", "limit"})
        if unknown:
            self._error(400, f"unknown parameter(s) {unknown}; use since and limit")
            return
        try:
            since = int(q.get("since", ["0"])[-1])
            limit = int(q.get("limit", ["1000"])[-1])
        except ValueError:
            self._error(400, "since and limit must be integers")
            return
        if since < 0 or not 1 <= limit <= 10000:
            self._error(400, "since must be >= 0 and limit within 1..10000")
            return
        rows = view.results_since(since, limit)
        self._json(200, {"results": rows, "next_since": rows[-1]["id"] if rows else since})

    def do_POST(self) -> None:
        view = self.server.view
        url = urlsplit(self.path)
        if not self._gate(url.path, url.query):
            return
        if url.path == "/login":
            self._login()
            return
        if url.path != "/classify":
            self._error(404 if url.path not in ("/healthz", "/readyz", "/metrics", "/results", "/api/state") else 405,
                        f"POST {url.path} is not supported; POST /classify")
            self.close_connection = True
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", BINARY_CTYPE, CSV_CTYPE):
            self.close_connection = True
            self._error(415, f"Content-Type must be application/json, {BINARY_CTYPE} or {CSV_CTYPE}, "
                             f"got {ctype[:60] or 'none'!r}")
            return
        length = self._content_length(view)
        if length is None:
            return
        if ctype == BINARY_CTYPE:
            self._classify_binary(view, length)
            return
        if ctype == CSV_CTYPE:
            self._classify_csv(view, length)
            return
        try:
            meta, axis, x = parse_classify_json(self.rfile.read(length), view.settings.max_points)
        except ValidationError as exc:
            self._invalid(exc)
            return
        self._classify(view, axis, x, meta)

    def _content_length(self, view: DaemonView) -> int | None:
        """The body's length once it is known to be within the limit; None: the refusal has been sent."""
        length_h = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_h is None:
            self.close_connection = True
            self._error(411, "a Content-Length header is required (chunked bodies are not accepted)")
            return None
        try:
            length = int(length_h)
        except ValueError:
            self.close_connection = True
            self._error(400, f"bad Content-Length {length_h[:40]!r}")
            return None
        if length < 0 or length > view.max_request_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._error(413, f"body of {length} bytes exceeds the limit of {view.max_request_bytes} bytes")
            return None
        return length

    def _invalid(self, exc: ValidationError, where: str = "request body") -> None:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()[:20]]
        status = 400 if any(e["type"] == "json_invalid" for e in exc.errors()) else 422
        self._error(status, f"invalid {where}", errors=errors)

    def _header_meta(self) -> ClassifyMeta | None:
        """``ref`` and ``metadata`` of a binary or text/csv body, from the ``X-Spectrum-Meta`` header; None when
        it is invalid (the refusal has been sent, and the unread body closes the connection)."""
        try:
            return ClassifyMeta.model_validate_json(self.headers.get(META_HEADER, "{}"))
        except ValidationError as exc:
            self.close_connection = True
            self._invalid(exc, META_HEADER)
            return None

    def _classify_binary(self, view: DaemonView, length: int) -> None:
        """A body of raw little-endian floats: its shape is checked from the headers and ``length`` before a
        byte is read, and the values are used where they lie (no parsing, no Python float per point)."""
        layout = self.headers.get(LAYOUT_HEADER, "intensities").replace(" ", "").lower()
        dtype_name = self.headers.get(DTYPE_HEADER, "float64").strip().lower()
        problem = None
        if layout not in _LAYOUTS:
            problem = f"{LAYOUT_HEADER} must be one of {sorted(_LAYOUTS)}, got {layout[:40]!r}"
        elif dtype_name not in _DTYPES:
            problem = f"{DTYPE_HEADER} must be one of {sorted(_DTYPES)} (little-endian), got {dtype_name[:40]!r}"
        if problem is not None:
            self.close_connection = True
            self._error(400, problem)
            return
        dtype, parts = _DTYPES[dtype_name], _LAYOUTS[layout]
        row_bytes = dtype.itemsize * parts
        n = length // row_bytes
        max_points = view.settings.max_points
        if length % row_bytes or not 2 <= n <= max_points:
            self.close_connection = True  # the body is not read
            self._error(422, f"a body of {length} bytes is not {parts} x N {dtype_name} values with 2 <= N <= "
                             f"{max_points:,} (layout {layout!r})")
            return
        meta = self._header_meta()
        if meta is None:
            return
        values = np.frombuffer(self.rfile.read(length), dtype=dtype)
        if values.size != n * parts:
            self.close_connection = True
            self._error(400, f"the body ended after {values.size * dtype.itemsize} of {length} bytes")
            return
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            self._error(422, "invalid request body", errors=[{"loc": layout, "msg": f"{bad} NaN/inf value(s)"}])
            return
        values = values.astype(np.float64, copy=False)
        axis = values[:n] if parts == 2 else None
        self._classify(view, axis, values[-n:], meta)

    def _classify_csv(self, view: DaemonView, length: int) -> None:
        """A text body of one or two numeric columns (see :data:`CSV_CTYPE`); ref and metadata as for binary
        bodies, in the ``X-Spectrum-Meta`` header."""
        meta = self._header_meta()
        if meta is None:
            return
        try:
            axis, x = parse_csv_spectrum(self.rfile.read(length), view.settings.max_points)
        except ValueError as exc:
            self._error(422, f"invalid text/csv body: {bounded_text(str(exc), 300)}")
            return
        self._classify(view, axis, x, meta)

    def _classify(self, view: DaemonView, axis: np.ndarray | None, x: np.ndarray, meta: ClassifyMeta) -> None:
        if axis is not None and axis.size >= 2 and axis.size == x.size and axis[0] > axis[-1]:
            # Many instruments export wavenumbers from high to low: take the spectrum in that order too (a
            # merely unsorted axis is still refused by the engine, naming where its direction changes).
            axis, x = axis[::-1].copy(), x[::-1].copy()
        done = threading.Event()
        box: list[Committed] = []

        def on_done(c: Committed) -> None:
            box.append(c)
            done.set()

        if axis is None:
            axis = np.asarray(view.model_axis(), dtype=np.float64)
        frame = Frame(source="http", ref=meta.ref or f"req-{uuid.uuid4().hex[:12]}", axis=axis, intensities=x,
                      metadata=dict(meta.metadata), on_done=on_done, preprocess_ahead=True)
        if axis.size != x.size:
            self._error(422, f"{x.size} intensities for the model axis of {axis.size} points; send 'axis' too")
            return
        if not view.offer(frame, view.request_timeout_s):
            self._error(503, "the daemon is not accepting spectra (starting, draining, or its queue is full)")
            return
        if not done.wait(view.request_timeout_s):
            self._error(504, f"no result within {view.request_timeout_s:g} s; it will still be recorded",
                        ref=frame.ref)
            return
        c = box[0]
        rec = c.record or {"id": c.record_id}
        if c.outcome.ok:
            self._json(200, rec)
        else:
            self._error(422, c.outcome.error or "the spectrum could not be classified", record=rec)


_CSV_SEPARATORS = re.compile(r"[,;\t ]+")


def parse_csv_spectrum(body: bytes, max_points: int) -> tuple[NDArray[np.float64] | None, NDArray[np.float64]]:
    """``(axis or None, intensities)`` from a text/csv body of one or two numeric columns.

    Blank lines and ``#`` comments are skipped, and so is one header line before the first number. Decimal
    points only (a comma separates columns). NaN/inf, ragged rows, more than two columns, fewer than 2 or more
    than ``max_points`` rows: ValueError, saying which line.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    rows: list[list[float]] = []
    header_seen = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c for c in _CSV_SEPARATORS.split(line) if c]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if rows or header_seen:
                raise ValueError(f"line {no}: {line[:40]!r} is not numbers") from None
            header_seen = True  # one header line before the data
            continue
        if not 1 <= len(values) <= 2:
            raise ValueError(f"line {no}: {len(values)} columns; send one (intensity) or two (axis, intensity)")
        if rows and len(values) != len(rows[0]):
            raise ValueError(f"line {no}: {len(values)} column(s) where line 1 of the data had {len(rows[0])}")
        if len(rows) >= max_points:
            raise ValueError(f"more than {max_points:,} points")
        rows.append(values)
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} data line(s); a spectrum needs at least 2")
    arr = np.asarray(rows, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"{bad.size} row(s) with NaN/inf, the first at data row {int(bad[0]) + 1}")
    if arr.shape[1] == 2:
        return arr[:, 0].copy(), arr[:, 1].copy()
    return None, arr[:, 0].copy()


def exposure_warning(host: str, token: str | None) -> str | None:
    """The WARNING logged at every start when the API listens beyond loopback without a token, else None."""
    if token is not None or is_loopback_host(host):
        return None
    return ("NO authentication (--insecure-http): anyone who can reach this address can read every result and "
            "submit spectra; set RAMANEDGE_HTTP_TOKEN")


def _connection_cap(wanted: int) -> int:
    """``wanted``, lowered so that HTTP never holds more than a quarter of the process's descriptor limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted
    cap = max(1, min(wanted, soft // 4))
    if cap < wanted:
        logger.warning("HTTP connections limited to %d (not %d): the descriptor limit is %d", cap, wanted, soft)
    return cap


class HttpApi:
    """The HTTP server: one accept thread and a fixed pool of worker threads, all in the background.

    Args:
        host, port: where to listen (port 0: a free port, see :attr:`port`).
        view: the daemon.
        options: how the server guards itself; default: from ``view.settings``.
    """

    def __init__(self, host: str, port: int, view: DaemonView, options: HttpOptions | None = None) -> None:
        self.options = options if options is not None else HttpOptions.from_settings(view.settings)
        self._server = _Server((host, port), _Handler)
        self._server.view = view
        self._server.options = self.options
        self._server.bound_host = host
        self._server.cookie_value = (
            None if self.options.token is None
            else hmac.new(self.options.token.encode(), b"ramanedge dashboard session", hashlib.sha256).hexdigest()
        )
        self._server.static = _static_files()
        if "index.html" not in self._server.static:
            logger.warning("dashboard files not found in %s: GET / answers 404", STATIC_DIR)
        self.host = host
        self.port = int(self._server.server_address[1])
        self.max_connections = _connection_cap(self.options.max_connections)
        self._slots = threading.Semaphore(self.max_connections)
        self._accepted: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self.refused_for_descriptors = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        for i in range(self.max_connections):
            t = threading.Thread(target=self._serve_connections, name=f"http-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        acceptor = threading.Thread(target=self._accept_loop, name="http-accept", daemon=True)
        acceptor.start()
        self._threads.append(acceptor)
        logger.info("HTTP API on %s (%d connections at once, backlog %d, %g s request deadline, token %s)",
                    self.url, self.max_connections, LISTEN_BACKLOG, self.options.timeout_s,
                    "required" if self.options.token is not None else "off")
        warning = exposure_warning(self.host, self.options.token)
        if warning is not None:
            logger.warning("HTTP API on %s: %s", self.url, warning)

    def _accept_loop(self) -> None:
        """Accept a connection only while a worker is free; the rest wait in the kernel's backlog."""
        sock = self._server.socket
        sock.setblocking(False)
        backoff = 0.05
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while not self._closing.is_set():
                if not self._slots.acquire(timeout=0.2):
                    continue
                handed = False
                try:
                    while not self._closing.is_set() and not sel.select(0.2):
                        pass
                    if self._closing.is_set():
                        return
                    try:
                        conn, addr = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        if exc.errno not in _RESOURCE_ERRNOS:
                            if self._closing.is_set():
                                return
                            logger.error("HTTP accept failed: %s", exc)
                        else:
                            # out of descriptors: the connection stays queued in the kernel; try again later
                            self.refused_for_descriptors += 1
                            logger.warning("HTTP accept: %s; retrying in %.2f s", exc, backoff)
                        self._closing.wait(backoff)
                        backoff = min(2.0, backoff * 2)
                        continue
                    backoff = 0.05
                    conn.settimeout(self.options.timeout_s)
                    self._accepted.put((conn, addr))
                    handed = True
                finally:
                    if not handed:
                        self._slots.release()

    def _serve_connections(self) -> None:
        while True:
            item = self._accepted.get()
            if item is None:
                return
            conn, addr = item
            with self._lock:
                self._active.add(conn)
            try:
                if not self._closing.is_set():
                    _Handler(conn, addr, self._server)
            except OSError as exc:  # a client that went away, a timeout while writing
                logger.debug("HTTP connection from %s ended: %s", addr, exc)
            except Exception:
                logger.exception("HTTP handler failed for a request from %s", addr)
            finally:
                with self._lock:
                    self._active.discard(conn)
                self._server.shutdown_request(conn)
                self._slots.release()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._closing.set()
        with self._lock:
            for conn in self._active:
                with contextlib.suppress(OSError):  # wakes a worker blocked reading from an idle client
                    conn.shutdown(socket.SHUT_RDWR)
        for _ in range(self.max_connections):
            self._accepted.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
