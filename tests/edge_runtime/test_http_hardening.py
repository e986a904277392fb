"""The HTTP server of a real daemon against hostile or unlucky clients (issue 13, item 6 and the HTTP part of
item 14): idle and trickling clients are dropped, 50 clients at once get no reset, 300 idle connections under
``ulimit -n 256`` do not starve file and device processing, the Host header is checked, and a token guards
everything but /healthz (the dashboard signs in with a cookie)."""

from __future__ import annotations

import http.client
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from _er_daemon import REPO, Daemon, query_ledger

from edge_runtime.errors import SettingsError
from edge_runtime.settings import load_settings
from spectral_core.synth import SyntheticCatalog, instrument_axis

TOKEN = "tok-" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def guarded(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a token, a 1 s request deadline and one extra allowed host name."""
    tmp = tmp_path_factory.mktemp("guarded")
    d = Daemon(["--model", str(model), "--db", str(tmp / "r.sqlite"), "--http", "127.0.0.1:0", "--provider", "cpu",
                "--model-poll", "0", "--http-timeout", "1", "--http-allowed-host", "lab-pc.local"],
               env={"RAMANEDGE_HTTP_TOKEN": TOKEN}).wait_ready()
    yield d
    d.signal(signal.SIGTERM)
    try:
        assert d.wait(30) == 0, d.log
    finally:
        d.kill()


def _addr(d: Daemon) -> tuple[str, int]:
    assert d.url is not None
    u = urlsplit(d.url)
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


def _req(d: Daemon, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
         host: str | None = "default") -> tuple[int, dict[str, str], bytes]:
    """One request; ``host``: the Host header to send ("default": http.client's own, None: none at all)."""
    h, p = _addr(d)
    con = http.client.HTTPConnection(h, p, timeout=30)
    try:
        con.putrequest(method, path, skip_host=host != "default", skip_accept_encoding=True)
        if host not in ("default", None):
            con.putheader("Host", host)
        for k, v in (headers or {}).items():
            con.putheader(k, v)
        if body is not None:
            con.putheader("Content-Length", str(len(body)))
        con.endheaders(body)
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        con.close()


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the server closed (or reset) the connection; never blocks."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


# -- timeouts and concurrency ------------------------------------------------------------------------------


def test_a_client_that_sends_nothing_is_dropped(guarded: Daemon) -> None:
    with socket.create_connection(_addr(guarded), timeout=30) as s:
        try:
            got = s.recv(1)
        except ConnectionResetError:
            got = b""
        except TimeoutError:
            pytest.fail("an idle connection was still open after 30 s (--http-timeout 1)")
    assert got == b""


def test_a_client_that_trickles_its_headers_is_dropped(guarded: Daemon) -> None:
    # one byte every 50 ms resets any per-read timeout; only a deadline for the whole request ends it
    closed = False
    with socket.create_connection(_addr(guarded), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not closed:
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = _closed_by_peer(s)
            time.sleep(0.05)
    assert closed, "a client trickling its headers kept its connection for 30 s (--http-timeout 1)"


def test_fifty_concurrent_clients_get_answers_and_no_reset(guarded: Daemon) -> None:
    n, rounds = 50, 4
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        for _ in range(rounds):
            try:
                status, _, _ = _req(guarded, "GET", "/readyz", headers=_bearer())
                with lock:
                    statuses.append(status)
            except OSError as exc:
                with lock:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert statuses == [200] * (n * rounds)


def test_fifty_concurrent_classify_clients_on_a_pool_of_eight_all_get_their_record(model: Path, tmp_path: Path,
                                                                                    serve) -> None:
    """50 clients POST a spectrum at the same instant to a pool of 8 workers: 42 wait in the listen backlog
    (128) while the first ones are classified. Every client gets 200 with its own committed record; none
    sees a reset or a refused connection."""
    db = tmp_path / "r.sqlite"
    d = serve(["--model", str(model), "--db", str(db), "--http", "127.0.0.1:0", "--provider", "cpu",
               "--model-poll", "0", "--http-max-connections", "8"]).wait_ready()
    axis = instrument_axis(1024)
    n = 50
    barrier = threading.Barrier(n)
    answers: dict[int, tuple[int, dict[str, object]]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        y = 100 + 1500 * SyntheticCatalog(4, 0).clean(k % 4, axis) + np.random.default_rng(k).normal(0, 10, axis.size)
        body = json.dumps({"axis": axis.tolist(), "intensities": y.tolist(), "ref": f"c{k}"}).encode()
        barrier.wait()
        try:
            status, _, raw = _req(d, "POST", "/classify", body=body, headers={"Content-Type": "application/json"})
            with lock:
                answers[k] = (status, json.loads(raw))
        except OSError as exc:  # ConnectionResetError, ConnectionRefusedError, a timeout
            with lock:
                errors.append(f"client {k}: {exc!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert sorted(answers) == list(range(n))
    assert [answers[k][0] for k in range(n)] == [200] * n, [a for a in answers.values() if a[0] != 200][:3]
    assert [answers[k][1]["input_ref"] for k in range(n)] == [f"c{k}" for k in range(n)]
    ids = {answers[k][1]["id"] for k in range(n)}
    assert len(ids) == n
    assert sorted(r[0] for r in query_ledger(db, "SELECT input_ref FROM results")) == sorted(f"c{k}" for k in range(n))


def test_the_listen_backlog_is_at_least_128(guarded: Daemon) -> None:
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    _, port = _addr(guarded)
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert lines, out
    assert int(lines[0][2]) >= 128, f"listen backlog (Send-Q of a listening socket) {lines[0][2]}: {out}"


def _csv(path: Path, label: int, seed: int) -> None:
    axis = instrument_axis(1024)
    y = 100 + 1500 * SyntheticCatalog(4, 0).clean(label, axis) + np.random.default_rng(seed).normal(0, 10, axis.size)
    tmp = path.with_suffix(".part")
    tmp.write_text("wavenumber,intensity\n" + "".join(f"{a:.5f},{v:.2f}\n" for a, v in zip(axis, y, strict=True)))
    tmp.rename(path)


def test_300_idle_connections_under_ulimit_256_do_not_starve_files_or_devices(model: Path, tmp_path: Path,
                                                                              serve) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 700:
        pytest.skip(f"this test holds 300 sockets itself; the hard descriptor limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < 700:
        resource.setrlimit(resource.RLIMIT_NOFILE, (700 if hard == resource.RLIM_INFINITY else min(hard, 4096), hard))
    drop = tmp_path / "drop"
    drop.mkdir()
    db = tmp_path / "r.sqlite"
    args = ["--model", str(model), "--db", str(db), "--http", "127.0.0.1:0", "--provider", "cpu", "--model-poll",
            "0", "--source", f"watch://{drop}", "--source", "sim://?classes=4&rate=20", "--settle", "0.05",
            "--poll", "0.2", "--http-timeout", "120"]
    # the daemon (only) runs under `ulimit -n 256`: the limit is lowered around the fork and restored at once
    own = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, own[1]))
    try:
        d = serve(args)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, own)
    d.wait_ready()
    host, port = _addr(d)
    idle: list[socket.socket] = []
    try:
        for _ in range(300):  # connect without waiting: past the backlog the kernel holds the handshake
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            idle.append(s)
        # let the daemon take what it will: until all 300 are connected, or the number connected has not moved
        # for 3.5 s (the kernel retries an unanswered SYN after 1 s and 3 s)
        connected, last_change, deadline = -1, time.monotonic(), time.monotonic() + 30
        while time.monotonic() < deadline:
            _, writable, _ = select.select([], idle, [], 0.2)
            now = sum(1 for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
            if now != connected:
                connected, last_change = now, time.monotonic()
            if connected == len(idle) or time.monotonic() - last_change > 3.5:
                break
        fd_dir = Path(f"/proc/{d.proc.pid}/fd")
        if fd_dir.is_dir():
            n_fds = len(list(fd_dir.iterdir()))
            assert n_fds < 200, f"the daemon holds {n_fds} descriptors with {connected} idle clients connected"
        n_sim = len(query_ledger(db, "SELECT id FROM results WHERE source LIKE 'sim://%'"))
        for k in range(6):
            _csv(drop / f"s{k}.csv", k % 4, k)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and d.proc.poll() is None:
            files = query_ledger(db, "SELECT status FROM results WHERE source LIKE 'watch://%'")
            sims = query_ledger(db, "SELECT id FROM results WHERE source LIKE 'sim://%'")
            if len(files) >= 6 and len(sims) >= n_sim + 20:
                break
            time.sleep(0.2)
        files = query_ledger(db, "SELECT status, error FROM results WHERE source LIKE 'watch://%'")
        sims = query_ledger(db, "SELECT id FROM results WHERE source LIKE 'sim://%'")
        assert [f[0] for f in files] == ["ok"] * 6, f"{files}\n{d.log[-4000:]}"
        assert len(sims) >= n_sim + 20, f"device spectra stalled: {len(sims)} vs {n_sim}\n{d.log[-4000:]}"
        assert not list((drop / "processing").glob("*")), "a claimed file stayed in processing/"
        assert "Too many open files" not in d.log, d.log[-4000:]
    finally:
        for s in idle:
            s.close()
    # with the idle clients gone, the API answers again
    deadline = time.monotonic() + 60
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            status = _req(d, "GET", "/healthz")[0]
        except OSError:
            time.sleep(0.2)
    assert status == 200
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log


def _low_nofile() -> None:
    """In the daemon's child process before exec: a low descriptor limit (the test keeps its own)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))


def _fds(pid: int) -> set[int]:
    return {int(p.name) for p in Path(f"/proc/{pid}/fd").iterdir()}


def _lowest_free_fd(pid: int) -> int:
    """The lowest descriptor number free in two looks 50 ms apart (one briefly open in only one look counts as
    free): with the limit lowered to it, no descriptor can be created until one below it is closed."""
    used = _fds(pid)
    time.sleep(0.05)
    used &= _fds(pid)
    return next(i for i in range(len(used) + 1) if i not in used)


@pytest.mark.skipif(not hasattr(resource, "prlimit") or not Path("/proc/self/fd").is_dir(),
                    reason="needs Linux (prlimit, /proc)")
def test_files_dropped_while_idle_connections_exhaust_descriptors_all_end_recorded(model: Path, tmp_path: Path,
                                                                                    serve) -> None:
    """A real EMFILE, not an injected one: the daemon runs under ``RLIMIT_NOFILE`` 128 (set in the child before
    exec), idle clients fill its HTTP pool (32, a quarter of the limit), then the limit is lowered to the lowest
    free descriptor number, so the daemon's next open() really fails with EMFILE, as when something else has
    eaten the rest. Files dropped meanwhile wait (retried with backoff) and are all recorded and moved on once
    the idle clients go away; none stays in processing/."""
    drop = tmp_path / "drop"
    drop.mkdir()
    db = tmp_path / "r.sqlite"
    d = serve(["--model", str(model), "--db", str(db), "--http", "127.0.0.1:0", "--provider", "cpu",
               "--model-poll", "0", "--source", f"watch://{drop}", "--settle", "0.05", "--poll", "0.2",
               "--http-timeout", "300"], preexec_fn=_low_nofile).wait_ready()
    pid = d.proc.pid
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE)[0] == 128
    host, port = _addr(d)
    n0 = len(_fds(pid))
    idle = [socket.create_connection((host, port), timeout=30) for _ in range(40)]  # 32 served, 8 in the backlog
    n_files = 6
    try:
        deadline = time.monotonic() + 30  # until the pool holds its 32 (accepted connections are descriptors)
        while time.monotonic() < deadline and len(_fds(pid)) < n0 + 32:
            time.sleep(0.05)
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (_lowest_free_fd(pid), hard))
        for k in range(n_files):
            _csv(drop / f"s{k}.csv", k % 4, k)
        def files_met_emfile() -> bool:  # a reader's retry line (a scan may meet EMFILE first)
            return any("[EMFILE]" in ln and "while reading" in ln for ln in d.log.splitlines())

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not files_met_emfile() and d.proc.poll() is None:
            time.sleep(0.05)
        assert files_met_emfile(), "no dropped file met EMFILE:\n" + d.log[-4000:]
        assert query_ledger(db, "SELECT id FROM results WHERE source LIKE 'watch://%'") == []
    finally:
        for s in idle:  # the pressure ends: their descriptors, below the lowered limit, are free again
            s.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and d.proc.poll() is None:
        done = sorted(p.name for p in (drop / "done").glob("*.csv")) if (drop / "done").is_dir() else []
        if len(done) == n_files and not list((drop / "processing").glob("*")):
            break
        time.sleep(0.1)
    rows = query_ledger(db, "SELECT input_ref, status, error FROM results WHERE source LIKE 'watch://%'")
    assert sorted(r[0] for r in rows) == [f"s{k}.csv" for k in range(n_files)], f"{rows}\n{d.log[-4000:]}"
    assert all(r[1] == "ok" for r in rows), rows
    assert sorted(p.name for p in (drop / "done").glob("*.csv")) == [f"s{k}.csv" for k in range(n_files)]
    assert not list((drop / "processing").glob("*")), "a claimed file stayed in processing/"
    assert not list((drop / "quarantine").glob("*"))
    status, _, body = _req(d, "GET", "/readyz")
    assert status == 200
    watch = next(src for src in json.loads(body)["sources"] if src["url"].startswith("watch://"))
    assert watch["fd_retries"] >= 1, watch  # the files themselves met EMFILE and were read again
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log[-4000:]


# -- Host header (DNS rebinding) ---------------------------------------------------------------------------


def test_the_host_header_must_name_this_daemon(guarded: Daemon) -> None:
    _, port = _addr(guarded)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"LAB-PC.local:{port}", "[::1]"):
        assert _req(guarded, "GET", "/healthz", host=host)[0] == 200, host
    for host in (f"attacker.example:{port}", "rebind.attacker.example", f"10.1.2.3:{port}", f"lab-pc.local.evil:{port}"):
        status, _, body = _req(guarded, "GET", "/readyz", headers=_bearer(), host=host)
        assert status == 421, (host, status, body)
        assert b"http_allowed_hosts" in body
    for host in (None, "", "a@b", "127.0.0.1:x"):
        assert _req(guarded, "GET", "/healthz", host=host)[0] == 400, host
    status, _, _ = _req(guarded, "POST", "/classify", body=b"{}", host=f"attacker.example:{port}",
                        headers={"Content-Type": "application/json", **_bearer()})
    assert status == 421


# -- the token ---------------------------------------------------------------------------------------------


def test_the_token_guards_everything_but_healthz(guarded: Daemon) -> None:
    assert _req(guarded, "GET", "/healthz")[0] == 200
    for path in ("/readyz", "/metrics", "/results", "/api/state", "/static/app.js"):
        status, headers, _ = _req(guarded, "GET", path)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
        assert _req(guarded, "GET", path, headers={"Authorization": f"Bearer {TOKEN}x"})[0] == 401, path
        assert _req(guarded, "GET", path, headers={"Authorization": TOKEN})[0] == 401, path
        assert _req(guarded, "GET", path, headers=_bearer())[0] == 200, path
    axis = np.linspace(400, 1800, 300)
    body = json.dumps({"intensities": [float(v) for v in 100 + 50 * np.sin(axis / 50)]}).encode()
    ctype = {"Content-Type": "application/json"}
    assert _req(guarded, "POST", "/classify", body=body, headers=ctype)[0] == 401
    status, _, reply = _req(guarded, "POST", "/classify", body=body, headers={**ctype, **_bearer()})
    assert status == 200, reply
    assert json.loads(reply)["status"] == "ok"


def test_the_dashboard_signs_in_once_with_a_cookie(guarded: Daemon) -> None:
    status, headers, page = _req(guarded, "GET", "/")
    assert status == 401 and headers["content-type"].startswith("text/html")
    assert b'action="/login"' in page and b'type="password"' in page
    assert _req(guarded, "GET", "/?token=wrong-token-wrong-token")[0] == 401
    assert _req(guarded, "GET", "/?" + "&".join(f"k{i}=v" for i in range(20)))[0] == 401  # too many fields

    status, headers, _ = _req(guarded, "GET", f"/?token={TOKEN}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    pair = cookie.split(";")[0]
    assert _req(guarded, "GET", "/api/state", headers={"Cookie": pair})[0] == 200
    assert _req(guarded, "GET", "/", headers={"Cookie": pair})[0] == 200
    assert _req(guarded, "GET", "/api/state", headers={"Cookie": pair[:-2] + "00"})[0] == 401

    form = f"token={TOKEN}".encode()
    status, headers, _ = _req(guarded, "POST", "/login", body=form,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["set-cookie"].split(";")[0] == pair
    status, _, _ = _req(guarded, "POST", "/login", body=b"token=nope",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401
    assert TOKEN not in guarded.log, "the token was written to the log"


def test_serve_refuses_a_network_bind_without_a_token(model: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAMANEDGE_")}
    # refused while the settings are read: nothing is bound, nothing listens
    r = subprocess.run([sys.executable, "-m", "ramanedge", "serve", "--model", str(model), "--db",
                        str(tmp_path / "r.sqlite"), "--http", "0.0.0.0:0"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--insecure-http" in r.stderr and "RAMANEDGE_HTTP_TOKEN" in r.stderr


def test_token_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("RAMANEDGE_"):
            monkeypatch.delenv(k)
    model = tmp_path / "m.onnx"
    with pytest.raises(SettingsError, match="insecure-http"):
        load_settings({"model": model, "http": "0.0.0.0:8765"})
    with pytest.raises(SettingsError, match="insecure-http"):
        load_settings({"model": model, "http": "[::]:8765"})
    assert load_settings({"model": model, "http": "0.0.0.0:8765", "insecure_http": True}).http_token is None
    assert load_settings({"model": model, "http": "[::1]:8765"}).http_token is None
    monkeypatch.setenv("RAMANEDGE_HTTP_TOKEN", TOKEN)
    s = load_settings({"model": model, "http": "0.0.0.0:8765"})
    assert s.http_token is not None and s.http_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(s) and TOKEN not in str(s.model_dump())
    monkeypatch.setenv("RAMANEDGE_HTTP_TOKEN", "short")
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings({"model": model})
    monkeypatch.delenv("RAMANEDGE_HTTP_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(f"  {TOKEN}\n")
    s = load_settings({"model": model, "http": "0.0.0.0:8765", "http_token_file": secret})
    assert s.http_token is not None and s.http_token.get_secret_value() == TOKEN
    monkeypatch.setenv("RAMANEDGE_HTTP_TOKEN", TOKEN)
    with pytest.raises(SettingsError, match="not both"):
        load_settings({"model": model, "http_token_file": secret})
    monkeypatch.delenv("RAMANEDGE_HTTP_TOKEN")
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"model": model, "http_token_file": tmp_path / "missing"})


def test_a_network_bind_without_a_token_warns_at_every_start() -> None:
    from edge_runtime.httpapi import exposure_warning

    assert "NO authentication" in (exposure_warning("0.0.0.0", None) or "")
    assert "NO authentication" in (exposure_warning("192.168.1.20", None) or "")
    assert exposure_warning("0.0.0.0", TOKEN) is None
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("::1", None) is None


def test_host_rules_for_a_wildcard_and_a_named_bind() -> None:
    """The Host rules without binding anything but loopback: the server object's check alone."""
    from edge_runtime.httpapi import HttpApi, HttpOptions

    class _View:
        max_request_bytes = 1 << 20
        request_timeout_s = 1.0

    api = HttpApi("127.0.0.1", 0, _View(), HttpOptions(allowed_hosts=("raman-7.lab",)))  # type: ignore[arg-type]
    srv = api._server

    def status(*hosts: str) -> int:
        problem = srv.host_problem(list(hosts))
        return 200 if problem is None else problem[0]

    try:
        srv.bound_host = "0.0.0.0"  # what a Docker container binds
        for ok in ("localhost:8080", "127.0.0.1:8765", "192.168.4.20:8765", "[fe80::1]:8765", "raman-7.lab:8765",
                   "RAMAN-7.LAB.:80"):
            assert status(ok) == 200, ok
        for bad in ("attacker.example:8765", "raman-7.lab.attacker.example", "localhost.attacker.example"):
            assert status(bad) == 421, bad
        srv.bound_host = "10.0.0.5"  # one LAN address: other addresses and localhost are not this socket
        assert status("10.0.0.5:8765") == 200
        for bad in ("10.0.0.6:8765", "localhost:8765", "127.0.0.1:8765"):
            assert status(bad) == 421, bad
        assert status("a:1", "b:1") == 400
    finally:
        api._server.server_close()


def test_a_token_in_a_logged_request_line_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from types import SimpleNamespace

    from edge_runtime.httpapi import _Handler

    fake = SimpleNamespace(address_string=lambda: "127.0.0.1")
    with caplog.at_level(logging.DEBUG, logger="edge_runtime.httpapi"):
        _Handler.log_message(fake, '"%s" %s %s', f"GET /?token={TOKEN}&x=1 HTTP/1.1", "303", "-")  # type: ignore[arg-type]
        _Handler.log_message(fake, "code %d, message %s", 400, f"Bad request version ('/?TOKEN={TOKEN}')")  # type: ignore[arg-type]
    assert TOKEN not in caplog.text
    assert "token=***&x=1" in caplog.text and "TOKEN=***" in caplog.text
