"""POST /classify takes spectra up to the daemon's ``max_points`` in every body format (JSON, binary, text/csv):
the limit follows the setting both ways, never a fixed cap of the request model."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edge_runtime.httpapi import BINARY_CTYPE, CSV_CTYPE, LAYOUT_HEADER, HttpApi
from edge_runtime.records import Committed, Frame, Outcome
from edge_runtime.settings import DEFAULT_MAX_POINTS, load_settings


class _View:
    """The daemon as the HTTP API sees it: every offered spectrum is recorded at once with its length."""

    def __init__(self, max_points: int) -> None:
        self.settings = load_settings({"model": "m.onnx", "max_points": max_points})
        self.max_request_bytes = self.settings.max_request_bytes
        self.request_timeout_s = 10.0
        self.offered: list[Frame] = []

    def model_axis(self) -> list[float]:
        return np.linspace(200.0, 1800.0, 300).tolist()

    def offer(self, frame: Frame, timeout_s: float) -> bool:
        self.offered.append(frame)
        assert frame.on_done is not None and frame.intensities is not None
        record = {"id": len(self.offered), "points": int(frame.intensities.size)}  # a record stand-in
        frame.on_done(Committed(Outcome(frame=frame, ok=True), len(self.offered), 0.0, record))  # type: ignore[arg-type]
        return True


@pytest.fixture
def serve() -> Iterator[Any]:
    apis: list[HttpApi] = []

    def start(max_points: int) -> tuple[HttpApi, _View]:
        view = _View(max_points)
        api = HttpApi("127.0.0.1", 0, view)  # type: ignore[arg-type]
        api.start()
        apis.append(api)
        return api, view

    yield start
    for api in apis:
        api.stop()


def _post(api: HttpApi, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    con = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        con.request("POST", "/classify", body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = con.getresponse()
        return r.status, json.loads(r.read())
    finally:
        con.close()


def _bodies(n: int) -> dict[str, tuple[bytes, str, dict[str, str]]]:
    axis = np.linspace(100.0, 3000.0, n)
    y = 100.0 + np.sin(np.arange(n) / 9.0)
    return {
        "json": (json.dumps({"axis": axis.tolist(), "intensities": y.tolist()}).encode(), "application/json", {}),
        "binary": (np.concatenate([axis, y]).astype("<f8").tobytes(), BINARY_CTYPE, {LAYOUT_HEADER: "axis,intensities"}),
        "csv": ("".join(f"{a!r},{v!r}\n" for a, v in zip(axis.tolist(), y.tolist(), strict=True)).encode(), CSV_CTYPE,
                {}),
    }


@pytest.mark.parametrize("kind", ["json", "binary", "csv"])
def test_a_spectrum_longer_than_the_default_limit_is_taken_when_max_points_allows_it(serve, kind: str) -> None:
    n = DEFAULT_MAX_POINTS + 4_464  # 70,000
    api, view = serve(n + 1)
    body, ctype, headers = _bodies(n)[kind]
    status, reply = _post(api, body, ctype, headers)
    assert status == 200, reply
    assert reply["points"] == n and view.offered[-1].intensities.size == n


@pytest.mark.parametrize("kind", ["json", "binary", "csv"])
def test_a_spectrum_over_max_points_is_refused_naming_the_limit(serve, kind: str) -> None:
    api, view = serve(1_000)
    body, ctype, headers = _bodies(1_200)[kind]
    status, reply = _post(api, body, ctype, headers)
    assert status == 422 and "1,000" in json.dumps(reply), reply
    assert not view.offered
    ok_body, ctype, headers = _bodies(1_000)[kind]
    assert _post(api, ok_body, ctype, headers)[0] == 200
