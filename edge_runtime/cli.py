"""``ramanedge serve``: flags -> :class:`ServeSettings` -> :class:`Daemon`, with signal handling.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, --count, --duration, sources exhausted), 1 if the worker
failed (e.g. the ledger could not commit) or frames read from a source were not recorded by the drain deadline, 2 for a start-up error (bad settings, model refused, provider unavailable) via the root CLI.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from spectral_core.providers import PROVIDER_CHOICES

__all__ = ["configure_serve", "run_serve"]


def configure_serve(p: argparse.ArgumentParser) -> None:
    """Flags of ``ramanedge serve``. Unset flags fall back to RAMANEDGE_* variables, then the config file."""
    a = p.add_argument
    a("--model", "-m", help="exported ONNX model (env RAMANEDGE_MODEL)")
    a("--source", "-s", dest="sources", action="append", metavar="URL",
      help="device URL (serial://, tcp://, sim://, replay://, seabreeze://) or watch:///dropdir; repeatable")
    a("--config", help="TOML or JSON settings file ([serve] table); env RAMANEDGE_CONFIG")
    a("--provider", choices=PROVIDER_CHOICES, help="execution provider (default auto)")
    a("--require-gpu", action="store_const", const=True, help="fail at start-up unless a GPU provider is active")
    a("--require-validated", action="store_const", const=True,
      help="refuse a model without a passed <model>.validation.json for this exact file")
    a("--threads", type=int, help="onnxruntime intra-op threads (default 1)")
    a("--max-batch", type=int, help="largest micro-batch (default 64)")
    a("--max-points", type=int, help="longest spectrum classified, points (default 65536); longer: error record")
    a("--axis-tolerance", dest="axis_tolerance_cm1", type=float,
      help="cm^-1 a spectrum's range may fall short of the model axis at each end (default: the model's)")
    a("--allow-task-change", action="store_const", const=True,
      help="let a model update change classes, their order, the model axis or the preprocessing")
    a("--queue-size", type=int, help="bounded queue length (default 256)")
    a("--db", help="SQLite ledger (default results.sqlite)")
    a("--ledger-sync", choices=["normal", "full"], help="SQLite synchronous level (default normal)")
    a("--jsonl", help="also write JSON lines to FILE ('-' for stdout)")
    a("--http", help="HOST:PORT of the HTTP API (default 127.0.0.1:8765; 'off' disables; port 0 = any)")
    a("--http-token-file", help="file holding the bearer token required by the HTTP API (else env RAMANEDGE_HTTP_TOKEN)")
    a("--http-allowed-host", dest="http_allowed_hosts", action="append", metavar="NAME",
      help="a host name accepted in the Host header besides the bound address and localhost; repeatable")
    a("--http-max-connections", type=int, help="HTTP connections served at once (default 32)")
    a("--http-timeout", dest="http_timeout_s", type=float,
      help="bound on reading one HTTP request and on each write, s (default 10)")
    a("--insecure-http", action="store_const", const=True,
      help="allow a non-loopback --http bind without a token (a WARNING at every start)")
    a("--max-request-bytes", type=int,
      help="POST /classify body limit (default: a JSON request of --max-points points with its axis, 3.4 MiB)")
    a("--count", type=int, help="stop after N records (demos, tests)")
    a("--duration", type=float, help="stop after S seconds")
    a("--drain-timeout", dest="drain_timeout_s", type=float, help="bound on the shutdown drain, s (default 10)")
    a("--on-done", choices=["move", "delete"], help="drop files after their result: move to done/ or delete")
    a("--settle", dest="settle_s", type=float, help="drop files must be unchanged this long, s (default 0.2)")
    a("--poll", dest="poll_s", type=float, help="drop folder scan interval, s (default 1)")
    a("--watch-readers", type=int, help="threads claiming and reading drop files (default 2)")
    a("--watch-links", choices=["refuse", "inside"],
      help="symlinks in drop folders: refuse (default; each is an error record) or accept those resolving inside")
    a("--max-file-bytes", type=int, help="larger drop files are refused unread (default 67108864 = 64 MiB)")
    a("--max-spectra-per-file", type=int, help="a drop file holding more spectra is one error record (default 10000)")
    a("--ready-marker", help="claim a drop file x.csv only once x.csv<MARKER> exists (e.g. .ready; removed then)")
    a("--watch-events", choices=["auto", "inotify", "watchdog", "poll"],
      help="how drop folders are watched: auto (inotify on Linux, else watchdog, else polling), or one of them")
    a("--no-watch-events", dest="watch_events", action="store_const", const="poll",
      help="poll drop folders only (network shares without inotify); same as --watch-events poll")
    a("--model-poll", dest="model_poll_s", type=float,
      help="check the model file for a new version every S seconds, swap it in once checked (default 2; 0 off)")
    a("--mqtt", help="publish every record as JSON (QoS 1) to mqtt[s]://[user:pass@]host:1883/topic-prefix; "
                     "needs [mqtt]")
    a("--mqtt-ca-file", help="CA certificate(s), PEM, that sign the mqtts:// broker's certificate")
    a("--mqtt-cert-file", help="client certificate, PEM, for an mqtts:// broker that asks for one")
    a("--mqtt-key-file", help="private key, PEM, of --mqtt-cert-file")


#: serve flags that are not settings of the daemon (every other flag's ``dest`` is a ServeSettings field;
#: tests/edge_runtime/test_engine.py checks it, so a new setting needs only its flag)
NOT_SETTINGS = frozenset({"config", "help"})


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, by field name of :class:`~edge_runtime.settings.ServeSettings`
    (unset flags are None and fall back to the environment, then the config file)."""
    from edge_runtime.settings import ServeSettings

    return {k: getattr(args, k) for k in ServeSettings.model_fields if hasattr(args, k)}


