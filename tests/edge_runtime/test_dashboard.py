"""The live dashboard in a real headless chromium (Selenium + Debian's chromium-driver) against a real daemon:
the page loads from the daemon alone, signs in with the daemon's token once, and a spectrum POSTed to /classify
appears with its class, its unknown and drift decisions explained against their thresholds."""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from _services import require_binary

from edge_runtime.ledger import explain
from spectral_core.synth import SyntheticCatalog, instrument_axis

TOKEN = "dashboard-token-" + "5f" * 8


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = require_binary("chromium")
    driver_bin = require_binary("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1200,900"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))
    try:
        yield drv
    finally:
        drv.quit()


def _post(url: str, obj: Any) -> tuple[int, Any]:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.request("POST", "/classify", body=json.dumps(obj).encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        r = con.getresponse()
        return r.status, json.loads(r.read())
    finally:
        con.close()


def _text(drv: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException

    try:
        return str(drv.find_element("css selector", css).text)
    except NoSuchElementException:
        return ""


def test_dashboard_shows_a_posted_spectrum_with_its_class(model: Path, tmp_path: Path, serve, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    from test_source_calibration import _silicon_calibration

    cal_sha = _silicon_calibration(tmp_path / "si.json")
    (tmp_path / "drop").mkdir()
    d = serve(["--model", str(model), "--db", str(tmp_path / "r.sqlite"), "--http", "127.0.0.1:0",
               "--provider", "cpu", "--model-poll", "0",
               "--source", f"watch://{tmp_path / 'drop'}?calibration={tmp_path / 'si.json'}"],
              env={"RAMANEDGE_HTTP_TOKEN": TOKEN}).wait_ready()
    assert d.url is not None
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    # without the token the page asks for it; the form signs in (an HttpOnly cookie) and opens the dashboard
    browser.get(d.url + "/")
    wait.until(lambda b: b.find_elements("css selector", "input[name=token]"))
    assert _text(browser, "#status") == ""
    browser.find_element("css selector", "input[name=token]").send_keys(TOKEN)
    browser.find_element("css selector", "button[type=submit]").click()
    wait.until(lambda b: _text(b, "#status") == "serving")
    assert browser.current_url.rstrip("/") == d.url.rstrip("/")
    assert browser.execute_script("return document.cookie") == "", "the session cookie is HttpOnly"
    fg, bg = browser.execute_script("const s = getComputedStyle(document.getElementById('status'));"
                                    "return [s.color, s.backgroundColor];")
    assert fg != bg, "the status text is readable on its pill"
    assert _text(browser, "#model-name") == model.name
    assert _text(browser, "#provider") == "CPUExecutionProvider"
    assert _text(browser, "#model-validated") == "yes"  # tiny.validation.json is beside the model
    assert "compound_A" in _text(browser, "#model-classes")
    sources = _text(browser, "#sources")
    assert "calibrated with silicon" in sources and cal_sha[:12] in sources, sources

    axis = instrument_axis(1024)
    y = 100 + 1500 * SyntheticCatalog(4, 0).clean(2, axis) + np.random.default_rng(3).normal(0, 10, axis.size)
    status, rec = _post(d.url, {"axis": [float(v) for v in axis], "intensities": [float(v) for v in y],
                                "ref": "browser-1"})
    assert status == 200 and rec["class"] == "compound_C", rec
    wait.until(lambda b: _text(b, "#latest-id") == f"record #{rec['id']}")
    assert _text(browser, "#latest-class") == "compound_C"
    assert _text(browser, "#latest-confidence") == f"{rec['confidence']:.3f}"
    assert _text(browser, "#latest-unknown") in ("known", "UNKNOWN")
    # both decisions explained against their thresholds, beside the flags (not a bare "UNKNOWN")
    why = explain(rec)
    assert _text(browser, "#latest-unknown-why") == why["unknown"] and "threshold" in why["unknown"]
    assert _text(browser, "#latest-drift") == ("DRIFT" if rec["drift"] else "no drift")
    drift_why = _text(browser, "#latest-drift-why")
    assert drift_why == why["drift"] and "T^2" in drift_why and "Q" in drift_why, drift_why
    # latency with its meaning: the model's time apart from queueing and end-to-end
    lat = _text(browser, "#latest-latency")
    assert f"model {rec['inference_ms']:.2f} ms" in lat and "queueing" in lat and "end-to-end" in lat, lat
    assert _text(browser, "#lat-model-p50") not in ("", "–") and "of last" in _text(browser, "#drift-window")
    row = _text(browser, f"#results tr[data-id='{rec['id']}']")
    assert "browser-1" in row and "compound_C" in row
    painted = browser.execute_script(
        "const c = document.getElementById('spectrum'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
    assert painted > 500, "the spectrum is drawn on the canvas"
    left = browser.execute_script(  # the rotated y-axis label is the only thing drawn in the leftmost 14 px
        "const c = document.getElementById('spectrum'); const r = window.devicePixelRatio || 1;"
        "const d = c.getContext('2d').getImageData(0, 0, Math.round(14 * r), c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
    assert left > 50, "the spectrum plot has a y-axis label"
    shot = os.environ.get("RAMANEDGE_DASHBOARD_SCREENSHOT")  # to look at the page: a path to write a PNG to
    if shot:
        browser.save_screenshot(shot)

    # an error shows up with its reason and kind
    status, bad = _post(d.url, {"axis": list(np.linspace(300, 900, 200)), "intensities": [1.0] * 200,
                                "ref": "narrow-1"})
    assert status == 422 and bad["record"]["error_kind"] == "preprocess"
    wait.until(lambda b: "narrow-1" in _text(b, "#recent-errors"))
    assert "preprocess" in _text(browser, "#errors-by-kind")
    assert "outside" in _text(browser, "#recent-errors")

    # everything came from the daemon itself; nothing overflows a phone-sized screen
    origin = d.url.rstrip("/")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(str(r).startswith(origin) for r in resources), resources
    browser.set_window_size(360, 740)
    wait.until(lambda b: b.execute_script("return window.innerWidth") <= 360)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 361
    clipped = browser.execute_script(  # a long watch:// URL wraps inside its card instead of running out of it
        "return [...document.querySelectorAll('#sources li, #recent-errors li')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
    assert clipped == [], clipped
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log
