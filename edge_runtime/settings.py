"""Daemon settings: one pydantic-settings model, from flags, ``RAMANEDGE_*`` environment variables and a
config file (TOML or JSON), in that order of precedence (a flag beats the environment beats the file)."""

from __future__ import annotations

import ipaddress
import json
import logging
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from edge_runtime.errors import SettingsError

__all__ = [
    "DEFAULT_TEMP_SUFFIXES", "ENV_PREFIX", "MIN_TOKEN_CHARS", "ServeSettings", "is_loopback_host", "load_settings",
    "parse_host_port", "request_bytes_for",
]

logger = logging.getLogger(__name__)

#: Drop-folder names ending so are still being written (browsers, rsync, editors, instrument software) and are
#: never read; the one list, used by the settings' default and by the drop folder itself.
DEFAULT_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".filepart",
                         ".swp", ".lock", "~")

ENV_PREFIX = "RAMANEDGE_"
MIN_TOKEN_CHARS = 16
#: the longest value ``json.dumps`` writes for a float64 with its ", " separator ("-1.2345678901234567e-308, ")
JSON_BYTES_PER_VALUE = 26
#: room in a POST /classify body for everything but the numbers (keys, ref, metadata)
REQUEST_OVERHEAD_BYTES = 64 << 10
DEFAULT_MAX_POINTS = 65_536


def request_bytes_for(max_points: int) -> int:
    """The default ``max_request_bytes``: a JSON request of ``max_points`` points with its axis, whatever the
    client's float formatting, fits (a binary one needs 16 bytes a point, less than that)."""
    return 2 * max_points * JSON_BYTES_PER_VALUE + REQUEST_OVERHEAD_BYTES


def _split_list(v: Any) -> Any:
    """Environment lists as JSON (``["a", "b"]``) or separated by commas/whitespace (``a,b``)."""
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                return json.loads(s)
            except ValueError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return [p for p in s.replace(",", " ").split() if p]
    return v


