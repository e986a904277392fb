"""The ASCII line protocol: one spectrum per line, counts separated by commas and/or spaces (pure, no I/O).

Lines (``\\n`` or ``\\r\\n`` terminated, ASCII)::

    # key: value            header line (axis_cm-1 / axis_nm: the axis values; model, serial, excitation_nm,
                            max_counts, integration_us: scalars). Any number, any time; later ones win.
    [SEQ:] c1,c2,...,cN     a spectrum; the optional ``SEQ:`` prefix is a decimal sequence number.

A data line that does not parse (a non-numeric token, a pixel count unlike the previous lines, an empty
line) is counted in ``bad_lines`` and skipped, never returned as a spectrum. Lines longer than
``max_line`` bytes are dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["AsciiCounters", "AsciiLineParser", "Line", "encode_header", "encode_line"]

logger = logging.getLogger(__name__)

_SPLIT = re.compile(r"[,\s;]+")
_SEQ = re.compile(r"^\s*(\d+)\s*:")
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Line:
    """One parsed line: a header (``key``/``value``) or a spectrum (``counts``, optional ``seq``)."""

    counts: NDArray[np.float32] | None = None
    seq: int | None = None
    key: str | None = None
    value: Any = None


@dataclass
class AsciiCounters:
    bytes_in: int = 0
    lines_ok: int = 0
    header_lines: int = 0
    bad_lines: int = 0
    dropped_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _parse_header(text: str) -> tuple[str, Any] | None:
    body = text.lstrip("#").strip()
    if ":" not in body:
        return None
    key, _, raw = body.partition(":")
    key = key.strip().lower()
    raw = raw.strip()
    if key in ("axis_cm-1", "axis_nm"):
        vals = np.array([float(t) for t in _SPLIT.split(raw) if t], dtype=np.float64)
        if vals.size < 2 or not np.all(np.isfinite(vals)):
            raise ValueError(f"{key} needs at least 2 finite values")
        return key, vals
    if key in ("excitation_nm", "max_counts", "min_counts", "saturation_level"):
        return key, float(raw)
    if key in ("integration_us", "pixels"):
        return key, int(raw)
    return key, raw


@dataclass
class AsciiLineParser:
    """Incremental line parser; ``feed`` bytes, get :class:`Line` objects.

    Args:
        pixels: expected values per data line; set by a ``# pixels: N`` header, else learnt from the first
            data line.
    """

    pixels: int | None = None
    max_line: int = MAX_LINE
    counters: AsciiCounters = field(default_factory=AsciiCounters)
    _buf: bytearray = field(default_factory=bytearray, repr=False)

    def feed(self, data: bytes) -> list[Line]:
        self.counters.bytes_in += len(data)
        self._buf += data
        out: list[Line] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > self.max_line:
                    logger.warning("ASCII line longer than %d bytes: dropped", self.max_line)
                    self.counters.bad_lines += 1
                    self.counters.dropped_bytes += len(self._buf)
                    self._buf.clear()
                return out
            raw = bytes(self._buf[:i])
            del self._buf[: i + 1]
            line = self._parse(raw)
            if line is not None:
                out.append(line)

    def drop_partial(self) -> int:
        """Drop an unterminated line (the line went quiet or the link was reset); returns bytes dropped."""
        n = len(self._buf)
        if n:
            self.counters.bad_lines += 1
            self.counters.dropped_bytes += n
            self._buf.clear()
        return n

    def _bad(self, raw: bytes, why: str) -> None:
        self.counters.bad_lines += 1
        self.counters.dropped_bytes += len(raw) + 1
        logger.warning("bad ASCII line (%s): %.60r", why, raw)

    def _parse(self, raw: bytes) -> Line | None:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._bad(raw, "not ASCII")
            return None
        if not text:
            self._bad(raw, "empty")
            return None
        if text.startswith("#"):
            try:
                kv = _parse_header(text)
            except ValueError as exc:
                self._bad(raw, f"bad header: {exc}")
                return None
            if kv is None:
                self.counters.header_lines += 1  # a plain comment
                return None
            self.counters.header_lines += 1
            if kv[0] == "pixels" and isinstance(kv[1], int) and kv[1] >= 2:
                self.pixels = kv[1]  # judge every data line by it, the first one included
            return Line(key=kv[0], value=kv[1])
        seq: int | None = None
        m = _SEQ.match(text)
        if m:
            seq = int(m.group(1))
            text = text[m.end() :]
        try:
            vals = np.array([float(t) for t in _SPLIT.split(text.strip()) if t], dtype=np.float64)
        except ValueError:
            self._bad(raw, "non-numeric value")
            return None
        if vals.size < 2 or not np.all(np.isfinite(vals)):
            self._bad(raw, f"{vals.size} value(s) or non-finite")
            return None
        if self.pixels is None:
            self.pixels = int(vals.size)
        elif vals.size != self.pixels:
            self._bad(raw, f"{vals.size} values, expected {self.pixels}")
            return None
        self.counters.lines_ok += 1
        return Line(counts=vals.astype(np.float32), seq=seq)


def encode_line(counts: NDArray[Any], seq: int | None = None, *, decimals: int = 0) -> bytes:
    """One data line: ``[seq:]c1,c2,...\\n`` with ``decimals`` digits after the point."""
    x = np.asarray(counts, dtype=np.float64)
    body = ",".join(f"{v:.{decimals}f}" for v in x)
    prefix = f"{seq}:" if seq is not None else ""
    return f"{prefix}{body}\n".encode("ascii")


def encode_header(key: str, value: Any) -> bytes:
    """One header line ``# key: value`` (arrays comma-separated, shortest repr that round-trips)."""
    if isinstance(value, np.ndarray | list | tuple):
        text = ",".join(repr(float(v)) for v in value)
    else:
        text = str(value)
    return f"# {key}: {text}\n".encode("ascii")
