"""The framed binary protocol: a pure bytes -> frames parser and a frames -> bytes encoder (no I/O).

Frame layout (all integers little-endian; see ``docs/serial-protocol.md``)::

    offset  size  field
    0       2     sync      0xA5 0x5A
    2       1     version   1
    3       1     type      MsgType
    4       4     seq       uint32, sender's sequence number
    8       4     length    uint32, payload bytes (0 .. max_payload)
    12      n     payload
    12+n    4     crc32     CRC-32 (zlib/IEEE 802.3) of bytes 2 .. 12+n-1 (version through payload)

The parser keeps every byte it cannot use accounted for in :class:`ParserCounters`: garbage before a sync is
dropped (one resync per run of garbage), a header with an impossible length or another version is skipped,
a frame whose CRC fails is never returned, and a frame of an unknown type is counted and skipped. After a bad
frame the parser rescans from the byte after its sync, so a truncated frame never swallows the next one.
"""

from __future__ import annotations

import enum
import json
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from device_drivers.errors import ProtocolError

__all__ = [
    "HEADER",
    "MAX_PAYLOAD",
    "SPECTRUM_HEADER",
    "SYNC",
    "VERSION",
    "AxisUnit",
    "Frame",
    "FrameParser",
    "MsgType",
    "ParserCounters",
    "SampleType",
    "SpectrumPayload",
    "crc32",
    "decode_ack",
    "decode_axis",
    "decode_error",
    "decode_info",
    "decode_spectrum",
    "decode_u32",
    "device_text",
    "encode_ack",
    "encode_axis",
    "encode_error",
    "encode_frame",
    "encode_info",
    "encode_spectrum",
    "encode_u32",
]

logger = logging.getLogger(__name__)

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER = struct.Struct("<2sBBII")  # sync, version, type, seq, length
CRC = struct.Struct("<I")
#: Largest payload a conforming device sends: 65536 float32 pixels plus the spectrum header, rounded up.
MAX_PAYLOAD = 65536 * 4 + 64
#: damaged-frame notes kept between two good frames at most (older ones are only counted)
MAX_GARBLED_NOTES = 4096


class MsgType(enum.IntEnum):
    """Message types. Host -> device commands are < 0x10; device -> host messages are >= 0x10."""

    HELLO = 0x01  # host -> device, empty; reply INFO
    GET_AXIS = 0x02  # host -> device, empty; reply AXIS
    SET_INTEGRATION = 0x03  # host -> device, uint32 us; reply ACK carrying the time actually set
    ACQUIRE = 0x04  # host -> device, empty; reply one SPECTRUM
    START_STREAM = 0x05  # host -> device, empty; SPECTRUM frames at the device's rate until STOP_STREAM
    STOP_STREAM = 0x06  # host -> device, empty; reply ACK
    INFO = 0x10  # device -> host, UTF-8 JSON object
    AXIS = 0x11  # device -> host, unit + sample type + values
    ACK = 0x12  # device -> host, acknowledged type + uint32 value
    SPECTRUM = 0x13  # device -> host, spectrum header + counts
    ERROR = 0x1F  # device -> host, uint16 code + UTF-8 message


_KNOWN_TYPES = frozenset(int(t) for t in MsgType)


class SampleType(enum.IntEnum):
    """Encoding of the samples of a SPECTRUM or AXIS payload."""

    UINT16 = 1
    FLOAT32 = 2
    FLOAT64 = 3


_DTYPES: dict[int, np.dtype[Any]] = {
    SampleType.UINT16: np.dtype("<u2"),
    SampleType.FLOAT32: np.dtype("<f4"),
    SampleType.FLOAT64: np.dtype("<f8"),
}


class AxisUnit(enum.IntEnum):
    """Unit of the AXIS values."""

    RAMAN_SHIFT_CM = 0  # cm^-1
    WAVELENGTH_NM = 1  # nm (the host converts with the excitation wavelength from INFO)


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32/ISO-HDLC (poly 0x04C11DB7 reflected, init 0xFFFFFFFF, xorout 0xFFFFFFFF), as zlib computes it."""
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    """One frame that passed every check (sync, version, length, CRC, known type)."""

    type: int
    seq: int
    payload: bytes

    @property
    def msg_type(self) -> MsgType:
        return MsgType(self.type)


def encode_frame(msg_type: int, seq: int, payload: bytes = b"", *, version: int = VERSION) -> bytes:
    """The bytes of one frame. ``seq`` wraps modulo 2**32.

    Raises:
        ProtocolError: payload longer than :data:`MAX_PAYLOAD` or a type outside 0..255.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the maximum {MAX_PAYLOAD}")
    if not 0 <= int(msg_type) <= 255:
        raise ProtocolError(f"message type {msg_type} is not a byte")
    body = HEADER.pack(SYNC, version, int(msg_type), seq & 0xFFFFFFFF, len(payload))[2:] + payload
    return SYNC + body + CRC.pack(crc32(body))


