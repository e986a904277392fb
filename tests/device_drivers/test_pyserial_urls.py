"""pyserial URLs through ``serial://``: ports are opened with ``serial_for_url`` (docs/serial-protocol.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from device_drivers import DeviceURLError, SimConfig, SimulatedInstrument, UnknownSchemeError, open_device
from device_drivers.serial import SerialTransport

StartSim = Callable[..., SimulatedInstrument]


def test_spy_traces_every_byte_of_a_real_conversation(start_sim: StartSim, tmp_path: Path) -> None:
    sim = start_sim(SimConfig(rate_hz=0, pixels=16), transport="pty")  # spy wraps a real port, here a pty
    trace = tmp_path / "trace.txt"
    with open_device(f"serial://spy://{sim.path}?file={trace}&protocol=framed") as dev:
        got = [dev.acquire().metadata["seq"] for _ in range(2)]
    assert got == [0, 1]
    text = trace.read_text(encoding="ascii")
    sent, received = _spy_bytes(text, "TX"), _spy_bytes(text, "RX")
    # STOP_STREAM then HELLO, byte for byte (docs/serial-protocol.md section 1.9), and the INFO answering HELLO
    assert sent.startswith(bytes.fromhex("a55a01060100000000000000 5c7af8b3 a55a01010200000000000000 76101659"))
    assert bytes.fromhex("a55a011002000000") in received
    assert sent[-16:][:4] == bytes.fromhex("a55a0106"), "the whole trace, to the STOP_STREAM at close"


def _spy_bytes(trace: str, direction: str) -> bytes:
    """The bytes of one direction of a pyserial spy:// hex dump (``TIME DIR OFFSET  16 bytes  ascii``)."""
    out = bytearray()
    for line in trace.splitlines():
        if line[11:15].strip() == direction:
            out += bytes.fromhex(line[22:71])
    return bytes(out)


def test_socket_url_streams_like_tcp(start_sim: StartSim) -> None:
    sim = start_sim(SimConfig(rate_hz=0, pixels=16, protocol="ascii"), transport="tcp")
    with open_device(f"serial://socket://{sim.path}?protocol=ascii") as dev:
        it = dev.stream()
        seqs = [next(it).metadata["seq"] for _ in range(3)]
        it.close()
    assert seqs == [0, 1, 2]


def test_loop_url_is_a_byte_loopback() -> None:
    t = SerialTransport("loop://")
    try:
        t.write(b"\xa5\x5a\x01", 1.0)
        assert t.read(10, 1.0) == b"\xa5\x5a\x01"
        assert t.read(10, 0.01) == b""
    finally:
        t.close()


@pytest.mark.parametrize(("url", "match"), [
    ("serial://nosuch://x", "pyserial has no handler for 'nosuch'"),
    ("serial://loop://?file=trace.txt", r"unknown option\(s\) \['file'\]"),  # spy's option, not loop's
    ("serial://spy://loop://?colour=1", r"unknown option\(s\) \['colour'\]"),
])
def test_bad_pyserial_urls_are_refused_before_anything_opens(url: str, match: str) -> None:
    with pytest.raises(DeviceURLError, match=match):
        open_device(url)


@pytest.mark.parametrize("url", ["loop://", "spy://COM3", "rfc2217://10.0.0.1:4001"])
def test_a_bare_pyserial_url_is_not_a_device_url_and_the_error_says_where_it_goes(url: str) -> None:
    with pytest.raises(UnknownSchemeError, match=f"serial://{url}"):
        open_device(url)

