"""Byte-exact tests of the framed protocol: encoder, parser (split, merged, garbage, every error counted)."""

from __future__ import annotations

import binascii
import itertools
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import ProtocolError
from device_drivers.framing import (
    HEADER,
    MAX_DEVICE_TEXT,
    MAX_PAYLOAD,
    AxisUnit,
    Frame,
    FrameParser,
    MsgType,
    SampleType,
    crc32,
    decode_ack,
    decode_axis,
    decode_error,
    decode_info,
    decode_spectrum,
    encode_ack,
    encode_axis,
    encode_error,
    encode_frame,
    encode_info,
    encode_spectrum,
    encode_u32,
)

# Written out by hand from the layout in docs/serial-protocol.md, not produced by the encoder.
HELLO_SEQ1 = bytes.fromhex("a55a 01 01 01000000 00000000 951799d7")
SET_INT_100MS = bytes.fromhex("a55a 01 03 02000000 04000000 a0860100 6c2bc728")
SPECTRUM_PAYLOAD = bytes.fromhex(
    "01 01 0000 a0860100 15cd5b0700000000 04000000"  # uint16, saturated, 100000 us, t=123456789 us, 4 pixels
    "6400 e803 ffff 0700"  # 100, 1000, 65535, 7
)
SPECTRUM_SEQ42 = bytes.fromhex("a55a 01 13 2a000000 1c000000") + SPECTRUM_PAYLOAD + bytes.fromhex("cb7ed1b0")


def test_crc_is_crc32_iso_hdlc() -> None:
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(HELLO_SEQ1[2:-4]) == binascii.crc32(HELLO_SEQ1[2:-4])


def test_encoder_is_byte_exact() -> None:
    assert encode_frame(MsgType.HELLO, 1) == HELLO_SEQ1
    assert encode_frame(MsgType.SET_INTEGRATION, 2, encode_u32(100_000)) == SET_INT_100MS
    payload = encode_spectrum(np.array([100, 1000, 65535, 7]), integration_time_us=100_000,
                              device_time_us=123456789, saturated=True)
    assert payload == SPECTRUM_PAYLOAD
    assert encode_frame(MsgType.SPECTRUM, 42, payload) == SPECTRUM_SEQ42


def test_parser_whole_frames_and_payload() -> None:
    p = FrameParser()
    frames = p.feed(SPECTRUM_SEQ42)
    assert frames == [Frame(MsgType.SPECTRUM, 42, SPECTRUM_PAYLOAD)]
    sp = decode_spectrum(frames[0].payload)
    np.testing.assert_array_equal(sp.counts, [100, 1000, 65535, 7])
    assert (sp.integration_time_us, sp.device_time_us, sp.saturated) == (100_000, 123456789, True)
    assert p.counters.frames_ok == 1 and p.counters.dropped_bytes == 0 and p.pending == 0


@pytest.mark.parametrize("cut", range(1, len(SPECTRUM_SEQ42)))
def test_split_reads(cut: int) -> None:
    p = FrameParser()
    assert p.feed(SPECTRUM_SEQ42[:cut]) == []
    assert p.feed(SPECTRUM_SEQ42[cut:]) == [Frame(MsgType.SPECTRUM, 42, SPECTRUM_PAYLOAD)]
    assert p.counters.resyncs == 0 and p.counters.dropped_bytes == 0


def test_byte_by_byte_and_merged_reads() -> None:
    stream = HELLO_SEQ1 + SPECTRUM_SEQ42 + SET_INT_100MS
    p = FrameParser()
    out = [f for b in stream for f in p.feed(bytes([b]))]
    assert [(f.type, f.seq) for f in out] == [(1, 1), (0x13, 42), (3, 2)]
    merged = FrameParser().feed(stream * 3)
    assert [f.seq for f in merged] == [1, 42, 2] * 3


def test_garbage_between_frames_is_dropped_and_counted() -> None:
    junk1, junk2 = b"\x00\x01noise\xff", b"\xa5\x00\x5a\x5a"  # the second holds half a sync
    p = FrameParser()
    out = p.feed(junk1 + HELLO_SEQ1 + junk2 + SPECTRUM_SEQ42 + b"\xa5")
    assert [f.seq for f in out] == [1, 42]
    assert p.counters.resyncs == 2
    assert p.counters.dropped_bytes == len(junk1) + len(junk2)
    assert p.pending == 1  # a trailing 0xA5 may start the next sync


def test_bad_crc_is_counted_never_returned(caplog: pytest.LogCaptureFixture) -> None:
    bad = bytearray(SPECTRUM_SEQ42)
    bad[20] ^= 0x01
    p = FrameParser()
    with caplog.at_level(logging.WARNING, logger="device_drivers.framing"):
        out = p.feed(bytes(bad) + HELLO_SEQ1)
    assert [f.seq for f in out] == [1]
    assert p.counters.crc_errors == 1 and p.counters.frames_ok == 1
    assert p.counters.dropped_bytes == len(SPECTRUM_SEQ42)
    assert "CRC error" in caplog.text


def test_impossible_length_is_counted_and_skipped() -> None:
    header = bytes.fromhex("a55a 01 13 07000000 ffffff7f")  # 2 GiB payload
    p = FrameParser(max_payload=MAX_PAYLOAD)
    out = p.feed(header + HELLO_SEQ1)
    assert [f.seq for f in out] == [1]
    assert p.counters.bad_length == 1 and p.counters.dropped_bytes == len(header)


