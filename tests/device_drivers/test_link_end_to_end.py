"""End to end: the simulator on a real pty (driver through real pyserial) or loopback TCP, faults injected.

The driver must hand out exactly the spectra the simulator sent intact, in order, with identical counts, and
account for every corrupted frame or line in its counters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from device_drivers import (
    DeviceDisconnectedError,
    DeviceTimeoutError,
    DriverError,
    SimConfig,
    SimulatedInstrument,
    Spectrometer,
    open_device,
    read_truth,
)
from device_drivers.sim import SpectrumGenerator

StartSim = Callable[..., SimulatedInstrument]

FAULTS = {
    3: "crc",
    5: "garbage",
    7: "truncate",
    9: "unknown_type",
    11: ("bad_length", "saturate"),
    14: "disconnect",
    17: "stall",
}
N = 20  # spectra to receive: seq 0..21 minus the two corrupted ones


def _expected_counts(cfg: SimConfig, n: int) -> list[np.ndarray]:
    """The counts the simulator generated for seq 0..n-1 (same seeds, same order)."""
    gen = SpectrumGenerator(cfg.classes, cfg.catalog_seed, cfg.seed, pixels=cfg.pixels,
                            excitation_nm=cfg.excitation_nm, max_counts=cfg.max_counts)
    out = []
    for seq in range(n):
        kinds = FAULTS.get(seq, ())
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        out.append(gen.next(saturate="saturate" in kinds)[1])
    return out


@pytest.mark.parametrize("transport", ["pty", "tcp"])
@pytest.mark.parametrize("protocol", ["framed", "ascii"])
def test_exactly_the_spectra_sent_arrive_in_order_with_faults(
    start_sim: StartSim, tmp_path, transport: str, protocol: str
) -> None:
    cfg = SimConfig(rate_hz=200, pixels=256, protocol=protocol, faults=FAULTS, stall_s=1.0, reconnect_delay_s=0.1)
    truth_file = tmp_path / "truth.jsonl"
    sim = start_sim(cfg, transport=transport, truth_path=truth_file)
    with open_device(f"{sim.url}&timeout=0.2&retries=20&backoff=0.02") as dev:
        gen = dev.stream()
        got = [next(gen) for _ in range(N)]
        gen.close()
        stats = dev.stats
        info = dev.info
    seqs = [s.metadata["seq"] for s in got]
    delivered = [r.seq for r in sim.delivered()]
    assert seqs == delivered[:N] == [s for s in range(N + 2) if s not in (3, 7)]
    # identical counts (uint16 on the wire / integers in ASCII lines)
    expected = _expected_counts(cfg, N + 2)
    for sp in got:
        np.testing.assert_array_equal(sp.intensities, np.rint(expected[sp.metadata["seq"]]).astype(np.float32))
        np.testing.assert_array_equal(sp.axis, sim.gen.axis)
    # every corrupted frame / line accounted for: a damaged frame is missing from the sequence; a damaged line
    # still arrives with its SEQ: prefix and is rejected by number; in ASCII, every line of noise is rejected too
    assert stats["rejected"] == (2 if protocol == "framed" else 5)
    assert stats["lost"] == (2 if protocol == "framed" else 0)
    assert stats["reconnects"] == 1
    assert stats["timeouts"] >= 1  # a 1 s stall against a 0.25 s due time
    assert stats["saturated"] == 1
    assert [s.metadata["seq"] for s in got if s.metadata["saturated"]] == [11]
    after = next(s for s in got if s.metadata["seq"] == 14)
    assert after.metadata["gap_s"] > 0
    if protocol == "framed":
        assert (stats["crc_errors"], stats["truncated"], stats["unknown_type"], stats["bad_length"]) == (1, 1, 1, 1)
        assert stats["resyncs"] >= 4  # garbage, and the hunt after each bad frame
    else:
        assert stats["bad_lines"] == 5  # crc, truncate, garbage, and two "not a spectrum" lines
    assert info.serial == cfg.serial and info.pixels == 256
    # ground truth file: one record per emitted spectrum, the two lossy ones marked
    records = read_truth(truth_file)
    assert [(r.seq, r.status) for r in records if r.status != "sent"] == [(3, "corrupted"), (7, "truncated")]
    assert [r.label for r in records] == [r.label for r in sim.truth]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_float32_spectra_and_metadata(start_sim: StartSim, transport: str) -> None:
    cfg = SimConfig(rate_hz=500, pixels=64, sample_type="float32", integration_time_us=20_000)
    sim = start_sim(cfg, transport=transport)
    with open_device(sim.url) as dev:
        gen = dev.stream()
        got = [next(gen) for _ in range(5)]
        gen.close()
    expected = _expected_counts(cfg, 5)
    for i, sp in enumerate(got):
        np.testing.assert_array_equal(sp.intensities, expected[i].astype(np.float32))
        m = sp.metadata
        assert m["seq"] == i and m["device_serial"] == "SIM0001" and m["integration_time_us"] == 20_000
        assert m["saturated"] is False and m["t_wall"] > 0 and m["t_monotonic"] > 0
    assert [s.metadata["t_monotonic"] for s in got] == sorted(s.metadata["t_monotonic"] for s in got)


def test_acquire_on_request_and_integration_time(start_sim: StartSim) -> None:
    sim = start_sim(SimConfig(rate_hz=0, pixels=32), transport="pty")
    with open_device(sim.url) as dev:
        dev.set_integration_time_us(250_000)
        assert dev.get_integration_time_us() == 250_000
        a, b = dev.acquire(), dev.acquire()
    assert (a.metadata["seq"], b.metadata["seq"]) == (0, 1)
    assert b.metadata["integration_time_us"] == 250_000
    assert "ACQUIRE" in sim.commands and "START_STREAM" not in sim.commands
    assert "SET_INTEGRATION" in sim.commands


@pytest.mark.parametrize("protocol", ["framed", "ascii"])
def test_stall_raises_device_timeout_after_retries(start_sim: StartSim, protocol: str) -> None:
    sim = start_sim(SimConfig(rate_hz=100, pixels=32, protocol=protocol, faults={2: "stall"}, stall_s=60),
                    transport="pty")
    with open_device(f"{sim.url}&timeout=0.1&retries=2") as dev:
        gen = dev.stream()
        assert [next(gen).metadata["seq"] for _ in range(2)] == [0, 1]
        with pytest.raises(DeviceTimeoutError) as err:
            next(gen)
        assert isinstance(err.value, TimeoutError) and isinstance(err.value, DriverError)
        assert dev.stats["timeouts"] == 3


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_device_gone_for_good_raises_disconnected(start_sim: StartSim, transport: str) -> None:
    sim = start_sim(SimConfig(rate_hz=100, pixels=32), transport=transport)
    with open_device(f"{sim.url}&reconnects=2&backoff=0.01") as dev:
        gen = dev.stream()
        next(gen)
        sim.stop()
        with pytest.raises(DeviceDisconnectedError):
            for _ in range(1000):  # what was buffered comes out first
                next(gen)
        assert dev.stats["reconnects"] == 0


def test_open_fails_cleanly_without_a_device(tmp_path) -> None:
    with pytest.raises(DeviceDisconnectedError):
        open_device(f"serial://{tmp_path}/no-such-tty")


def test_ascii_pixels_header_rejects_a_truncated_first_line(start_sim: StartSim) -> None:
    sim = start_sim(SimConfig(rate_hz=200, pixels=40, protocol="ascii", faults={0: "truncate"}), transport="tcp")
    with open_device(sim.url) as dev:
        gen = dev.stream()
        first = next(gen)
        gen.close()
        assert first.metadata["seq"] == 1 and len(first) == 40
        assert dev.stats["bad_lines"] == 1 and dev.stats["lost"] == 0  # nothing numbered before seq 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_faults_every_lost_frame_is_counted(start_sim: StartSim, seed: int) -> None:
    cfg = SimConfig(rate_hz=500, pixels=64, seed=seed, fault_rate=0.25,
                    random_faults=("garbage", "crc", "truncate", "saturate"))
    sim = start_sim(cfg, transport="pty")
    with open_device(sim.url) as dev:
        assert isinstance(dev, Spectrometer)
        gen = dev.stream()
        got = [next(gen).metadata for _ in range(40)]
        gen.close()
        stats = dict(dev.stats)
        sent = list(sim.truth)  # after the counters: everything the driver can have seen by then
    last = got[-1]["seq"]
    emitted = [r for r in sent if r.seq <= last]
    assert [m["seq"] for m in got] == [r.seq for r in emitted if r.delivered]
    lossy = [r for r in emitted if not r.delivered]
    assert lossy, "the seed injects at least one lossy fault"
    # Every lossy frame up to the last one handed out is counted; the driver may also have read (and counted)
    # damaged frames after it in the same read, but never more than the simulator really damaged.
    later = [r for r in sent if r.seq > last and not r.delivered]
    for key, lost in (("lost", lossy), ("crc_errors", [r for r in lossy if r.status == "corrupted"]),
                      ("truncated", [r for r in lossy if r.status == "truncated"])):
        extra = [r for r in later if key == "lost" or r.status == {"crc_errors": "corrupted"}.get(key, "truncated")]
        assert len(lost) <= stats[key] <= len(lost) + len(extra), (key, stats[key], len(lost), len(extra))
    assert [m["seq"] for m in got if m["saturated"]] == [r.seq for r in emitted if r.saturated and r.delivered]
