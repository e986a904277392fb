"""Safe model updates on a running daemon (a real process): a good model is swapped in mid-stream without a
lost or failed spectrum; a corrupt file and a model that fails its self-test are rejected while serving goes on."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from spectral_core.hashing import sha256_file
from spectral_core.synth import SyntheticCatalog, instrument_axis

AXIS = instrument_axis(1024)


def _call(url: str, method: str, path: str, obj: Any = None) -> tuple[int, Any]:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        body = None if obj is None else json.dumps(obj).encode()
        con.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = con.getresponse()
        raw = r.read().decode()
        return r.status, json.loads(raw) if r.getheader("Content-Type", "").startswith("application/json") else raw
    finally:
        con.close()


class Poster(threading.Thread):
    """POSTs labelled synthetic spectra one after another until stopped; keeps every reply."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.replies: list[tuple[int, int, Any]] = []  # (true label, status, body)
        self.halt = threading.Event()
        self.catalog = SyntheticCatalog(4, 0)
        self.rng = np.random.default_rng(5)

    def run(self) -> None:
        k = 0
        while not self.halt.is_set():
            label = k % 4
            y = 100 + 1500 * self.catalog.clean(label, AXIS) + self.rng.normal(0, 10, AXIS.size)
            status, body = _call(self.url, "POST", "/classify",
                                 {"axis": [float(v) for v in AXIS], "intensities": [round(float(v), 3) for v in y],
                                  "ref": f"s{k}"})
            self.replies.append((label, status, body))
            k += 1
            self.halt.wait(0.01)

    def wait_for(self, n: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.replies) < n:
            if time.monotonic() > deadline or not self.is_alive():
                pytest.fail(f"only {len(self.replies)} replies of {n}")
            time.sleep(0.02)


def _replace(dst: Path, data: bytes) -> None:
    """How a deploy should write a model: beside it, then an atomic rename."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


def _updates(url: str) -> dict[str, Any]:
    return _call(url, "GET", "/readyz")[1]["model_updates"]


def _wait(pred, what: str, d, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline or d.proc.poll() is not None:
            pytest.fail(f"{what} did not happen:\n{d.log}")
        time.sleep(0.05)


def test_good_model_swapped_mid_stream_bad_ones_rejected(model: Path, standin_model: Path, tmp_path: Path,
                                                         serve) -> None:
    from _er_model import rewrite_contract

    served = tmp_path / "models" / "model.onnx"
    served.parent.mkdir()
    served.write_bytes(model.read_bytes())
    old_sha, new_sha = sha256_file(model), sha256_file(standin_model)
    # a model whose reference probabilities are not what it computes: it must fail its self-test
    selftest_bad = rewrite_contract(standin_model, tmp_path / "selftest_bad.onnx", {"reference": {
        "inputs": json.loads(json.dumps([[0.0] * 400, [1.0] * 400])),
        "probabilities": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], "atol": 1e-3}})
    db = tmp_path / "r.sqlite"
    d = serve(["--model", str(served), "--db", str(db), "--http", "127.0.0.1:0", "--provider", "cpu",
               "--model-poll", "0.2", "--settle", "0.2", "--allow-task-change"]).wait_ready()
    assert d.url is not None
    poster = Poster(d.url)
    poster.start()
    try:
        poster.wait_for(20)
        _replace(served, standin_model.read_bytes())
        _wait(lambda: _call(d.url, "GET", "/readyz")[1]["model"]["model_sha256"] == new_sha, "the swap", d)
        n_swap = len(poster.replies)
        poster.wait_for(n_swap + 20)

        _replace(served, standin_model.read_bytes()[: 3000] + b"\x00garbage" * 100)
        _wait(lambda: _updates(d.url)["rejected"] == 1, "rejecting the corrupt file", d)
        _replace(served, selftest_bad.read_bytes())
        _wait(lambda: _updates(d.url)["rejected"] == 2, "rejecting the self-test failure", d)
        n_rej = len(poster.replies)
        poster.wait_for(n_rej + 10)
        status, ready = _call(d.url, "GET", "/readyz")
        _, metrics = _call(d.url, "GET", "/metrics")
    finally:
        poster.halt.set()
        poster.join(30)
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log

    assert status == 200 and ready["model"]["model_sha256"] == new_sha, "the good model keeps serving"
    upd = ready["model_updates"]
    assert upd["accepted"] == 1 and upd["last_accepted"]["previous"] == old_sha
    assert any(c.startswith("model axis 300 points") for c in upd["last_accepted"]["changes"]), upd
    assert "self-test" in upd["last_rejected"]["reason"]
    assert 'ramanedge_model_updates_total{result="rejected"} 2' in metrics
    assert 'ramanedge_model_updates_total{result="accepted"} 1' in metrics
    assert "ramanedge_model_update_rejected_info{reason=" in metrics and f'model_sha256="{new_sha}"' in metrics
    assert "REJECTED" in d.log and "cannot load" in d.log, d.log

    failed = [(s, b) for _, s, b in poster.replies if s != 200]
    assert not failed, failed[:3]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, status, model_sha256, input_ref, class FROM results ORDER BY id").fetchall()
    con.close()
    assert len(rows) == len(poster.replies) and all(r[1] == "ok" for r in rows)
    shas = [r[2] for r in rows]
    first_new = shas.index(new_sha)
    assert first_new >= 20 and set(shas[:first_new]) == {old_sha} and set(shas[first_new:]) == {new_sha}, \
        "one swap between two batches: every record before it by the old model, every one after by the new"
    # the swapped-in model really classifies (chance is 0.25)
    truth = {b["input_ref"]: label for label, _, b in poster.replies}
    after = [r for r in rows[first_new:]]
    correct = sum(r[4] == f"compound_{'ABCD'[truth[r[3]]]}" for r in after)
    assert correct / len(after) > 0.6, f"{correct}/{len(after)}"


def test_incompatible_or_unvalidated_model_rejected(model: Path, standin_model: Path, tmp_path: Path,
                                                    serve) -> None:
    """--require-validated: a new model without a passed report for exactly its bytes is refused."""
    served = tmp_path / "m" / "tiny.onnx"
    served.parent.mkdir()
    served.write_bytes(model.read_bytes())
    report = model.with_suffix(".validation.json")
    (served.parent / report.name).write_bytes(report.read_bytes())
    d = serve(["--model", str(served), "--db", str(tmp_path / "r.sqlite"), "--http", "127.0.0.1:0",
               "--provider", "cpu", "--require-validated", "--model-poll", "0.2", "--settle", "0.2"]).wait_ready()
    assert d.url is not None
    _replace(served, standin_model.read_bytes())
    _wait(lambda: _updates(d.url)["rejected"] == 1, "the rejection", d)
    ready = _call(d.url, "GET", "/readyz")[1]
    assert ready["model"]["model_sha256"] == sha256_file(model)
    assert "validated another model" in ready["model_updates"]["last_rejected"]["reason"]
    status, rec = _call(d.url, "POST", "/classify", {"intensities": [1.0 + (i % 7) for i in range(300)]})
    assert status == 200 and rec["model_sha256"] == sha256_file(model)
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log