def test_unknown_type_with_good_crc_is_counted_and_skipped() -> None:
    unknown = encode_frame(0x7A, 9, b"from the future")
    p = FrameParser()
    out = p.feed(unknown + HELLO_SEQ1)
    assert [f.seq for f in out] == [1]
    assert p.counters.unknown_type == 1 and p.counters.crc_errors == 0


def test_other_version_is_counted() -> None:
    v2 = encode_frame(MsgType.HELLO, 5, version=2)
    p = FrameParser()
    assert [f.seq for f in p.feed(v2 + HELLO_SEQ1)] == [1]
    assert p.counters.bad_version == 1


def test_truncated_frame_does_not_swallow_the_next_one() -> None:
    cut = SPECTRUM_SEQ42[: len(SPECTRUM_SEQ42) // 2]
    p = FrameParser()
    out = p.feed(cut + SPECTRUM_SEQ42 + HELLO_SEQ1)
    assert [f.seq for f in out] == [42, 1]
    assert p.counters.truncated == 1 and p.counters.crc_errors == 0
    assert p.counters.dropped_bytes == len(cut)


def test_drop_partial_when_the_line_goes_quiet() -> None:
    p = FrameParser()
    assert p.feed(SPECTRUM_SEQ42[:30]) == []
    assert p.drop_partial() == []
    assert p.counters.truncated == 1 and p.pending == 0 and p.counters.dropped_bytes == 30
    assert [f.seq for f in p.feed(HELLO_SEQ1)] == [1]


def test_payload_codecs_round_trip() -> None:
    x = np.array([0.5, -3.25, 1e6], dtype=np.float32)
    sp = decode_spectrum(encode_spectrum(x, sample_type=SampleType.FLOAT32))
    np.testing.assert_array_equal(sp.counts, x)
    assert sp.sample_type == SampleType.FLOAT32 and not sp.saturated
    axis = np.linspace(350.0, 1850.0, 5)
    got, unit = decode_axis(encode_axis(axis, AxisUnit.RAMAN_SHIFT_CM))
    np.testing.assert_array_equal(got, axis)
    assert unit == AxisUnit.RAMAN_SHIFT_CM
    assert decode_info(encode_info({"model": "X", "pixels": 5})) == {"model": "X", "pixels": 5}
    assert decode_ack(encode_ack(MsgType.SET_INTEGRATION, 123)) == (MsgType.SET_INTEGRATION, 123)
    assert decode_error(encode_error(7, "lamp off")) == (7, "lamp off")


@pytest.mark.parametrize("payload", [
    SPECTRUM_PAYLOAD[:10],  # shorter than its header
    SPECTRUM_PAYLOAD[:-2],  # one pixel short
    b"\x09" + SPECTRUM_PAYLOAD[1:],  # unknown sample type
])
def test_malformed_spectrum_payload_raises_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_spectrum(payload)


def test_encoder_refuses_oversized_payload() -> None:
    with pytest.raises(ProtocolError):
        encode_frame(MsgType.SPECTRUM, 0, bytes(MAX_PAYLOAD + 1))


_known = st.sampled_from([int(t) for t in MsgType])
_frames = st.lists(st.tuples(_known, st.integers(0, 2**32 - 1), st.binary(max_size=300)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(frames=_frames, cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_random_frames_chopped_anywhere_parse_back_exactly(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(t, s, pl) for t, s, pl in frames)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    p = FrameParser()
    out: list[Frame] = []
    for a, b in itertools.pairwise(bounds):
        out += p.feed(stream[a:b])
    assert [(f.type, f.seq, f.payload) for f in out] == frames
    assert p.counters.dropped_bytes == 0 and p.pending == 0


@settings(max_examples=100, deadline=None)
@given(frames=_frames.filter(bool), junk=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=12))
def test_garbage_between_random_frames_loses_no_frame(
    frames: list[tuple[int, int, bytes]], junk: list[bytes]
) -> None:
    junk = [j.replace(b"\xa5", b"\x00") for j in junk]  # garbage that holds no sync byte
    stream = b"".join(junk[i % len(junk)] + encode_frame(t, s, pl) for i, (t, s, pl) in enumerate(frames))
    p = FrameParser()
    out = p.feed(stream)
    assert [(f.type, f.seq, f.payload) for f in out] == frames
    assert p.counters.dropped_bytes == sum(len(junk[i % len(junk)]) for i in range(len(frames)))


def test_damaged_spectrum_frames_are_noted_by_their_header_seq() -> None:
    """CRC errors and cut frames of type SPECTRUM leave (seq, why) notes; other types and good frames do not."""
    spec = [encode_frame(MsgType.SPECTRUM, s, encode_spectrum(np.arange(8))) for s in (40, 41, 42)]
    bad = bytearray(spec[0])
    bad[HEADER.size + 5] ^= 0xFF
    info = bytearray(encode_frame(MsgType.INFO, 7, b'{"a":1}'))
    info[HEADER.size + 1] ^= 0xFF
    p = FrameParser()
    got = p.feed(bytes(bad) + bytes(info) + spec[1][:30] + spec[2])
    assert [f.seq for f in got] == [42]
    assert p.take_garbled() == [(40, "CRC error"), (41, "truncated (the next frame starts inside it)")]
    assert p.take_garbled() == []
    p.feed(spec[0][:25])
    p.drop_partial()
    assert p.take_garbled() == [(40, "truncated (the line went quiet mid-frame)")]


def test_device_text_is_bounded() -> None:
    code, msg = decode_error(encode_error(9, "x" * 100_000))
    assert code == 9 and len(msg) < MAX_DEVICE_TEXT + 50 and "100000 characters, cut" in msg
    assert decode_error(encode_error(1, "short"))[1] == "short"
