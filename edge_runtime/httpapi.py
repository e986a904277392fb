"""The HTTP API of the daemon, on the standard library's ThreadingHTTPServer (127.0.0.1 by default).

GET  /healthz            200 while the process and its worker are alive
GET  /readyz             200 once the model passed its self-test and the sources are running; 503 otherwise
GET  /metrics            Prometheus text format
GET  /results?since=ID   committed records with id > ID (``limit`` <= 10000, default 1000)
POST /classify           one spectrum as JSON -> its committed record (strict validation, size limit)
GET  /                   the live dashboard (static/index.html; its script polls /api/state)
GET  /static/NAME        the dashboard's files, shipped in the package (no CDN, nothing from the internet)
GET  /api/state          what the dashboard shows, as JSON
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_runtime.engine import Frame, Outcome

__all__ = ["ClassifyRequest", "HttpApi"]

logger = logging.getLogger(__name__)

MAX_POINTS = 65536
STATIC_DIR = Path(__file__).with_name("static")
_CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
           ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, Path]:
    """The dashboard's files by name (a fixed list read once: no path from a request touches the disk)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _CTYPES}
Scalar = str | int | float | bool | None


class ClassifyRequest(BaseModel):
    """Body of ``POST /classify``. Strict: numbers must be JSON numbers, NaN/Infinity and unknown keys refused.

    Attributes:
        intensities: counts, one per axis point.
        axis: wavenumbers in cm^-1, increasing; omitted means the model axis.
        ref: the caller's reference for this spectrum (kept in the ledger as the input reference).
        metadata: free key/value facts kept with the record (device_serial, integration_time_us, ...).
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    intensities: list[float] = Field(min_length=2, max_length=MAX_POINTS)
    axis: list[float] | None = Field(default=None, min_length=2, max_length=MAX_POINTS)
    ref: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Scalar] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _same_length(self) -> ClassifyRequest:
        if self.axis is not None and len(self.axis) != len(self.intensities):
            raise ValueError(f"axis has {len(self.axis)} points but intensities has {len(self.intensities)}")
        return self


class DaemonView(Protocol):
    """What the HTTP API needs from the daemon."""

    max_request_bytes: int
    request_timeout_s: float

    def healthy(self) -> bool: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> str: ...

    def results_since(self, since: int, limit: int) -> list[dict[str, Any]]: ...

    def model_axis(self) -> list[float]: ...

    def offer(self, frame: Frame, timeout_s: float) -> bool: ...

    def dashboard_state(self) -> dict[str, Any]: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    view: DaemonView
    static: dict[str, Path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "ramanedge"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":"), default=str).encode())

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._json(status, {"error": HTTPStatus(status).phrase, "detail": message, **extra})

    def do_GET(self) -> None:
        view = self.server.view
        url = urlsplit(self.path)
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
        if url.path != "/classify":
            self._error(404 if url.path not in ("/healthz", "/readyz", "/metrics", "/results", "/api/state") else 405,
                        f"POST {url.path} is not supported; POST /classify")
            self.close_connection = True
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self.close_connection = True
            self._error(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
            return
        length_h = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_h is None:
            self.close_connection = True
            self._error(411, "a Content-Length header is required (chunked bodies are not accepted)")
            return
        try:
            length = int(length_h)
        except ValueError:
            self.close_connection = True
            self._error(400, f"bad Content-Length {length_h!r}")
            return
        if length < 0 or length > view.max_request_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._error(413, f"body of {length} bytes exceeds the limit of {view.max_request_bytes} bytes")
            return
        body = self.rfile.read(length)
        try:
            req = ClassifyRequest.model_validate_json(body)
        except ValidationError as exc:
            errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()[:20]]
            status = 400 if any(e["type"] == "json_invalid" for e in exc.errors()) else 422
            self._error(status, "invalid request body", errors=errors)
            return
        self._classify(view, req)

    def _classify(self, view: DaemonView, req: ClassifyRequest) -> None:
        done = threading.Event()
        box: list[Outcome] = []

        def on_done(o: Outcome) -> None:
            box.append(o)
            done.set()

        axis = np.asarray(req.axis if req.axis is not None else view.model_axis(), dtype=np.float64)
        x = np.asarray(req.intensities, dtype=np.float64)
        frame = Frame(source="http", ref=req.ref or f"req-{uuid.uuid4().hex[:12]}", axis=axis, intensities=x,
                      metadata=dict(req.metadata), on_done=on_done)
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
        o = box[0]
        rec = o.record or {"id": o.record_id}
        if o.ok:
            self._json(200, rec)
        else:
            self._error(422, o.error or "the spectrum could not be classified", record=rec)


class HttpApi:
    """The HTTP server in a background thread.

    Args:
        host, port: where to listen (port 0: a free port, see :attr:`port`).
        view: the daemon.
    """

    def __init__(self, host: str, port: int, view: DaemonView) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.view = view
        self._server.static = _static_files()
        if "index.html" not in self._server.static:
            logger.warning("dashboard files not found in %s: GET / answers 404", STATIC_DIR)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)
        self._thread.start()
        logger.info("HTTP API on %s", self.url)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)