@dataclass
class ParserCounters:
    """What the parser did with every byte it was fed. All counts since construction (or ``reset``)."""

    bytes_in: int = 0
    frames_ok: int = 0
    crc_errors: int = 0
    truncated: int = 0  # a frame cut short: its CRC window holds the start of the next valid frame
    bad_length: int = 0
    bad_version: int = 0
    unknown_type: int = 0
    resyncs: int = 0  # runs of garbage skipped while hunting for a sync
    dropped_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class FrameParser:
    """Incremental parser: ``feed`` any chunking of the byte stream, get back complete valid frames.

    Args:
        max_payload: lengths above this are impossible and the header is skipped.
        known_types: frame types accepted; others are counted in ``unknown_type`` and skipped.
    """

    max_payload: int = MAX_PAYLOAD
    known_types: frozenset[int] = _KNOWN_TYPES
    counters: ParserCounters = field(default_factory=ParserCounters)
    #: SPECTRUM frames damaged on the link, as (seq its header gave, why), oldest first; the driver takes them
    #: with :meth:`take_garbled`. The seq is unverified (the CRC failed), so it is a hint for matching a gap.
    garbled: list[tuple[int, str]] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray, repr=False)
    _in_garbage: bool = field(default=False, repr=False)

    def take_garbled(self) -> list[tuple[int, str]]:
        """The damaged SPECTRUM frames noted since the last call (see :attr:`garbled`)."""
        out, self.garbled = self.garbled, []
        return out

    def _note_garbled(self, why: str) -> None:
        """Note the frame at the start of the buffer as a damaged SPECTRUM when its header says so."""
        if len(self._buf) >= HEADER.size:
            _, ver, typ, seq, _ = HEADER.unpack_from(self._buf, 0)
            if ver == VERSION and typ == MsgType.SPECTRUM:
                self.garbled.append((int(seq), why))
                del self.garbled[:-MAX_GARBLED_NOTES]

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Append ``data`` and return every frame completed by it, in stream order."""
        self.counters.bytes_in += len(data)
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame, progressed = self._step()
            if frame is not None:
                frames.append(frame)
            if not progressed:
                return frames

    def drop_partial(self) -> list[Frame]:
        """Give up on a partial frame (the line went quiet mid-frame, or the link is about to be reset).

        A held partial frame is counted as truncated and its bytes as dropped; the bytes after its sync are
        rescanned first, so complete frames that follow it are returned rather than lost.

        Returns:
            complete frames found after the partial one (usually none).
        """
        frames: list[Frame] = []
        while self._buf.startswith(SYNC) and len(self._buf) >= 2:
            self.counters.truncated += 1
            self._note_garbled("truncated (the line went quiet mid-frame)")
            logger.warning("truncated frame: %d byte(s) held when the line went quiet", len(self._buf))
            self._garbage(1)
            frames.extend(self.feed(b""))
        return frames

    def reset(self) -> None:
        """Forget buffered bytes without counting (after a deliberate reconnect the caller counts them)."""
        self._buf.clear()
        self._in_garbage = False

    def _drop(self, n: int) -> None:
        if n <= 0:
            return
        del self._buf[:n]
        self.counters.dropped_bytes += n

    def _garbage(self, n: int) -> None:
        if n <= 0:
            return
        if not self._in_garbage:
            self.counters.resyncs += 1
            self._in_garbage = True
        self._drop(n)

    def _header_ok(self, start: int) -> bool:
        """Whether a plausible header (sync, version, known type, possible length) starts at ``start``."""
        if len(self._buf) < start + HEADER.size:
            return False
        _, ver, typ, _, length = HEADER.unpack_from(self._buf, start)
        return ver == VERSION and typ in self.known_types and length <= self.max_payload

    def _step(self) -> tuple[Frame | None, bool]:
        buf = self._buf
        i = buf.find(SYNC)
        if i < 0:
            # Keep a trailing 0xA5: it may be the first half of a sync split across reads.
            keep = 1 if buf.endswith(SYNC[:1]) else 0
            self._garbage(len(buf) - keep)
            return None, False
        if i > 0:
            self._garbage(i)
        if len(buf) < HEADER.size:
            return None, False
        _, ver, typ, seq, length = HEADER.unpack_from(buf, 0)
        if ver != VERSION:
            self.counters.bad_version += 1
            logger.warning("frame version %d (expected %d): skipped", ver, VERSION)
            self._garbage(1)
            return None, True
        if length > self.max_payload:
            self.counters.bad_length += 1
            logger.warning("impossible frame length %d (max %d): skipped", length, self.max_payload)
            self._garbage(1)
            return None, True
        end = HEADER.size + length + CRC.size
        if len(buf) < end:
            return None, False
        (want,) = CRC.unpack_from(buf, end - CRC.size)
        if crc32(memoryview(buf)[2 : end - CRC.size]) != want:
            nxt = buf.find(SYNC, 2, end)
            while nxt >= 0 and not self._header_ok(nxt):
                nxt = buf.find(SYNC, nxt + 1, end)
            if nxt >= 0:
                self.counters.truncated += 1
                self._note_garbled("truncated (the next frame starts inside it)")
                logger.warning("truncated frame type 0x%02x seq %d: next frame starts inside it", typ, seq)
            else:
                self.counters.crc_errors += 1
                self._note_garbled("CRC error")
                logger.warning("CRC error in frame type 0x%02x seq %d (%d payload bytes): skipped", typ, seq, length)
            self._garbage(1)
            return None, True
        payload = bytes(buf[HEADER.size : HEADER.size + length])
        del buf[:end]
        self._in_garbage = False
        if typ not in self.known_types:
            self.counters.unknown_type += 1
            self.counters.dropped_bytes += end
            logger.warning("unknown frame type 0x%02x seq %d: skipped", typ, seq)
            return None, True
        self.counters.frames_ok += 1
        return Frame(typ, seq, payload), True


# ---------------------------------------------------------------------------------------------- payloads

SPECTRUM_HEADER = struct.Struct("<BBHIQI")  # sample type, flags, reserved, integration us, device time us, pixels
FLAG_SATURATED = 0x01
_ACK = struct.Struct("<BxxxI")
_ERROR = struct.Struct("<H")
_AXIS = struct.Struct("<BBxx")
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class SpectrumPayload:
    """A decoded SPECTRUM payload.

    Attributes:
        counts: detector counts, float32 (uint16 samples are converted exactly).
        integration_time_us: integration time of this spectrum, microseconds.
        device_time_us: the device's own clock at the end of integration, microseconds (wraps at 2**64).
        saturated: the device flagged at least one pixel at its full-scale value.
        sample_type: how the counts were encoded on the wire.
    """

    counts: NDArray[np.float32]
    integration_time_us: int
    device_time_us: int
    saturated: bool
    sample_type: SampleType


def encode_spectrum(
    counts: NDArray[Any],
    *,
    sample_type: SampleType = SampleType.UINT16,
    integration_time_us: int = 0,
    device_time_us: int = 0,
    saturated: bool = False,
) -> bytes:
    """SPECTRUM payload: header then the samples. uint16 samples are rounded and clipped to 0..65535."""
    st = SampleType(sample_type)
    if st == SampleType.FLOAT64:
        raise ProtocolError("SPECTRUM samples are uint16 or float32")
    x = np.asarray(counts, dtype=np.float64)
    data = np.clip(np.rint(x), 0, 65535).astype("<u2") if st == SampleType.UINT16 else x.astype("<f4")
    head = SPECTRUM_HEADER.pack(
        int(st), FLAG_SATURATED if saturated else 0, 0, integration_time_us & 0xFFFFFFFF,
        device_time_us & 0xFFFFFFFFFFFFFFFF, x.size,
    )
    return head + data.tobytes()


def decode_spectrum(payload: bytes) -> SpectrumPayload:
    """Inverse of :func:`encode_spectrum`.

    Raises:
        ProtocolError: short payload, unknown sample type, or a size that disagrees with the pixel count.
    """
    if len(payload) < SPECTRUM_HEADER.size:
        raise ProtocolError(f"SPECTRUM payload of {len(payload)} bytes is shorter than its header")
    st, flags, _, integ, dev_t, n = SPECTRUM_HEADER.unpack_from(payload)
    if st not in (SampleType.UINT16, SampleType.FLOAT32):
        raise ProtocolError(f"SPECTRUM sample type {st} is not uint16 (1) or float32 (2)")
    dt = _DTYPES[st]
    if len(payload) != SPECTRUM_HEADER.size + n * dt.itemsize:
        raise ProtocolError(f"SPECTRUM says {n} pixels of {dt.itemsize} bytes but carries {len(payload)} bytes")
    counts = np.frombuffer(payload, dtype=dt, count=n, offset=SPECTRUM_HEADER.size).astype(np.float32)
    if not np.all(np.isfinite(counts)):
        raise ProtocolError("SPECTRUM holds non-finite samples")
    return SpectrumPayload(counts, int(integ), int(dev_t), bool(flags & FLAG_SATURATED), SampleType(st))


def encode_info(info: dict[str, Any]) -> bytes:
    """INFO payload: a UTF-8 JSON object (keys in ``docs/serial-protocol.md``)."""
    return json.dumps(info, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_info(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"INFO payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("INFO payload is not a JSON object")
    return obj


def encode_axis(values: NDArray[Any], unit: AxisUnit, sample_type: SampleType = SampleType.FLOAT64) -> bytes:
    """AXIS payload: unit, sample type (float32 or float64), two reserved bytes, then the values."""
    if sample_type not in (SampleType.FLOAT32, SampleType.FLOAT64):
        raise ProtocolError("AXIS samples are float32 or float64")
    return _AXIS.pack(int(unit), int(sample_type)) + np.asarray(values).astype(_DTYPES[sample_type]).tobytes()


def decode_axis(payload: bytes) -> tuple[NDArray[np.float64], AxisUnit]:
    if len(payload) < _AXIS.size:
        raise ProtocolError("AXIS payload shorter than its header")
    unit, st = _AXIS.unpack_from(payload)
    if unit not in (0, 1) or st not in (SampleType.FLOAT32, SampleType.FLOAT64):
        raise ProtocolError(f"AXIS with unit {unit} / sample type {st} is not understood")
    dt = _DTYPES[st]
    if (len(payload) - _AXIS.size) % dt.itemsize:
        raise ProtocolError("AXIS payload is not a whole number of samples")
    values = np.frombuffer(payload, dtype=dt, offset=_AXIS.size).astype(np.float64)
    return values, AxisUnit(unit)


def encode_ack(acked: int, value: int = 0) -> bytes:
    """ACK payload: the acknowledged message type and a uint32 value (e.g. the integration time set, us)."""
    return _ACK.pack(int(acked), value & 0xFFFFFFFF)


def decode_ack(payload: bytes) -> tuple[int, int]:
    if len(payload) != _ACK.size:
        raise ProtocolError(f"ACK payload of {len(payload)} bytes (expected {_ACK.size})")
    acked, value = _ACK.unpack(payload)
    return int(acked), int(value)


def encode_error(code: int, message: str) -> bytes:
    """ERROR payload: uint16 code then a UTF-8 message."""
    return _ERROR.pack(code & 0xFFFF) + message.encode("utf-8")


#: characters of a device's text (ERROR message, model, serial) kept; the rest is cut, with its size said
MAX_DEVICE_TEXT = 200


def device_text(text: str, limit: int = MAX_DEVICE_TEXT) -> str:
    """``text`` from a device, cut to ``limit`` characters (it reaches logs, error records and every record)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters, cut)"


def decode_error(payload: bytes) -> tuple[int, str]:
    """ERROR payload -> (code, message); the message is cut to :data:`MAX_DEVICE_TEXT` characters."""
    if len(payload) < _ERROR.size:
        raise ProtocolError("ERROR payload shorter than its code")
    (code,) = _ERROR.unpack_from(payload)
    return int(code), device_text(payload[_ERROR.size :].decode("utf-8", errors="replace"))


def encode_u32(value: int) -> bytes:
    """A uint32 payload (SET_INTEGRATION, microseconds)."""
    return _U32.pack(value & 0xFFFFFFFF)


def decode_u32(payload: bytes) -> int:
    if len(payload) != _U32.size:
        raise ProtocolError(f"expected a 4-byte uint32 payload, got {len(payload)} bytes")
    return int(_U32.unpack(payload)[0])
