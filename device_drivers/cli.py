"""Subcommands ``ramanedge devices``, ``ramanedge acquire`` and ``ramanedge simulate``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

import numpy as np

from device_drivers.errors import DeviceURLError, DriverError, SourceExhaustedError
from spectral_core.errors import MissingExtraError

__all__ = [
    "configure_acquire",
    "configure_devices",
    "configure_simulate",
    "parse_fault",
    "run_acquire",
    "run_devices",
    "run_simulate",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ devices
def configure_devices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-seabreeze", action="store_true", help="do not look for Ocean Insight devices")


def list_devices(seabreeze: bool = True) -> dict[str, Any]:
    """Serial ports (pyserial) and seabreeze spectrometers, JSON-serialisable."""
    from serial.tools import list_ports

    ports = [
        {
            "device": p.device, "description": p.description, "hwid": p.hwid,
            "vid": p.vid, "pid": p.pid, "serial_number": p.serial_number, "url": f"serial://{p.device}",
        }
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]
    out: dict[str, Any] = {"serial": ports, "seabreeze": None}
    if seabreeze:
        from device_drivers.seabreeze_driver import list_seabreeze_devices

        try:
            out["seabreeze"] = list_seabreeze_devices()
        except (MissingExtraError, DriverError) as exc:
            out["seabreeze_unavailable"] = str(exc)
    return out


def run_devices(args: argparse.Namespace) -> int:
    json.dump(list_devices(not args.no_seabreeze), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


# ------------------------------------------------------------------------------------------ acquire
def configure_acquire(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="device URL (serial://, tcp://, sim://, replay://, seabreeze://)")
    p.add_argument("--count", type=int, required=True, help="number of spectra to record")
    p.add_argument("--out", required=True, help="output .npz (spectral_core.io.write_npz)")
    p.add_argument("--integration-us", type=int, help="set the integration time first, microseconds")


def run_acquire(args: argparse.Namespace) -> int:
    from device_drivers.url import open_device
    from spectral_core.io import write_npz
    from spectral_core.spectrum import SpectralDataset

    if args.count < 1:
        raise DeviceURLError(f"--count must be at least 1, got {args.count}")
    spectra = []
    with open_device(args.source) as dev:
        if args.integration_us:
            dev.set_integration_time_us(args.integration_us)
        it = dev.stream()
        try:
            for sp in it:
                spectra.append(sp)
                if len(spectra) >= args.count:
                    break
        except SourceExhaustedError as exc:
            logger.warning("%s; recording the %d spectra received", exc, len(spectra))
        finally:
            it.close()
        info, stats = dev.info.as_dict(), dev.stats
    if not spectra:
        raise DriverError(f"{args.source}: no spectra received")
    axis = spectra[0].axis
    if any(s.axis.shape != axis.shape or not np.array_equal(s.axis, axis) for s in spectra):
        raise DriverError(f"{args.source}: the axis changed during the recording (another device?)")
    meta = [s.metadata for s in spectra]
    y = classes = None
    if all("label" in m for m in meta):
        names = meta[0].get("classes") or sorted({str(m["label"]) for m in meta})
        classes = tuple(str(n) for n in names)
        y = np.array([classes.index(str(m["label"])) for m in meta], dtype=np.int64)
    ds = SpectralDataset(
        X=np.stack([s.intensities for s in spectra]), axis=axis, y=y, classes=classes or (),
        provenance={
            "source": args.source, "recorder": "ramanedge acquire", "device": info, "stats": stats,
            "seq": [m.get("seq") for m in meta], "t_wall": [m.get("t_wall") for m in meta],
            "saturated": [bool(m.get("saturated")) for m in meta],
            "integration_time_us": meta[-1].get("integration_time_us"),
        },
    )
    write_npz(ds, args.out)
    print(json.dumps({"out": str(args.out), "spectra": ds.n_spectra, "points": ds.n_points,
                      "saturated": int(sum(ds.provenance["saturated"])), "stats": stats}))
    return 0


# ------------------------------------------------------------------------------------------ simulate
def parse_fault(text: str) -> tuple[int, str]:
    """``KIND@SEQ`` -> (seq, kind), e.g. ``crc@12``."""
    from device_drivers.sim import FAULT_KINDS

    kind, _, seq = text.partition("@")
    if kind not in FAULT_KINDS or not seq.isdigit():
        raise argparse.ArgumentTypeError(f"expected KIND@SEQ with KIND in {', '.join(FAULT_KINDS)}, got {text!r}")
    return int(seq), kind


def configure_simulate(p: argparse.ArgumentParser) -> None:
    from spectral_core.cli import _add_read_options

    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal; prints its path")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on a TCP port (PORT 0: any free port)")
    p.add_argument("--link", help="pty: stable path (symlink to the slave) instead of a temporary one")
    p.add_argument("--protocol", choices=("framed", "ascii"), default="framed")
    p.add_argument("--dtype", choices=("uint16", "float32"),
                   help="framed SPECTRUM samples (default uint16; float32 with --from, whatever is given)")
    p.add_argument("--rate", type=float, default=20.0, help="spectra per second (0: as fast as possible)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--seed", type=int, default=1, help="seeds the spectra and random faults")
    p.add_argument("--catalog-seed", type=int, default=0, help="seeds the class templates (0: training classes)")
    p.add_argument("--pixels", type=int, default=1024)
    p.add_argument("--count", type=int, help="stop after this many spectra")
    p.add_argument("--fault", action="append", type=parse_fault, default=[], metavar="KIND@SEQ",
                   help="inject a fault on spectrum SEQ (repeatable): garbage, crc, truncate, unknown_type, "
                        "bad_length, stall, disconnect, saturate, short, nan, text")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault per spectrum")
    p.add_argument("--stall", type=float, default=1.0, help="length of a stall fault, s")
    p.add_argument("--reconnect-delay", type=float, default=0.5, help="time unplugged in a disconnect fault, s")
    p.add_argument("--pool", type=int, default=0,
                   help="pre-generate this many spectra and cycle through them (for throughput tests)")
    p.add_argument("--truth", help="append the ground truth of every spectrum to this JSON-lines file")
    p.add_argument("--no-seq", action="store_true", help="ASCII lines without the SEQ: prefix (the host numbers them)")
    p.add_argument("--from", dest="from_data", nargs="+", metavar="DATA",
                   help="stream the spectra of this data set (any file or folder `ramanedge info` reads) in file "
                        "order, on its own axis, its labels as the ground truth, instead of synthetic ones "
                        "(--classes, --catalog-seed, --pixels, --pool are then unused)")
    _add_read_options(p)


def _simulated_spectra(args: argparse.Namespace) -> Any:
    """The data set of ``--from`` (read with the reading options), or None for synthetic spectra."""
    if not getattr(args, "from_data", None):
        return None
    from device_drivers.sim import DatasetSpectra
    from spectral_core.cli import read_options
    from spectral_core.io import read_datasets

    ds = read_datasets(args.from_data, **read_options(args))
    logger.info("simulating %d spectra of %s (%d points, %.6g-%.6g cm^-1, classes %s)", ds.n_spectra,
                ", ".join(args.from_data), ds.n_points, float(np.min(ds.axis)), float(np.max(ds.axis)),
                list(ds.classes) if ds.y is not None else "none")
    return DatasetSpectra(ds)


def run_simulate(args: argparse.Namespace) -> int:
    from device_drivers.sim import SimConfig, SimulatedInstrument

    faults: dict[int, tuple[str, ...]] = {}
    for seq, kind in args.fault:
        faults[seq] = (*faults.get(seq, ()), kind)
    spectra = _simulated_spectra(args)
    cfg = SimConfig(
        classes=args.classes, catalog_seed=args.catalog_seed, seed=args.seed, rate_hz=args.rate,
        pixels=args.pixels, protocol=args.protocol,
        sample_type=args.dtype or ("float32" if spectra is not None else "uint16"), count=args.count,
        faults=faults, fault_rate=args.fault_rate, stall_s=args.stall, reconnect_delay_s=args.reconnect_delay,
        pool=args.pool, ascii_seq=not args.no_seq, truth_keep=10_000,
    )
    if args.pty:
        sim = SimulatedInstrument(cfg, transport="pty", link=args.link, truth_path=args.truth, spectra=spectra)
    else:
        host, _, port = str(args.tcp).rpartition(":")
        if not host or not port.isdigit():
            raise DeviceURLError(f"--tcp expects HOST:PORT, got {args.tcp!r}")
        sim = SimulatedInstrument(cfg, transport="tcp", host=host, port=int(port), truth_path=args.truth,
                                  spectra=spectra)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        sim.start()
        print(sim.path, flush=True)
        logger.info("simulator serving %s (%s protocol); URL %s", sim.path, args.protocol, sim.url)
        while not stop.is_set() and not sim.done.is_set() and sim.error is None:
            stop.wait(0.1)
        if sim.done.is_set() and not stop.is_set():
            sim.drain(stop)
    finally:
        sim.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if sim.error is not None:
        print(f"ramanedge simulate: simulator failed: {sim.error}", file=sys.stderr)
        return 1
    return 0
