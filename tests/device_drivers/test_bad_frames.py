"""Every bad frame or line is reported, in stream order, with its reason and seq (issue 13 item 9).

The simulator sends spectra intact on the link but malformed (a valid CRC and 500 pixels where the device said
1000, a NaN sample, text), or damaged (CRC error, truncated). ``events()`` must yield exactly one item per
spectrum sent: the good ones as spectra, every other one as a RejectedFrame, with or without ``SEQ:`` on the
ASCII lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest

from device_drivers import RejectedFrame, SimConfig, SimulatedInstrument, open_device
from device_drivers._transport import Transport
from device_drivers.link import MAX_GAP_RECORDS, _LinkDriver
from spectral_core.spectrum import Spectrum

StartSim = Callable[..., SimulatedInstrument]

BAD = {3: "short", 5: "nan", 8: "text", 10: "crc", 13: "truncate", 14: "short", 15: "crc"}
N = 20


def _items(dev: Any, n: int) -> list[Spectrum | RejectedFrame]:
    """The first ``n`` events of ``dev``."""
    it = dev.events()
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def _seq(item: Spectrum | RejectedFrame) -> int | None:
    return item.seq if isinstance(item, RejectedFrame) else item.metadata["seq"]


@pytest.mark.parametrize(("protocol", "numbered"), [("framed", True), ("ascii", True), ("ascii", False)])
def test_every_spectrum_sent_is_one_event_good_or_rejected(start_sim: StartSim, protocol: str,
                                                           numbered: bool) -> None:
    cfg = SimConfig(rate_hz=400, pixels=1000, protocol=protocol, ascii_seq=numbered, faults=BAD)
    sim = start_sim(cfg, transport="tcp")
    with open_device(f"{sim.url}&timeout=0.5") as dev:
        got = _items(dev, N)
        stats = dev.stats
    truth = list(sim.truth)[:N]
    assert [_seq(i) for i in got] == [r.seq for r in truth] == list(range(N)), "one event per spectrum, in order"
    rejected = {i.seq: i for i in got if isinstance(i, RejectedFrame)}
    assert sorted(rejected) == sorted(BAD)
    assert all(r.delivered != (r.seq in rejected) for r in truth)
    # the reasons name what was wrong; the kind says where it went wrong
    assert "500" in rejected[3].reason and "1000" in rejected[3].reason
    assert "non-finite" in rejected[5].reason
    assert rejected[3].kind == rejected[5].kind == rejected[8].kind == "malformed"
    if protocol == "framed":
        assert "CRC" in rejected[10].reason and rejected[10].kind == "garbled"
        assert "truncated" in rejected[13].reason and rejected[13].kind == "garbled"
        assert stats["lost"] == 3 and stats["bad_payload"] == 4
    else:
        assert "non-numeric" in rejected[8].reason and "'ERR'" in rejected[8].reason
        assert "expected 1000" in rejected[13].reason
        assert all(r.kind == "malformed" for r in rejected.values())
        assert stats["lost"] == 0 and stats["bad_payload"] == len(BAD)
        if not numbered:
            assert "host count" in rejected[5].reason
    assert stats["rejected"] == len(BAD)


def test_stream_still_hands_out_only_good_spectra(start_sim: StartSim) -> None:
    sim = start_sim(SimConfig(rate_hz=400, pixels=64, protocol="ascii", ascii_seq=False, faults={2: "nan"}),
                    transport="pty")
    with open_device(sim.url) as dev:
        it = dev.stream()
        got = [next(it).metadata["seq"] for _ in range(4)]
        it.close()
    assert got == [0, 1, 3, 4], "the bad line keeps its number: the host's renumbering hides nothing"


def test_garbled_frames_no_good_frame_followed_are_reported_on_the_stall(start_sim: StartSim) -> None:
    sim = start_sim(SimConfig(rate_hz=200, pixels=64, count=4, faults={3: "crc"}), transport="tcp")
    with open_device(f"{sim.url}&timeout=0.2&retries=1") as dev:
        got = _items(dev, 4)
    assert [_seq(i) for i in got] == [0, 1, 2, 3]
    assert isinstance(got[3], RejectedFrame) and "no later frame" in got[3].reason


class _NoLink(_LinkDriver):
    """The shared link machinery without a device: frames are handed to it directly."""

    def _handshake(self) -> None:
        pass


def test_a_sequence_gap_is_one_record_per_missing_number() -> None:
    """A jump in the device's numbers names each missing one; one the parser saw damaged says so."""
    dev = _NoLink("test://", lambda: cast(Transport, None))
    dev._notes.append((10, "CRC error"))
    for seq in (7, 8, 12):
        dev._enqueue(seq, np.zeros(4), None, False)
    kinds = [(q.seq, q.kind if isinstance(q, RejectedFrame) else "ok") for q in dev._queue]
    assert kinds == [(7, "ok"), (8, "ok"), (9, "lost"), (10, "garbled"), (11, "lost"), (12, "ok")]
    assert dev.stats["lost"] == 3 and dev.stats["rejected"] == 3
    assert not dev._notes, "settled notes are dropped"
    dev.close()


def test_a_huge_jump_is_bounded() -> None:
    dev = _NoLink("test://", lambda: cast(Transport, None))
    dev._enqueue(0, np.zeros(4), None, False)
    dev._enqueue(MAX_GAP_RECORDS + 100, np.zeros(4), None, False)
    rejected = [q for q in dev._queue if isinstance(q, RejectedFrame)]
    assert len(rejected) == MAX_GAP_RECORDS + 1
    assert "99 more spectra never arrived" in rejected[-1].reason and rejected[-1].seq is None
    assert dev.stats["lost"] == MAX_GAP_RECORDS + 99
    dev.close()
