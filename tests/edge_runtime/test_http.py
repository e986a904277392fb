"""The HTTP API of a running daemon (a real process on loopback): endpoints, strict validation, clear 4xx."""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from _er_daemon import Daemon

from spectral_core.synth import SyntheticCatalog, instrument_axis


@pytest.fixture(scope="module")
def daemon(model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("http")
    d = Daemon(["--model", str(model), "--db", str(tmp / "r.sqlite"), "--http", "127.0.0.1:0", "--provider", "cpu",
                "--max-request-bytes", "200000", "--max-points", "20000"]).wait_ready()
    yield d
    d.signal(signal.SIGTERM)
    try:
        assert d.wait(30) == 0, d.log
    finally:
        d.kill()


def _req(d, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any, str]:
    u = urlsplit(d.url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        raw = r.read().decode()
        ctype = r.getheader("Content-Type", "")
        return r.status, (json.loads(raw) if ctype.startswith("application/json") else raw), ctype
    finally:
        con.close()


def _post(d, obj: Any) -> tuple[int, Any]:
    status, body, _ = _req(d, "POST", "/classify", json.dumps(obj).encode(), {"Content-Type": "application/json"})
    return status, body


def _spectrum(label: int, axis: np.ndarray, seed: int = 0) -> list[float]:
    y = 100 + 1500 * SyntheticCatalog(4, 0).clean(label, axis) + np.random.default_rng(seed).normal(0, 10, axis.size)
    return [round(float(v), 3) for v in y]


def test_health_and_readiness(daemon) -> None:
    assert _req(daemon, "GET", "/healthz")[:2] == (200, {"status": "ok"})
    status, body, _ = _req(daemon, "GET", "/readyz")
    assert status == 200 and body["ready"] is True
    assert body["model"]["provider"] == "CPUExecutionProvider" and len(body["model"]["model_sha256"]) == 64


def test_classify_on_the_instrument_axis_and_on_the_model_axis(daemon) -> None:
    axis = instrument_axis(1024)
    status, rec = _post(daemon, {"axis": list(axis), "intensities": _spectrum(2, axis), "ref": "lims-42",
                                 "metadata": {"device_serial": "QE1234", "integration_time_us": 100000}})
    assert status == 200, rec
    assert rec["class"] == "compound_C" and rec["status"] == "ok" and rec["input_ref"] == "lims-42"
    assert rec["device_serial"] == "QE1234" and rec["integration_time_us"] == 100000
    assert len(rec["probabilities"]) == 4 and isinstance(rec["unknown"], bool) and rec["id"] >= 1
    assert rec["source"] == "http" and rec["provider"] == "CPUExecutionProvider"
    model_axis = np.linspace(400, 1800, 300)
    status, rec2 = _post(daemon, {"intensities": _spectrum(1, model_axis, 1)})
    assert status == 200 and rec2["class"] == "compound_B" and rec2["id"] > rec["id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "invalid"),
        (b'{"intensities": [1, NaN, 3]}', 422, "finite"),
        (b'{"intensities": ["1", "2", "3"]}', 422, "valid number"),
        (b'{"intensities": [1, 2, 3], "colour": "red"}', 422, "Extra inputs"),
        (b'{"axis": [1, 2, 3], "intensities": [1, 2]}', 422, "axis has 3 points"),
        (b'{"axis": [1, 2]}', 422, "Field required"),
        (b'{"intensities": [1, 2, 3]}', 422, "model axis of 300 points"),
        (b"[1, 2, 3]", 422, "should be an object"),
    ],
)
def test_classify_rejects_bad_bodies_with_clear_4xx(daemon, body: bytes, status: int, words: str) -> None:
    got, reply, _ = _req(daemon, "POST", "/classify", body, {"Content-Type": "application/json"})
    assert got == status, reply
    assert words in json.dumps(reply), reply


def test_spectrum_that_cannot_be_classified_is_recorded_and_answered_422(daemon) -> None:
    axis = np.linspace(300, 900, 200)  # does not cover the model axis
    status, reply = _post(daemon, {"axis": list(axis), "intensities": list(np.linspace(1, 2, 200)), "ref": "narrow"})
    assert status == 422 and "outside" in reply["detail"]
    rid = reply["record"]["id"]
    status, res, _ = _req(daemon, "GET", f"/results?since={rid - 1}&limit=1")
    assert status == 200 and res["results"][0]["id"] == rid and res["results"][0]["status"] == "error"
    assert res["results"][0]["error_kind"] == "preprocess" and res["next_since"] == rid


def test_transport_level_4xx(daemon) -> None:
    assert _req(daemon, "POST", "/classify", b"{}", {"Content-Type": "text/plain"})[0] == 415
    assert _req(daemon, "POST", "/classify", b"x" * 300_000, {"Content-Type": "application/json"})[0] == 413
    u = urlsplit(daemon.url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    con.putrequest("POST", "/classify")
    con.putheader("Content-Type", "application/json")
    con.endheaders()
    r = con.getresponse()
    assert r.status == 411
    con.close()
    assert _req(daemon, "GET", "/nope")[0] == 404
    assert _req(daemon, "POST", "/results", b"{}", {"Content-Type": "application/json"})[0] == 405
    assert _req(daemon, "GET", "/results?since=abc")[0] == 400
    assert _req(daemon, "GET", "/results?limit=0")[0] == 400
    assert _req(daemon, "GET", "/results?colour=red")[0] == 400


def test_results_since_pages_through_the_ledger(daemon) -> None:
    axis = instrument_axis(1024)
    for k in range(3):
        assert _post(daemon, {"axis": list(axis), "intensities": _spectrum(k, axis, 10 + k)})[0] == 200
    status, page, _ = _req(daemon, "GET", "/results?since=0&limit=2")
    assert status == 200 and [r["id"] for r in page["results"]] == [1, 2]
    status, rest, _ = _req(daemon, "GET", f"/results?since={page['next_since']}")
    ids = [r["id"] for r in rest["results"]]
    assert ids and ids[0] == 3 and ids == sorted(ids)


def test_metrics_in_prometheus_text_format(daemon) -> None:
    axis = instrument_axis(1024)
    _post(daemon, {"axis": list(axis), "intensities": _spectrum(0, axis, 99)})
    status, text, ctype = _req(daemon, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert 'provider="CPUExecutionProvider"' in text and "model_sha256=" in text
    assert 'ramanedge_results_total{class="compound_A"}' in text
    assert 'ramanedge_errors_total{kind="preprocess"}' in text
    assert 'ramanedge_latency_seconds_bucket{stage="inference",le="+Inf"}' in text
    assert "ramanedge_queue_depth 0" in text and "ramanedge_ready 1" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def _post_binary(d, values: np.ndarray, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, body, _ = _req(d, "POST", "/classify", values.tobytes(),
                           {"Content-Type": "application/octet-stream", **(headers or {})})
    return status, body


def test_classify_a_binary_body_gives_the_record_a_json_body_gives(daemon) -> None:
    axis = instrument_axis(1024)
    y = np.asarray(_spectrum(2, axis, 5))
    status, rec = _post_binary(daemon, np.concatenate([axis, y]).astype("<f8"),
                               {"X-Spectrum-Layout": "axis,intensities",
                                "X-Spectrum-Meta": json.dumps({"ref": "bin-1", "metadata": {"device_serial": "QE9"}})})
    assert status == 200, rec
    assert rec["input_ref"] == "bin-1" and rec["device_serial"] == "QE9" and rec["class"] == "compound_C"
    status, ref = _post(daemon, {"axis": list(axis), "intensities": list(y)})
    assert status == 200
    np.testing.assert_allclose(rec["probabilities"], ref["probabilities"], rtol=0, atol=1e-6)
    # float32 intensities alone: on the model axis
    model_axis = np.linspace(400, 1800, 300)
    status, rec2 = _post_binary(daemon, np.asarray(_spectrum(1, model_axis, 1), dtype="<f4"),
                                {"X-Spectrum-Dtype": "float32"})
    assert status == 200 and rec2["class"] == "compound_B", rec2


def _post_csv(d, text: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, body, _ = _req(d, "POST", "/classify", text.encode(), {"Content-Type": "text/csv", **(headers or {})})
    return status, body


def test_classify_a_csv_body_as_an_instrument_exports_it(daemon) -> None:
    axis = instrument_axis(1024)
    y = np.asarray(_spectrum(2, axis, 5))
    status, ref = _post(daemon, {"axis": list(axis), "intensities": list(y)})
    assert status == 200
    # a header line, semicolons, wavenumbers from high to low (as many instruments export them)
    lines = ["Raman shift (cm-1);Intensity"] + [f"{a:.6f};{v:.9g}" for a, v in zip(axis[::-1], y[::-1], strict=True)]
    status, rec = _post_csv(daemon, "\n".join(lines) + "\n",
                            {"X-Spectrum-Meta": json.dumps({"ref": "csv-1"})})
    assert status == 200, rec
    assert rec["input_ref"] == "csv-1" and rec["class"] == ref["class"]
    np.testing.assert_allclose(rec["probabilities"], ref["probabilities"], rtol=0, atol=1e-6)
    # one column: intensities on the model axis; comments and blank lines skipped
    model_axis = np.linspace(400, 1800, 300)
    text = "# exported by the test\n\n" + "\n".join(f"{v:.9g}" for v in _spectrum(1, model_axis, 1))
    status, rec2 = _post_csv(daemon, text)
    assert status == 200 and rec2["class"] == "compound_B", rec2
    # the same spectrum as JSON with a descending axis is taken too (no advice for Python code)
    status, rec3 = _post(daemon, {"axis": list(axis[::-1]), "intensities": list(y[::-1])})
    assert status == 200 and rec3["class"] == ref["class"], rec3


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1,2,3\n4,5,6\n", "3 columns"),
        ("100,1\n101\n", "1 column(s) where"),
        ("100,1\n101,nan\n", "NaN/inf"),
        ("intensity\n1\n", "1 data line(s)"),
        ("100,1\noops,2\n", "line 2"),
        ("300,1\n1900,2\n1000,1\n", "not monotonic"),
    ],
)
def test_classify_rejects_bad_csv_bodies_with_a_reason(daemon, text: str, words: str) -> None:
    status, reply = _post_csv(daemon, text)
    assert status == 422, reply
    assert words in json.dumps(reply), reply


@pytest.mark.parametrize(
    ("values", "headers", "status", "words"),
    [
        (np.ones(300), {"X-Spectrum-Layout": "wavelengths"}, 400, "X-Spectrum-Layout must be"),
        (np.ones(300), {"X-Spectrum-Dtype": "int16"}, 400, "X-Spectrum-Dtype must be"),
        (np.ones(301), {"X-Spectrum-Layout": "axis,intensities"}, 422, "not 2 x N float64"),
        (np.ones(1), {}, 422, "2 <= N"),
        (np.r_[np.ones(299), np.nan], {}, 422, "1 NaN/inf"),
        (np.ones(300), {"X-Spectrum-Meta": '{"colour": "red"}'}, 422, "Extra inputs"),
        (np.ones(300), {"X-Spectrum-Meta": "{not json"}, 400, "X-Spectrum-Meta"),
        (np.ones(200), {}, 422, "model axis of 300 points"),
    ],
)
def test_classify_rejects_bad_binary_bodies_with_clear_4xx(daemon, values: np.ndarray, headers: dict[str, str],
                                                           status: int, words: str) -> None:
    got, reply = _post_binary(daemon, values.astype("<f8"), headers)
    assert got == status, reply
    assert words in json.dumps(reply), reply


def test_a_binary_body_over_max_points_is_refused_unread(daemon) -> None:
    """The point count comes from Content-Length and the layout, so a spectrum over --max-points (20,000 here)
    is refused before its body is read (the body is never sent here: the answer comes first)."""
    u = urlsplit(daemon.url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.putrequest("POST", "/classify")
        con.putheader("Content-Type", "application/octet-stream")
        con.putheader("Content-Length", str(8 * 24_000))  # within --max-request-bytes 200000
        con.endheaders()
        r = con.getresponse()
        reply = json.loads(r.read())
        assert r.status == 422 and "20,000" in reply["detail"], reply
        assert r.getheader("Connection") == "close"
    finally:
        con.close()


def _slow_and_fast(body: bytes) -> tuple[object, object]:
    """What the full validation and :func:`parse_classify_json` make of ``body``: (ref, metadata, axis,
    intensities) as lists, or "invalid"."""
    from pydantic import ValidationError

    from edge_runtime.httpapi import ClassifyRequest, parse_classify_json

    try:
        r = ClassifyRequest.model_validate_json(body)
        slow: object = (r.ref, r.metadata, r.axis, r.intensities)
    except ValidationError:
        slow = "invalid"
    try:
        meta, axis, x = parse_classify_json(body)
        fast: object = (meta.ref, meta.metadata, None if axis is None else axis.tolist(), x.tolist())
    except ValidationError:
        fast = "invalid"
    return slow, fast


_N = 6000
_AX = ", ".join(repr(float(v)) for v in np.linspace(200.0, 2000.0, _N))
_YS = ", ".join(repr(float(v)) for v in 100 + 50 * np.sin(np.arange(_N) / 7.0))
_MID = _YS[: len(_YS) // 2 + 7]  # a cut inside the array, away from the piece boundaries


@pytest.mark.parametrize(
    "text",
    [
        f'{{"axis": [{_AX}], "intensities": [{_YS}], "ref": "r1", "metadata": {{"device_serial": "QE1"}}}}',
        f'{{"ref": "r\\"axis\\": [1]", "intensities": [{_YS}],\n "axis" :\n[ {_AX} ]}}',
        f'{{"intensities": [{_YS.replace(", ", ",")}]}}',
        f'{{"intensities": [{", ".join(str(k) for k in range(_N))}], "axis": [{_AX}]}}',
        f'{{"intensities": [{_YS}, 1e3, -2.5E-3, 0]}}',
        f'{{"intensities": [{_MID}, NaN, 1]}}',
        f'{{"intensities": [{_MID}, Infinity]}}',
        f'{{"intensities": [{_MID}, 1e400]}}',
        f'{{"intensities": [{_MID}, "1"]}}',
        f'{{"intensities": [{_MID}, [1, 2]]}}',
        f'{{"intensities": [{_YS},]}}',
        f'{{"intensities": [2, 1.{"0" * 70000}1,]}}',  # the trailing comma right after a piece boundary
        f'{{"intensities": [2, 1.{"0" * 70000}1, 3]}}',
        f'{{"intensities": [{_MID},, 1]}}',
        f'{{"intensities": [{_MID}, 01]}}',
        f'{{"intensities": [{_MID}, +1]}}',
        f'{{"intensities": [{_MID}, .5]}}',
        f'{{"intensities": [{_YS}], "intensities": [1, 2]}}',
        f'{{"intensities": [{_YS}], "axis": [{_AX}, 1.0]}}',
        f'{{"intensities": [{_YS}], "colour": "red"}}',
        f'{{"intensities": [{_YS}], "metadata": {{"axis": [1, 2]}}}}',
        f'{{"intensities": [{_YS}], "ref": 5}}',
        f'{{"intensities": []{" " * 70000}}}',
        f'{{"axis": [{_AX}]}}',
        f'[{_YS}]',
        f'{{"intensities": [{_YS}]',
    ],
)
def test_long_json_bodies_validated_in_pieces_give_what_the_full_validation_gives(text: str) -> None:
    slow, fast = _slow_and_fast(text.encode())
    assert fast == slow


def test_a_long_valid_body_is_validated_in_pieces() -> None:
    from edge_runtime.httpapi import _parse_in_pieces

    body = f'{{"axis": [{_AX}], "intensities": [{_YS}], "ref": "r1"}}'.encode()
    got = _parse_in_pieces(body)
    assert got is not None
    meta, axis, x = got
    assert meta.ref == "r1" and axis is not None and axis.size == x.size == _N
    np.testing.assert_array_equal(x, [float(v) for v in _YS.split(", ")])