def run_serve(args: argparse.Namespace) -> int:
    """Start the daemon and serve until a signal, --count or --duration stops it."""
    import logging

    from edge_runtime.daemon import Daemon
    from edge_runtime.settings import load_settings

    t0 = time.monotonic()
    # watchdog logs this ERROR when its inotify thread sees a last event while stopping: a benign race in
    # the library, not a lost file (the drop folder is rescanned at every start). Only that message is hidden.
    logging.getLogger("watchdog.observers.inotify").addFilter(
        lambda r: "called when the thread is inactive" not in r.getMessage()
    )
    flags = settings_flags(args)
    config = args.config or os.environ.get("RAMANEDGE_CONFIG")
    settings = load_settings(flags, config)
    if not settings.sources and settings.http is None:
        print("ramanedge serve: warning: no --source and HTTP is off: nothing can arrive", file=sys.stderr)
    from threadpoolctl import threadpool_limits

    # The daemon's numpy work is small per batch (resampling, open-set distances, drift scores): one BLAS
    # thread. OpenBLAS's spinning helper threads cost several times the inference itself on a busy machine
    # (measured for `ramanedge classify`, docs/benchmarks.md); onnxruntime keeps its own threads (--threads).
    threadpool_limits(limits=1, user_api="blas")
    daemon = Daemon(settings)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        daemon.stop_from_signal(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    daemon.start()
    e = daemon.engine
    where = daemon.http.url if daemon.http is not None else "HTTP off"
    if e is not None:
        print(
            f"ramanedge serve: ready in {time.monotonic() - t0:.3f} s: {e.model_path.name} "
            f"(sha256 {e.model_sha256[:12]}) on {e.provider} (requested {e.requested_provider}); "
            f"{len(daemon.sources)} source(s); {where}",
            file=sys.stderr, flush=True,
        )
    rc = daemon.run()
    logging.getLogger(__name__).info("exit %d (%s)", rc, daemon.stop_reason)
    import json

    lost = f"; {daemon.unrecorded} frame(s) read but NOT recorded" if daemon.unrecorded else ""
    print(f"ramanedge serve: stopped ({daemon.stop_reason}); {daemon.processed} record(s) committed{lost}; "
          f"sources: {json.dumps([src.status() for src in daemon.sources])}", file=sys.stderr, flush=True)
    return rc
