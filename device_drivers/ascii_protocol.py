"""The ASCII line protocol: one spectrum per line, counts separated by commas and/or spaces (pure, no I/O).

Lines (``\\n`` or ``\\r\\n`` terminated, ASCII)::

    # key: value            header line (axis_cm-1 / axis_nm: the axis values; model, serial, excitation_nm,
                            max_counts, integration_us: scalars). Any number, any time; later ones win.
    [SEQ:] c1,c2,...,cN     a spectrum; the optional ``SEQ:`` prefix is a decimal sequence number.

Every non-empty line that is not a header is a data line. A data line that does not parse (not ASCII, a
non-numeric token, NaN or infinity, a pixel count unlike the previous lines, longer than ``max_line`` bytes,
cut off when the line went quiet) is counted in ``bad_lines`` and returned as a :class:`Line` with ``error``
set (and ``seq`` when its prefix could be read), never as a spectrum: the driver records it. Empty lines and
bad header lines are counted only (they carry no spectrum).
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
_SEQ_BYTES = re.compile(rb"^\s*(\d{1,10})\s*:")
MAX_LINE = 1 << 20
#: characters of a bad token quoted in an error reason (content is never echoed at length)
QUOTE_CHARS = 12


def _quote(text: str | bytes) -> str:
    """A short, printable quote of ``text`` (at most :data:`QUOTE_CHARS` characters, then an ellipsis)."""
    t = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    cut = t[:QUOTE_CHARS]
    return repr(cut + ("..." if len(t) > QUOTE_CHARS else ""))


def _seq_of(raw: bytes) -> int | None:
    """The ``SEQ:`` prefix of a raw line, when it can be read even though the rest cannot."""
    m = _SEQ_BYTES.match(raw)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Line:
    """One parsed line: a header (``key``/``value``), a spectrum (``counts``, optional ``seq``), or a bad data
    line (``error``: why, with ``seq`` when its prefix was readable)."""

    counts: NDArray[np.float32] | None = None
    seq: int | None = None
    key: str | None = None
    value: Any = None
    error: str | None = None


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
    _overlong: bool = field(default=False, repr=False)

    @property
    def pending(self) -> int:
        """Bytes held waiting for the end of a line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Line]:
        self.counters.bytes_in += len(data)
        self._buf += data
        out: list[Line] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > self.max_line:
                    logger.warning("ASCII line longer than %d bytes: dropped", self.max_line)
                    out.append(self._data_error(bytes(self._buf[:32]), f"line longer than {self.max_line} bytes",
                                                len(self._buf)))
                    self._buf.clear()
                    self._overlong = True
                return out
            raw = bytes(self._buf[:i])
            del self._buf[: i + 1]
            if self._overlong:  # the end of a line already reported as too long
                self._overlong = False
                self.counters.dropped_bytes += len(raw) + 1
                continue
            line = self._parse(raw)
            if line is not None:
                out.append(line)

    def take_partial(self) -> Line | None:
        """Drop an unterminated line (the line went quiet or the link was reset).

        Returns:
            an error :class:`Line` when the dropped bytes were the start of a data line (a spectrum cut off),
            None when nothing was held or it was a header or the tail of an over-long line.
        """
        n = len(self._buf)
        if not n:
            return None
        raw = bytes(self._buf)
        self._buf.clear()
        if self._overlong:
            self._overlong = False
            self.counters.dropped_bytes += n
            return None
        if raw.lstrip().startswith(b"#") or not raw.strip():
            self.counters.bad_lines += 1
            self.counters.dropped_bytes += n
            return None
        logger.warning("ASCII line cut off after %d bytes (the line went quiet or the link was reset)", n)
        return self._data_error(raw, f"line cut off after {n} bytes without an end of line", n)

    def drop_partial(self) -> int:
        """Drop an unterminated line (the line went quiet or the link was reset); returns bytes dropped."""
        n = len(self._buf)
        self.take_partial()
        return n

    def _bad(self, raw: bytes, why: str) -> None:
        self.counters.bad_lines += 1
        self.counters.dropped_bytes += len(raw) + 1
        logger.warning("bad ASCII line (%s): %.60r", why, raw)

    def _data_error(self, raw: bytes, why: str, size: int | None = None) -> Line:
        """Count a bad data line and return it as an error Line (with its SEQ prefix when readable)."""
        self.counters.bad_lines += 1
        self.counters.dropped_bytes += (len(raw) + 1) if size is None else size
        logger.warning("bad ASCII data line (%s)", why)
        return Line(seq=_seq_of(raw), error=why)

    def _parse(self, raw: bytes) -> Line | None:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            if raw.lstrip().startswith(b"#"):
                self._bad(raw, "header not ASCII")
                return None
            return self._data_error(raw, "not ASCII")
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
        tokens = [t for t in _SPLIT.split(text.strip()) if t]
        try:
            vals = np.array([float(t) for t in tokens], dtype=np.float64)
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            return self._data_error(raw, f"non-numeric value {_quote(bad)}")
        if vals.size < 2:
            return self._data_error(raw, f"{vals.size} value(s), a spectrum needs at least 2")
        if not np.all(np.isfinite(vals)):
            k = int(np.count_nonzero(~np.isfinite(vals)))
            return self._data_error(raw, f"{k} non-finite value(s) (NaN or infinity)")
        if self.pixels is None:
            self.pixels = int(vals.size)
        elif vals.size != self.pixels:
            return self._data_error(raw, f"{vals.size} values, expected {self.pixels}")
        self.counters.lines_ok += 1
        return Line(counts=vals.astype(np.float32), seq=seq)


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def encode_line(counts: NDArray[Any], seq: int | None = None, *, decimals: int | None = 0) -> bytes:
    """One data line: ``[seq:]c1,c2,...\\n`` with ``decimals`` digits after the point.

    ``decimals=None`` writes 9 significant digits (a float32 value read back exactly; for real data sets).
    """
    x = np.asarray(counts, dtype=np.float64)
    body = ",".join(f"{v:.9g}" for v in x) if decimals is None else ",".join(f"{v:.{decimals}f}" for v in x)
    prefix = f"{seq}:" if seq is not None else ""
    return f"{prefix}{body}\n".encode("ascii")


def encode_header(key: str, value: Any) -> bytes:
    """One header line ``# key: value`` (arrays comma-separated, shortest repr that round-trips)."""
    if isinstance(value, np.ndarray | list | tuple):
        text = ",".join(repr(float(v)) for v in value)
    else:
        text = str(value)
    return f"# {key}: {text}\n".encode("ascii")
