"""The simulator's fault injection as pure bytes (device_drivers.sim.faults), and its bounded memory."""

from __future__ import annotations

import zlib
from typing import Any, Literal

import numpy as np
import pytest

from device_drivers import DeviceSettingError, SimConfig, open_device
from device_drivers.framing import HEADER, FrameParser, MsgType, decode_spectrum
from device_drivers.sim import driver as sim_driver
from device_drivers.sim.faults import encode_emission, link_status

COUNTS = np.arange(100, 132, dtype=np.float64)


def _emit(*faults: str, protocol: Literal["framed", "ascii"] = "framed", seed: int = 3) -> tuple[bytes, bytes]:
    em = encode_emission(COUNTS, seq=9, faults=faults, protocol=protocol, rng=np.random.default_rng(seed),
                         integration_us=1000)
    return em.pre, em.body


def _crc_ok(frame: bytes) -> bool:
    return int.from_bytes(frame[-4:], "little") == zlib.crc32(frame[2:-4])


def test_an_intact_spectrum_parses_back_exactly() -> None:
    pre, body = _emit()
    assert pre == b"" and _crc_ok(body)
    (frame,) = FrameParser().feed(body)
    assert frame.type == MsgType.SPECTRUM and frame.seq == 9
    np.testing.assert_array_equal(decode_spectrum(frame.payload).counts, COUNTS)
    assert link_status(()) == "sent"


def test_crc_flips_one_sample_byte_and_truncate_halves_the_frame() -> None:
    _, good = _emit()
    _, bad = _emit("crc")
    diff = [i for i in range(len(good)) if good[i] != bad[i]]
    assert len(bad) == len(good) and len(diff) == 1 and HEADER.size + 20 <= diff[0] < len(good) - 4
    assert bad[diff[0]] == good[diff[0]] ^ 0xFF and not _crc_ok(bad)
    _, cut = _emit("truncate")
    assert cut == good[: len(good) // 2]
    assert FrameParser().feed(bad) == [] and FrameParser().feed(cut) == []
    assert link_status(("crc",)) == "corrupted" and link_status(("crc", "truncate")) == "truncated"


@pytest.mark.parametrize("kind", ["short", "nan", "text"])
def test_malformed_spectra_travel_intact(kind: str) -> None:
    _, body = _emit(kind)
    assert _crc_ok(body)
    (frame,) = FrameParser().feed(body)
    assert frame.seq == 9 and link_status((kind,)) == "malformed"


def test_garbage_never_holds_a_sync_or_an_end_of_line_and_is_sent_before_the_spectrum() -> None:
    for seed in range(20):
        pre, body = _emit("garbage", seed=seed)
        assert pre and 0xA5 not in pre and b"\n" not in pre
        assert body == _emit(seed=seed)[1], "the spectrum after garbage is intact"
    pre, body = _emit("garbage", protocol="ascii")
    assert pre.endswith(b"\n") and pre.count(b"\n") == 1 and body.startswith(b"9:")


def test_ascii_faults_damage_the_line() -> None:
    _, good = _emit(protocol="ascii")
    assert good == b"9:" + ",".join(str(int(v)) for v in COUNTS).encode() + b"\n"
    assert b"1x" in _emit("crc", protocol="ascii")[1] and b"ERR" in _emit("text", protocol="ascii")[1]
    cut = _emit("truncate", protocol="ascii")[1]
    assert cut == good[: len(good) // 2] + b"\n"


def test_sim_url_keeps_only_the_latest_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_driver, "TRUTH_KEPT", 3)
    with open_device("sim://?rate=0&pixels=16") as dev:
        seqs = [dev.acquire().metadata["seq"] for _ in range(7)]
    assert seqs == list(range(7)) and [r.seq for r in dev.truth] == [4, 5, 6]


@pytest.mark.parametrize("kwargs", [{"rate_hz": -1.0}, {"protocol": "morse"}, {"faults": {1: "gremlins"}}])
def test_impossible_simulator_settings_are_setting_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DeviceSettingError):
        SimConfig(**kwargs)
