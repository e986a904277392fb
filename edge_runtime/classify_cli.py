"""``ramanedge classify MODEL DATA... --out results.npz|results.csv``: offline batch classification.

Exit status: 0 every spectrum classified; 1 the results were written but some rows are errors (unreadable
inputs, bad spectra); 2 nothing was written (bad arguments, model refused, provider not usable, output not
writable), via the root CLI. The summary (counts per class, errors, the provider actually used) is one JSON
object on stdout; the progress line goes to stderr, only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["configure_classify", "run_classify"]

_PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")  # checked against engine.PROVIDERS by the engine itself


def configure_classify(p: argparse.ArgumentParser) -> None:
    """Flags of ``ramanedge classify``; the reading options are those of every command that reads data."""
    from spectral_core.cli import add_data_option

    p.add_argument("model", help="exported ONNX model (contract embedded)")
    p.add_argument("inputs", nargs="*", metavar="DATA",
                   help="data files or folders (every file under a folder, --pattern to pick) in any readable format")
    p.add_argument("--out", "-o", required=True, help="results file: .npz or .csv (written when complete)")
    p.add_argument("--provider", choices=_PROVIDERS, default="auto",
                   help="execution provider (default auto: CUDA when it really loads, else CPU)")
    p.add_argument("--batch", type=int, default=256, help="spectra per onnxruntime call (default 256)")
    p.add_argument("--threads", type=int, default=1,
                   help="onnxruntime intra-op threads (default 1; reading and preprocessing run in a second thread)")
    p.add_argument("--chunk", type=int, default=None,
                   help="spectra read and preprocessed at a time (default 4096, rounded to whole batches)")
    p.add_argument("--map-png", metavar="FILE",
                   help="class image of a map input (default: <out>.map.png; a second map gets FILE-2.png, ...)")
    p.add_argument("--no-map-png", action="store_true", help="write no class image for maps")
    p.add_argument("--max-points", type=int, default=None,
                   help="longest spectrum classified, points (default 65536); longer: an error row")
    p.add_argument("--axis-tolerance", type=float, default=None,
                   help="cm^-1 a spectrum's range may fall short of the model axis at each end (default: the model's)")
    p.add_argument("--require-validated", action="store_true",
                   help="refuse a model without a passed <model>.validation.json for this exact file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    add_data_option(p, required=False, help="more data (same as DATA)")


class _Progress:
    """One self-overwriting line on stderr, at most 5 times a second; silent when stderr is no terminal."""

    def __init__(self, enabled: bool, total_inputs: int) -> None:
        self.enabled = enabled
        self.total = total_inputs
        self.last = 0.0
        self.shown = False
        self.final: tuple[Any, str] | None = None

    def __call__(self, s: Any, current: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        self.final = (s, current)
        now = time.monotonic()
        if now - self.last < 0.2 and not force:
            return
        self.last = now
        rate = s.spectra / s.seconds if s.seconds > 0 else 0.0
        name = current if len(current) <= 40 else "..." + current[-37:]
        sys.stderr.write(f"\rclassify: {s.spectra:,} spectra ({s.errors:,} errors), input {s.inputs}/{self.total} "
                         f"{name}, {rate:,.0f} spectra/s\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.final is not None:  # the last state, not the last one shown (those are at most 5 a second)
            self(*self.final, force=True)
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _map_path(out: Path, given: str | None) -> Any:
    base = Path(given) if given else out.with_name(out.stem + ".map.png")

    def nth(n: int) -> Path:
        return base if n == 1 else base.with_name(f"{base.stem}-{n}{base.suffix or '.png'}")

    return nth


def run_classify(args: argparse.Namespace) -> int:
    """Classify every spectrum of the inputs, write one row each, print the summary."""
    from edge_runtime._classify_out import open_writer
    from edge_runtime.classify import DEFAULT_CHUNK, engine_facts, expand_inputs, iter_chunks, run_classification
    from edge_runtime.engine import MAX_POINTS, Engine
    from spectral_core.cli import read_options
    from spectral_core.errors import DataError

    out = Path(args.out)
    if out.suffix.lower() not in (".npz", ".csv"):
        raise DataError(f"--out must name a .npz or .csv file, got {args.out!r}")
    if args.batch < 1:
        raise DataError(f"--batch must be at least 1, got {args.batch}")
    paths = [*args.inputs, *(args.data or [])]
    if not paths:
        raise DataError("no data given: name files or folders after the model (or with --data)")
    opts = read_options(args)
    files = expand_inputs(paths, opts.get("pattern"))
    if not files:
        raise DataError(f"no files found in {paths}" + (f" matching {opts['pattern']!r}" if "pattern" in opts else ""))
    engine = Engine(args.model, provider=args.provider, threads=args.threads, max_batch=args.batch,
                    require_validated=args.require_validated, axis_tolerance=args.axis_tolerance,
                    max_points=args.max_points or MAX_POINTS)
    chunk = args.chunk or DEFAULT_CHUNK
    chunk = max(args.batch, chunk // args.batch * args.batch)
    progress = _Progress(not args.quiet and sys.stderr.isatty(), len(files))
    with open_writer(out, engine.classes, engine_facts(engine)) as writer:
        try:
            summary = run_classification(
                engine, iter_chunks(files, chunk, opts), writer,
                map_png=None if args.no_map_png else _map_path(out, args.map_png), progress=progress,
            )
        finally:
            progress.close()
    report = {
        "out": str(out),
        "spectra": summary.spectra,
        "classified": summary.classified,
        "errors": summary.errors,
        "unknown": summary.unknown,
        "drift": summary.drift,
        "drift_model": engine.drift is not None,
        "per_class": {c: summary.per_class.get(c, 0) for c in engine.classes},
        "error_kinds": summary.error_kinds,
        "first_errors": summary.first_errors,
        "inputs": len(files),
        "maps": summary.maps,
        "provider": engine.provider,
        "requested_provider": engine.requested_provider,
        "model": str(engine.model_path),
        "model_sha256": engine.model_sha256,
        "seconds": round(summary.seconds, 3),
        "spectra_per_s": round(summary.spectra / summary.seconds, 1) if summary.seconds > 0 else None,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if summary.errors == 0 else 1
