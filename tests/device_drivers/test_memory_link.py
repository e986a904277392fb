"""The host's side of both protocols, byte for byte, over the in-memory link (no pty, no socket).

The expected bytes are the hex of docs/serial-protocol.md (sections 1.9 and 2.1), written out here by hand and
checked twice: against the frame layout of section 1.1 (sync, version, type, seq, length, CRC-32 computed with
zlib, not with the code under test) and against the document itself, so code, test and document cannot drift
apart.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from device_drivers._base import RejectedFrame
from device_drivers.errors import DeviceDisconnectedError, DeviceSettingError, DeviceURLError
from device_drivers.framing import (
    AxisUnit,
    FrameParser,
    MsgType,
    SampleType,
    encode_ack,
    encode_axis,
    encode_frame,
    encode_info,
    encode_spectrum,
)
from device_drivers.link import AsciiSpectrometer, FramedSpectrometer, LinkOptions
from device_drivers.memory import MemoryLink, MemoryTransport
from spectral_core.spectrum import Spectrum

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-protocol.md"
FAST = LinkOptions(timeout_s=0.5, retries=0, reconnects=4, backoff_s=0.001, handshake_timeout_s=1.0)
PIXELS = 4


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# Host frames of the documented conversation (docs/serial-protocol.md section 1.9), seq = the host's counter.
STOP_1 = h("a55a 01 06 01000000 00000000 5c7af8b3")
HELLO_2 = h("a55a 01 01 02000000 00000000 76101659")
GET_AXIS_3 = h("a55a 01 02 03000000 00000000 2d2c31ac")
SET_INTEGRATION_4 = h("a55a 01 03 04000000 04000000 a0860100 8c8efac7")
START_5 = h("a55a 01 05 05000000 00000000 63483f0e")
# after the device vanished: the same handshake on the new connection, the host's counter going on
STOP_6 = h("a55a 01 06 06000000 00000000 45733db9")
HELLO_7 = h("a55a 01 01 07000000 00000000 121ef611")
GET_AXIS_8 = h("a55a 01 02 08000000 00000000 7b305bf1")
SET_INTEGRATION_9 = h("a55a 01 03 09000000 04000000 a0860100 628f5559")
START_10 = h("a55a 01 05 0a000000 00000000 cf5a1fd7")
STOP_11 = h("a55a 01 06 0b000000 00000000 94663822")

TYPES = {0x01: "HELLO", 0x02: "GET_AXIS", 0x03: "SET_INTEGRATION", 0x05: "START_STREAM", 0x06: "STOP_STREAM"}


def _doc_hex_lines() -> set[bytes]:
    """Every line of hex bytes in the document, as bytes (``|`` separators and trailing notes removed)."""
    out = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        code = re.split(r"\s{2,}|#", line.strip())[0]
        if re.fullmatch(r"[0-9a-f]{2}(?:[ |]+[0-9a-f]{2})*", code):
            out.add(h(code.replace("|", " ")))
    return out


@pytest.mark.parametrize("frame", [
    pytest.param(v, id=k) for k, v in {
        "STOP_1": STOP_1, "HELLO_2": HELLO_2, "GET_AXIS_3": GET_AXIS_3, "SET_INTEGRATION_4": SET_INTEGRATION_4,
        "START_5": START_5, "STOP_6": STOP_6, "HELLO_7": HELLO_7, "GET_AXIS_8": GET_AXIS_8,
        "SET_INTEGRATION_9": SET_INTEGRATION_9, "START_10": START_10, "STOP_11": STOP_11}.items()
])
def test_the_expected_frames_follow_the_documented_layout(frame: bytes) -> None:
    """The fixtures themselves, checked against section 1.1 without the code under test."""
    assert frame[:3] == b"\xa5\x5a\x01" and frame[3] in TYPES
    n = int.from_bytes(frame[8:12], "little")
    assert len(frame) == 16 + n
    assert int.from_bytes(frame[-4:], "little") == zlib.crc32(frame[2:-4])
    assert frame in _doc_hex_lines(), f"{TYPES[frame[3]]} seq {frame[4]} is not written in {DOC.name}"


class FramedDevice:
    """The device side of the framed protocol, scripted: replies to commands, spectra on START_STREAM/ACQUIRE.

    Its spectrum counter survives a reconnect, as a real device's does. ``burst`` spectra answer a start.
    """

    def __init__(self, burst: int = 3, first_seq: int = 42) -> None:
        self.parser = FrameParser()
        self.seq = first_seq
        self.burst = burst
        self.integration_us = 50_000
        self.axis = np.array([400.0, 800.0, 1200.0, 1600.0])
        self.commands: list[str] = []

    def spectrum(self) -> bytes:
        counts = np.array([100, 1000, 2000, 7], dtype=np.float64) + self.seq
        payload = encode_spectrum(counts, sample_type=SampleType.UINT16, integration_time_us=self.integration_us,
                                  device_time_us=self.seq, saturated=False)
        self.seq += 1
        return encode_frame(MsgType.SPECTRUM, self.seq - 1, payload)

    def __call__(self, data: bytes) -> bytes:
        out = b""
        for f in self.parser.feed(data):
            self.commands.append(MsgType(f.type).name)
            if f.type == MsgType.HELLO:
                out += encode_frame(MsgType.INFO, f.seq, encode_info({
                    "model": "MemDev", "serial": "M1", "pixels": PIXELS, "excitation_nm": 785.0,
                    "max_counts": 65535, "integration_us": self.integration_us}))
            elif f.type == MsgType.GET_AXIS:
                out += encode_frame(MsgType.AXIS, f.seq, encode_axis(self.axis, AxisUnit.RAMAN_SHIFT_CM))
            elif f.type == MsgType.SET_INTEGRATION:
                self.integration_us = int.from_bytes(f.payload, "little")
                out += encode_frame(MsgType.ACK, f.seq, encode_ack(f.type, self.integration_us))
            elif f.type == MsgType.STOP_STREAM:
                out += encode_frame(MsgType.ACK, f.seq, encode_ack(f.type, 0))
            elif f.type in (MsgType.START_STREAM, MsgType.ACQUIRE):
                out += b"".join(self.spectrum() for _ in range(self.burst if f.type == MsgType.START_STREAM else 1))
        return out


def _open_framed(device: FramedDevice) -> tuple[FramedSpectrometer, MemoryLink]:
    link = MemoryLink(device)
    return FramedSpectrometer("memory://framed", link, FAST, integration_time_us=100_000), link


def test_framed_handshake_and_a_command_with_an_argument_byte_for_byte() -> None:
    device = FramedDevice()
    dev, link = _open_framed(device)
    with dev:
        assert bytes(link.current.written) == STOP_1 + HELLO_2 + GET_AXIS_3 + SET_INTEGRATION_4
        assert link.current.writes == [STOP_1, HELLO_2, GET_AXIS_3, SET_INTEGRATION_4], "one frame a write"
        assert dev.info.serial == "M1" and dev.info.pixels == PIXELS
        assert dev.get_integration_time_us() == 100_000 == device.integration_us  # the ACK's value
    assert device.commands == ["STOP_STREAM", "HELLO", "GET_AXIS", "SET_INTEGRATION", "STOP_STREAM"]


def test_framed_reconnect_after_a_disconnect_repeats_the_handshake_byte_for_byte() -> None:
    device = FramedDevice(burst=3)
    dev, link = _open_framed(device)
    with dev:
        it = dev.stream()
        first = [next(it) for _ in range(3)]
        assert bytes(link.current.written).endswith(START_5)
        link.current.disconnect("cable pulled")
        link.refuse(2)  # the port is absent twice before it comes back
        after = next(it)
        it.close()
        stats = dev.stats
    assert [s.metadata["seq"] for s in [*first, after]] == [42, 43, 44, 45], "nothing lost, nothing twice"
    assert "gap_s" in after.metadata and stats["reconnects"] == 1 and link.refused == 2
    assert len(link.transports) == 2
    assert bytes(link.transports[0].written) == STOP_1 + HELLO_2 + GET_AXIS_3 + SET_INTEGRATION_4 + START_5
    # the new connection: the whole handshake again, the integration time set again, streaming restarted,
    # then STOP_STREAM when the stream is closed
    assert bytes(link.transports[1].written).startswith(
        STOP_6 + HELLO_7 + GET_AXIS_8 + SET_INTEGRATION_9 + START_10 + STOP_11)


def test_a_setting_sent_while_the_link_is_down_reopens_it_and_reaches_the_device() -> None:
    device = FramedDevice()
    dev, link = _open_framed(device)
    with dev:
        link.current.disconnect()
        dev.set_integration_time_us(20_000)
        assert dev.get_integration_time_us() == 20_000 == device.integration_us
        assert len(link.transports) == 2 and dev.stats["reconnects"] == 1
        set_int = [w for w in link.current.writes if w[3] == MsgType.SET_INTEGRATION]
        assert set_int and all(w[12:16] == (20_000).to_bytes(4, "little") for w in set_int)


def test_garbage_from_the_device_never_changes_the_host_bytes_and_costs_no_spectrum() -> None:
    device = FramedDevice(burst=2)
    junk = bytes(range(0x20, 0x60))  # no sync byte in it

    def garbage_first(t: MemoryTransport) -> None:
        t.push(junk)  # buffered before the host opened the port: discarded by the handshake

    link = MemoryLink(device, on_open=garbage_first)
    with FramedSpectrometer("memory://", link, FAST, integration_time_us=100_000) as dev:
        assert link.current.discarded == len(junk)
        it = dev.stream()
        got = [next(it)]
        link.current.push(junk + device.spectrum() + junk[:7])
        got += [next(it), next(it)]
        it.close()
        stats = dev.stats
    assert [s.metadata["seq"] for s in got] == [42, 43, 44]
    assert stats["dropped_bytes"] == len(junk) + 7 and stats["lost"] == 0
    writes = link.current.writes
    assert writes[:6] == [STOP_1, HELLO_2, GET_AXIS_3, SET_INTEGRATION_4, START_5, STOP_6]
    assert len(writes) == 7 and writes[6][3] == MsgType.STOP_STREAM  # and once more at close


def test_a_spectrum_damaged_on_the_memory_link_is_reported_by_its_seq() -> None:
    device = FramedDevice(burst=1)
    dev, link = _open_framed(device)
    with dev:
        ev = dev.events()
        assert isinstance(next(ev), Spectrum)
        bad = bytearray(device.spectrum())
        bad[-6] ^= 0xFF  # a flipped sample byte: the CRC fails
        link.current.push(bytes(bad) + device.spectrum())
        rejected, good = next(ev), next(ev)
        ev.close()
    assert isinstance(rejected, RejectedFrame) and rejected.seq == 43 and rejected.kind == "garbled"
    assert isinstance(good, Spectrum) and good.metadata["seq"] == 44


def test_the_reconnect_budget_is_spent_against_an_absent_port() -> None:
    device = FramedDevice(burst=1)
    dev, link = _open_framed(device)
    with dev:
        it = dev.stream()
        next(it)
        link.current.disconnect()
        link.refuse(100)
        with pytest.raises(DeviceDisconnectedError, match="could not reconnect in 4 attempts"):
            next(it)
    assert link.refused == FAST.reconnects and len(link.transports) == 1


# --------------------------------------------------------------------------------------------- ASCII

HEADER = b"# pixels: 4\n# axis_cm-1: 400,800,1200,1600\n# serial: A1\n"


class AsciiDevice:
    """An ASCII board: on ``START`` it prints its header and ``burst`` numbered lines; ``INT n`` sets n us."""

    def __init__(self, burst: int = 2) -> None:
        self.seq = 7
        self.burst = burst
        self.integration_us: int | None = None

    def line(self) -> bytes:
        self.seq += 1
        return f"{self.seq - 1}: 10,20,30,{self.seq - 1}\n".encode()

    def __call__(self, data: bytes) -> bytes:
        if data.startswith(b"INT "):
            self.integration_us = int(data.split()[1])
        if data == b"START\n":
            return HEADER + b"".join(self.line() for _ in range(self.burst))
        return b""


def test_ascii_handshake_command_with_argument_and_reconnect_byte_for_byte() -> None:
    device = AsciiDevice(burst=2)
    link = MemoryLink(device)
    with AsciiSpectrometer("memory://ascii", link, FAST, integration_time_us=100_000) as dev:
        assert link.current.writes == [b"INT 100000\n", b"START\n"]
        assert device.integration_us == 100_000 and dev.info.serial == "A1"
        it = dev.stream()
        got = [next(it) for _ in range(4)]  # two lines answered each START
        link.current.disconnect()
        got.append(next(it))
        it.close()
        dev.set_integration_time_us(20_000)
    assert [s.metadata["seq"] for s in got] == [7, 8, 9, 10, 11]
    assert "gap_s" in got[-1].metadata
    assert link.transports[0].writes == [b"INT 100000\n", b"START\n", b"START\n"]
    assert link.transports[1].writes == [b"INT 100000\n", b"START\n", b"START\n", b"STOP\n", b"INT 20000\n",
                                         b"STOP\n"]
    assert device.integration_us == 20_000
    doc = DOC.read_text(encoding="utf-8")
    for text in ("INT 100000\\n START\\n", "INT 100000\\n START\\n START\\n"):
        assert text in doc, f"{text!r} is not written in {DOC.name}"


# --------------------------------------------------------------------------------------------- the link itself

def test_memory_transport_scripts_by_exact_bytes_and_records_every_write() -> None:
    t = MemoryTransport({b"PING\n": b"PONG\n"})
    t.write(b"PING\n", 0.1)
    t.write(b"PING", 0.1)  # not the exact bytes of the script: no answer
    assert t.read(3, 0.0) == b"PON" and t.read(100, 0.0) == b"G\n" and t.read(100, 0.01) == b""
    assert t.written == bytearray(b"PING\nPING") and t.writes == [b"PING\n", b"PING"]
    t.push(b"late")
    t.disconnect("unplugged")
    assert t.read(100, 0.0) == b"late"  # what was sent before the unplug is still read
    with pytest.raises(DeviceDisconnectedError, match="unplugged"):
        t.read(100, 0.0)
    with pytest.raises(DeviceDisconnectedError):
        t.write(b"x", 0.1)
    assert t.written == bytearray(b"PING\nPING")


def test_a_bad_integration_time_is_a_setting_error_not_a_url_error() -> None:
    dev, link = _open_framed(FramedDevice())
    with dev:
        n = len(link.current.written)
        for bad in (0, -5):
            with pytest.raises(DeviceSettingError, match="integration time must be positive") as err:
                dev.set_integration_time_us(bad)
            assert isinstance(err.value, ValueError) and not isinstance(err.value, DeviceURLError)
        assert len(link.current.written) == n, "nothing was sent for a refused setting"
