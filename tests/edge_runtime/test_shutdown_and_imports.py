"""SIGTERM/SIGINT drain a busy daemon cleanly; the runtime never imports torch, onnx or shap."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_runtime.errors import SettingsError
from edge_runtime.settings import ServeSettings, load_settings


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_intake_drains_commits_and_exits_zero(model: Path, tmp_path: Path, serve, sig: int) -> None:
    db = tmp_path / "r.sqlite"
    d = serve(["--model", str(model), "--source", "sim://?classes=4&rate=0&seed=3", "--db", str(db),
               "--http", "off", "--provider", "cpu", "--queue-size", "64", "--max-batch", "16"]).wait_ready()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # busy: spectra arrive as fast as they are made
        if db.exists() and sqlite3.connect(db).execute("SELECT COUNT(*) FROM results").fetchone()[0] > 200:
            break
        time.sleep(0.05)
    d.signal(sig)
    assert d.wait(60) == 0, d.log
    stop_line = [ln for ln in d.lines if ln.startswith("ramanedge serve: stopped")][-1]
    assert signal.Signals(sig).name in stop_line
    produced = json.loads(stop_line.split("sources: ", 1)[1])[0]["spectra"]
    seqs = [r[0] for r in sqlite3.connect(db).execute("SELECT seq FROM results ORDER BY seq")]
    assert len(seqs) == produced > 200, "every spectrum read before the signal was committed"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap"


def test_runtime_never_imports_heavy_libraries(model: Path, tmp_path: Path) -> None:
    code = f"""
import sys, json
import numpy as np
import edge_runtime
from edge_runtime.daemon import Daemon
from edge_runtime.settings import load_settings
from edge_runtime.records import Frame
from spectral_core.synth import synth_dataset, instrument_axis
d = Daemon(load_settings({{"model": {str(model)!r}, "db": {str(tmp_path / "r.sqlite")!r}, "http": "127.0.0.1:0",
                           "sources": ["sim://?classes=4&rate=50"], "provider": "cpu"}}))
d.start()
ds = synth_dataset(classes=4, per_class=2, seed=1, axis=instrument_axis(1024))
out = d.engine.classify([Frame("t", str(i), ds.axis, ds.X[i]) for i in range(ds.n_spectra)])
d.stop("test")
rc = d.shutdown()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript", "shap", "trainer", "export"))
print(json.dumps({{"heavy": heavy, "ok": sum(o.ok for o in out), "rc": rc}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res == {"heavy": [], "ok": 8, "rc": 0}


def test_settings_precedence_flags_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[serve]\nmodel = "m.onnx"\nsources = ["watch:///data/drop"]\nmax_batch = 8\nqueue_size = 99\n'
                   'http = "127.0.0.1:9000"\n')
    monkeypatch.setenv("RAMANEDGE_MAX_BATCH", "16")
    monkeypatch.setenv("RAMANEDGE_SOURCES", "sim://?rate=5, watch:///x")
    s = load_settings({"max_batch": 4, "provider": None}, cfg)
    assert s.max_batch == 4  # flag beats env
    assert s.sources == ["sim://?rate=5", "watch:///x"]  # env beats file, comma-separated list
    assert s.queue_size == 99 and s.http == "127.0.0.1:9000"  # file beats defaults
    assert s.model == tmp_path / "m.onnx"  # relative to the config file
    monkeypatch.setenv("RAMANEDGE_HTTP", "off")
    assert load_settings({}, cfg).http is None
    assert s.watch_events == "auto"
    assert load_settings({"watch_events": "poll"}, cfg).watch_events == "poll"  # --no-watch-events
    monkeypatch.setenv("RAMANEDGE_WATCH_EVENTS", "watchdog")
    assert load_settings({}, cfg).watch_events == "watchdog"
    assert type(load_settings({}, cfg)) is ServeSettings  # the settings class itself, validated, no stand-in
    # The pre-release true/false form is gone: it is refused, naming the field, not guessed.
    monkeypatch.setenv("RAMANEDGE_WATCH_EVENTS", "false")
    with pytest.raises(SettingsError, match="watch_events"):
        load_settings({}, cfg)


@pytest.mark.parametrize(
    ("flags", "words"),
    [({"model": "m", "http": "nohost"}, "HOST:PORT"), ({"model": "m", "sources": ["ttyUSB0"]}, "not a URL"),
     ({"model": "m", "max_batch": 0}, "max_batch"), ({}, "model"), ({"model": "m", "provider": "gpu"}, "provider"),
     ({"model": "m", "watch_events": "fanotify"}, "watch_events")],
)
def test_bad_settings_name_the_field(flags: dict, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        load_settings(flags)


def test_a_signal_never_takes_the_stop_events_lock(model: Path) -> None:
    """SIGTERM's handler runs in the main thread, maybe while it holds the stop Event's non-reentrant lock inside
    Event.wait: the handler must not take that lock (it would wait for itself: the daemon hung at SIGTERM)."""
    import threading
    import time

    from edge_runtime.daemon import Daemon
    from edge_runtime.settings import load_settings

    d = Daemon(load_settings({"model": str(model), "http": "off"}))
    done = threading.Event()
    with d._stop._cond:  # held, as by the main thread inside Event.wait when the signal lands
        t = threading.Thread(target=lambda: (d.stop_from_signal("SIGTERM"), done.set()), daemon=True)
        t.start()
        assert done.wait(5), "the signal path waited for the stop Event's lock"
    assert not d._stop.is_set()
    t0 = time.monotonic()
    assert d._signal_reason == "SIGTERM"
    while not d._stop.wait(0.05) and time.monotonic() - t0 < 5:  # what run() does each turn
        if d._signal_reason is not None:
            d.stop(d._signal_reason)
    assert d._stop.is_set() and d.stop_reason == "SIGTERM"