class ServeSettings(BaseSettings):
    """Everything ``ramanedge serve`` can be told. Each field is also ``RAMANEDGE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False)

    model: Path = Field(description="the exported ONNX model (contract embedded)")
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="device URLs and watch:///dir drop folders"
    )
    provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    require_gpu: bool = False
    require_validated: bool = False
    threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads")
    max_batch: int = Field(default=64, ge=1, le=4096, description="largest micro-batch, spectra")
    max_points: int = Field(
        default=DEFAULT_MAX_POINTS, ge=2, le=16_777_216,
        description="longest spectrum classified, points; a longer one from any source is an error record",
    )
    axis_tolerance_cm1: float | None = Field(
        default=None, ge=0,
        description="how far a spectrum's range may fall short of the model axis at each end, cm^-1 (edge filled "
                    "from the nearest measured point); default: the model contract's",
    )
    allow_task_change: bool = Field(
        default=False,
        description="let a hot swap change the task (class names or order, model axis, preprocessing)",
    )
    queue_size: int = Field(default=256, ge=1, description="bounded queue between sources and the engine")
    db: Path = Field(default=Path("results.sqlite"), description="the SQLite ledger")
    ledger_sync: Literal["normal", "full"] = "normal"
    jsonl: str | None = Field(default=None, description="JSON-lines output file, '-' for stdout")
    http: str | None = Field(default="127.0.0.1:8765", description="HOST:PORT of the HTTP API; 'off' disables")
    http_token: SecretStr | None = Field(
        default=None, description="bearer token required by every endpoint but /healthz (at least 16 characters)"
    )
    http_token_file: Path | None = Field(default=None, description="a file holding the bearer token (Docker secrets)")
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host names accepted in the Host header besides the bound address and localhost; '*' any",
    )
    insecure_http: bool = Field(default=False, description="allow a non-loopback bind without a token (logs a WARNING)")
    http_max_connections: int = Field(default=32, ge=1, le=1024,
                                      description="connections served at once (= HTTP worker threads)")
    http_timeout_s: float = Field(default=10.0, gt=0, le=3600,
                                  description="bound on reading one request (headers + body) and on each write, s")
    max_request_bytes: int = Field(
        default=request_bytes_for(DEFAULT_MAX_POINTS), ge=1024,
        description="POST /classify body limit, bytes; default: a JSON request of max_points points with its axis "
                    "(2 x max_points x 26 + 64 KiB)",
    )
    request_timeout_s: float = Field(default=10.0, gt=0)
    count: int | None = Field(default=None, ge=1, description="stop after this many records (demos, tests)")
    duration: float | None = Field(default=None, gt=0, description="stop after this many seconds")
    drain_timeout_s: float = Field(default=10.0, gt=0, description="bound on the SIGTERM drain, s")
    on_done: Literal["move", "delete"] = "move"
    settle_s: float = Field(default=0.2, ge=0, description="drop files must be unchanged this long, s")
    poll_s: float = Field(default=1.0, gt=0, description="drop folder scan interval, s")
    watch_events: Literal["auto", "inotify", "watchdog", "poll"] = Field(
        default="auto", description="drop-folder events: auto (inotify, else watchdog, else polling), or one of them"
    )
    watch_readers: int = Field(default=2, ge=1, le=32, description="threads claiming and reading drop files")
    watch_links: Literal["refuse", "inside"] = Field(
        default="refuse", description="symlinks in drop folders: refuse all, or accept those resolving inside it"
    )
    max_file_bytes: int = Field(default=64 << 20, ge=1, description="larger drop files are refused unread, bytes")
    max_spectra_per_file: int = Field(
        default=10_000, ge=1, description="a drop file holding more spectra is one error record"
    )
    ready_marker: str | None = Field(
        default=None, description="e.g. '.ready': x.csv is claimed only once x.csv.ready exists (then removed)"
    )
    model_poll_s: float = Field(default=2.0, ge=0, description="model file check interval for hot swaps, s; 0 off")
    mqtt: str | None = Field(
        default=None, description="mqtt[s]://[user:password@]host:1883/topic-prefix: publish every record"
    )
    mqtt_ca_file: Path | None = Field(default=None, description="CA certificate(s), PEM, to verify an mqtts:// broker")
    mqtt_cert_file: Path | None = Field(default=None, description="client certificate, PEM, for an mqtts:// broker")
    mqtt_key_file: Path | None = Field(default=None, description="private key, PEM, of the client certificate")
    temp_suffixes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_TEMP_SUFFIXES))

    @field_validator("sources", "temp_suffixes", "http_allowed_hosts", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _split_list(v)

    @field_validator("http", mode="after")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is None or v.strip().lower() in ("", "off", "none", "no", "false"):
            return None
        parse_host_port(v)
        return v.strip()

    @field_validator("sources", mode="after")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if "://" not in url:
                raise ValueError(f"source {url!r} is not a URL (serial:///dev/ttyUSB0, sim://, watch:///dir)")
        return v

    @field_validator("http_token", mode="after")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        if len(v.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"the HTTP token must have at least {MIN_TOKEN_CHARS} characters")
        return SecretStr(v.get_secret_value().strip())

    @model_validator(mode="after")
    def _request_limit(self) -> ServeSettings:
        # one limit derived from the other, so a spectrum max_points allows is never refused for its bytes
        if "max_request_bytes" not in self.model_fields_set:
            self.max_request_bytes = request_bytes_for(self.max_points)
        elif self.max_request_bytes < request_bytes_for(self.max_points):
            logger.info("max_request_bytes %d is below what a JSON request of max_points (%d) points with its axis "
                        "may need (%d): longer JSON requests get 413 (a binary body needs 16 bytes a point)",
                        self.max_request_bytes, self.max_points, request_bytes_for(self.max_points))
        return self

    @model_validator(mode="after")
    def _http_security(self) -> ServeSettings:
        if self.http_token_file is not None:
            if self.http_token is not None:
                raise ValueError("give the HTTP token either as http_token or as http_token_file, not both")
            try:
                text = self.http_token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read http_token_file {self.http_token_file}: {exc}") from None
            self.http_token = self._token(SecretStr(text))
            if self.http_token is None:
                raise ValueError(f"http_token_file {self.http_token_file} is empty")
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("mqtt_cert_file and mqtt_key_file go together")
        if self.http is not None and self.http_token is None and not self.insecure_http:
            host, _ = parse_host_port(self.http)
            if not is_loopback_host(host):
                raise ValueError(
                    f"http {self.http} listens beyond loopback without a token: set RAMANEDGE_HTTP_TOKEN "
                    "(or http_token_file), bind to 127.0.0.1, or accept the risk with --insecure-http"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, _CONFIG_VALUES.get() or {}))


#: the config file's values while :func:`load_settings` builds a ServeSettings (a context variable, so
#: concurrent loads in threads or tasks never see each other's file)
_CONFIG_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("ramanedge_serve_config_values", default=None)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file (its ``[serve]`` table, TOML or JSON) as a settings source, below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def parse_host_port(v: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6); port 0 asks the system for a free one."""
    host, sep, port = v.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"http must be HOST:PORT, got {v!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); a wildcard or any other host is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:
        raise SettingsError(f"config file {path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a table/object of settings")
    section = data.get("serve", data)
    if not isinstance(section, dict):
        raise SettingsError(f"config file {path}: [serve] must be a table")
    base = path.parent
    out = dict(section)
    # relative paths in a config file are relative to the file
    for key in ("model", "db", "http_token_file", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file"):
        if isinstance(out.get(key), str) and not Path(out[key]).is_absolute():
            out[key] = str(base / out[key])
    return out


def load_settings(flags: dict[str, Any], config: str | Path | None = None) -> ServeSettings:
    """Build the settings: ``flags`` (None values are ignored) > ``RAMANEDGE_*`` > the config file > defaults.

    Raises:
        SettingsError: unreadable config file or invalid values, with the offending field named.
    """
    file_values = _read_config(Path(config)) if config else {}
    given = {k: v for k, v in flags.items() if v is not None}
    token = _CONFIG_VALUES.set(file_values)
    try:
        return ServeSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid serve settings: {problems}") from None
    finally:
        _CONFIG_VALUES.reset(token)
