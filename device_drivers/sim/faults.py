"""What each injected fault does to the bytes of one spectrum on the link (pure: no I/O, no clock).

The simulated instrument (:mod:`device_drivers.sim.instrument`) decides *when* a fault happens; this module
decides *which bytes* go out, so the damage is testable byte for byte.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from device_drivers.ascii_protocol import encode_line
from device_drivers.framing import HEADER, SYNC, VERSION, MsgType, SampleType, encode_frame, encode_spectrum

__all__ = ["FAULT_KINDS", "Emission", "encode_emission", "link_status"]

#: Faults the simulator injects. garbage, unknown_type and bad_length add bytes before a spectrum (which is
#: still delivered; in the ASCII protocol each adds a line of its own); crc and truncate corrupt the spectrum
#: itself on the link (it is lost); short (half the pixels), nan (a NaN sample) and text (framed: a payload
#: that is not a spectrum; ASCII: a word among the numbers) send it intact on the link but malformed, with a
#: valid CRC; stall delays it by ``stall_s``; disconnect drops the link before it (it is sent after the host
#: reconnects); saturate clips it.
FAULT_KINDS = ("garbage", "crc", "truncate", "unknown_type", "bad_length", "stall", "disconnect", "saturate",
               "short", "nan", "text")
#: ground-truth status of a spectrum carrying a fault that spoils it (later entries win)
_LOSSY = {"short": "malformed", "nan": "malformed", "text": "malformed", "crc": "corrupted",
          "truncate": "truncated"}
_UNKNOWN_TYPE = 0x7A


@dataclass(frozen=True)
class Emission:
    """The bytes of one spectrum on the link: ``pre`` (noise sent before it) and ``body`` (the spectrum)."""

    pre: bytes
    body: bytes

    @property
    def wire(self) -> bytes:
        return self.pre + self.body


def link_status(faults: Collection[str]) -> str:
    """Ground truth of a spectrum sent with ``faults``: ``sent``, ``corrupted``, ``truncated`` or ``malformed``."""
    status = "sent"
    for k, v in _LOSSY.items():
        if k in faults:
            status = v
    return status


def encode_emission(counts: NDArray[np.float64], *, seq: int, faults: Collection[str],
                    protocol: Literal["framed", "ascii"], rng: np.random.Generator, float_samples: bool = False,
                    integration_us: int = 0, device_time_us: int = 0, saturated: bool = False,
                    ascii_seq: bool = True, decimals: int | None = 0) -> Emission:
    """Encode one spectrum as the device sends it, damaged by ``faults`` (kinds of :data:`FAULT_KINDS`).

    Args:
        counts: the spectrum, detector counts (or real intensities).
        seq: its spectrum counter.
        protocol: ``"framed"`` (a SPECTRUM frame) or ``"ascii"`` (a data line).
        rng: draws the garbage bytes and the byte a CRC fault flips (in that order).
        float_samples: framed: float32 samples instead of uint16 (a NaN fault always uses float32).
        integration_us / device_time_us: framed SPECTRUM header fields, microseconds.
        saturated: framed: the saturated flag.
        ascii_seq: ASCII: the ``SEQ:`` prefix. decimals: ASCII digits after the point (None: 9 significant).
    """
    pre = b""
    if "garbage" in faults:
        junk = rng.integers(0, 256, int(rng.integers(5, 40)), dtype=np.uint8)
        junk = junk[(junk != SYNC[0]) & (junk != 0x0A)]  # pure garbage: never a sync or end of line
        pre += junk.tobytes() + (b"\n" if protocol == "ascii" else b"")
    wire = np.asarray(counts, dtype=np.float64)
    if "short" in faults:
        wire = wire[: wire.size // 2]  # the device says `pixels`, this one has half: valid CRC / line
    if "nan" in faults:
        wire = wire.copy()
        wire[wire.size // 2] = np.nan
    if protocol == "framed":
        if "unknown_type" in faults:
            pre += encode_frame(_UNKNOWN_TYPE, seq, b"future message")
        if "bad_length" in faults:
            pre += HEADER.pack(SYNC, VERSION, int(MsgType.SPECTRUM), seq, 0xFFFFFFF0)
        st = SampleType.FLOAT32 if float_samples or "nan" in faults else SampleType.UINT16
        payload = encode_spectrum(wire, sample_type=st, integration_time_us=integration_us,
                                  device_time_us=device_time_us, saturated=saturated)
        if "text" in faults:
            payload = b"ERR sensor read failed; this payload is text, not a spectrum"
        body = encode_frame(MsgType.SPECTRUM, seq, payload)
        if "crc" in faults:
            b = bytearray(body)
            b[HEADER.size + 20 + int(rng.integers(0, len(b) - HEADER.size - 24))] ^= 0xFF
            body = bytes(b)
        if "truncate" in faults:
            body = body[: len(body) // 2]
        return Emission(pre, body)
    if "unknown_type" in faults or "bad_length" in faults:
        pre += b"%%% not a spectrum %%%\n"
    body = encode_line(wire, seq if ascii_seq else None, decimals=decimals)
    if "crc" in faults:
        parts = body.split(b",")
        parts[len(parts) // 2] = b"1x" + parts[len(parts) // 2]
        body = b",".join(parts)
    if "text" in faults:
        parts = body.split(b",")
        parts[len(parts) // 3] = b"ERR"
        body = b",".join(parts)
    if "truncate" in faults:
        body = body[: len(body) // 2] + b"\n"
    return Emission(pre, body)
