"""What the simulated instrument is told (:class:`SimConfig`) and what it reports (:class:`TruthRecord`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from device_drivers.errors import DeviceSettingError
from device_drivers.sim.faults import FAULT_KINDS

__all__ = ["SimConfig", "TruthRecord", "read_truth"]


@dataclass(frozen=True)
class SimConfig:
    """What the simulated instrument emits and how it misbehaves.

    Attributes:
        classes / catalog_seed: the synthetic classes (catalog_seed 0 = the training data's classes).
        seed: seeds the per-spectrum sampling and the random faults.
        rate_hz: spectra per second while streaming (0: as fast as the link takes them).
        pixels / excitation_nm: detector size and laser wavelength (nm); the axis is ``instrument_axis``.
        protocol: ``"framed"`` or ``"ascii"``.
        sample_type: ``"uint16"`` or ``"float32"`` SPECTRUM samples (framed protocol).
        integration_time_us: reported integration time, microseconds.
        count: stop after emitting this many spectra (None: never).
        faults: fault kind(s) by spectrum sequence number, e.g. ``{3: "crc", 7: ("garbage", "saturate")}``.
        fault_rate: probability of a random fault (one of ``random_faults``) on each spectrum.
        stall_s: length of a stall, s. reconnect_delay_s: time the device stays unplugged, s.
        wait_for_start: an ASCII instrument prints only after ``START`` (framed ones always wait).
        pool: when > 0, generate this many spectra up front and cycle through them (saturate faults excepted):
            for throughput measurements, where sampling the synthetic classes (~2.6 ms each) would dominate.
        ascii_seq: ASCII lines carry a ``SEQ:`` prefix (False: bare lines, the host numbers them).
        truth_keep: ground-truth records kept in memory (the latest ones; the truth file gets all of them).
    """

    classes: int = 8
    catalog_seed: int = 0
    seed: int = 1
    rate_hz: float = 20.0
    pixels: int = 1024
    excitation_nm: float = 785.0
    protocol: Literal["framed", "ascii"] = "framed"
    sample_type: Literal["uint16", "float32"] = "uint16"
    integration_time_us: int = 50_000
    max_counts: float = 65535.0
    model: str = "RamanEdge-Sim"
    serial: str = "SIM0001"
    count: int | None = None
    faults: Mapping[int, str | tuple[str, ...]] = field(default_factory=dict)
    fault_rate: float = 0.0
    random_faults: tuple[str, ...] = ("garbage", "crc", "truncate", "saturate")
    stall_s: float = 1.0
    reconnect_delay_s: float = 0.2
    wait_for_start: bool = True
    pool: int = 0
    ascii_seq: bool = True
    truth_keep: int = 100_000

    def __post_init__(self) -> None:
        if self.protocol not in ("framed", "ascii"):
            raise DeviceSettingError(f"protocol must be 'framed' or 'ascii', got {self.protocol!r}")
        if self.sample_type not in ("uint16", "float32"):
            raise DeviceSettingError(f"sample_type must be 'uint16' or 'float32', got {self.sample_type!r}")
        if self.rate_hz < 0 or self.pixels < 2 or self.classes < 1 or self.truth_keep < 1:
            raise DeviceSettingError("rate_hz must be >= 0, pixels >= 2, classes >= 1 and truth_keep >= 1")
        kinds = [k for v in self.faults.values() for k in ((v,) if isinstance(v, str) else v)]
        bad = sorted(set(kinds + list(self.random_faults)) - set(FAULT_KINDS))
        if bad:
            raise DeviceSettingError(f"unknown fault kind(s) {bad}; known: {list(FAULT_KINDS)}")


@dataclass(frozen=True)
class TruthRecord:
    """Ground truth of one emitted spectrum.

    Attributes:
        seq: the sequence number it was sent with.
        label: class index; class_name: its name (``spectral_core.synth.class_names``).
        status: ``"sent"`` (intact on the wire), ``"corrupted"`` (CRC fault), ``"truncated"`` or
            ``"malformed"`` (intact on the link, not a valid spectrum: short, nan, text faults).
        faults: the faults injected on it.
        saturated: clipped at full scale.
        t_monotonic: the simulator's monotonic clock when it was sent, s.
        index: row of the data set it came from (``--from``), None for synthetic spectra.
    """

    seq: int
    label: int
    class_name: str
    status: str
    faults: tuple[str, ...]
    saturated: bool
    t_monotonic: float
    index: int | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "sent"


def read_truth(path: str | Path) -> list[TruthRecord]:
    """Read a ground-truth JSON-lines file written by the simulator."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                d["faults"] = tuple(d.get("faults", ()))
                out.append(TruthRecord(**d))
    return out
