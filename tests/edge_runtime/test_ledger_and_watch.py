"""Ledger and drop-folder units: the exactly-once key, crash recovery paths, temp files and half-written files."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.records import Committed, Frame, LedgerEntry, ModelIdentity, Outcome
from edge_runtime.sources import WatchSource
from edge_runtime.sources._inotify import Inotify
from edge_runtime.sources._inotify import available as inotify_available
from spectral_core.synth import instrument_axis

SRC = "watch:///drop"


def _ok(ref: str, sha: str | None) -> Outcome:
    f = Frame(SRC, ref, None, None, content_sha256=sha, metadata={"seq": 3, "device_serial": "S1", "lens": "x"})
    return Outcome(frame=f, ok=True, class_name="a", class_index=0, confidence=0.9, probabilities=[0.9, 0.1],
                   unknown=False, inference_s=0.001, batch_size=1)


def test_ledger_records_every_field_and_never_a_drop_twice(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite", serving=ModelIdentity("m" * 64, "p" * 64, "CPU"))
    first = [_ok("a.csv", "h1"), _ok("b.csv", "h2"), _ok("seq=1", None), _ok("seq=1", None)]
    done = led.commit(first)
    assert [c.record_id for c in done] == [1, 2, 3, 4] and [c.outcome for c in done] == first
    assert all(c.record is not None and c.record["id"] == c.record_id for c in done)
    again = [_ok("a.csv", "h1"), _ok("a.csv", "h-other")]  # same drop again; same name, new content
    done = led.commit(again)
    assert done[0].duplicate and done[0].record_id == 1 and done[0].record is None
    assert done[0].previous == LedgerEntry(1, "ok", None, None)
    assert not done[1].duplicate and done[1].record_id == 5 and done[1].previous is None
    assert led.count() == 5
    hit = led.lookup(SRC, "a.csv", "h1")
    assert hit is not None and hit.id == 1 and hit.status == "ok"
    assert led.lookup(SRC, "a.csv", "nope") is None
    r = led.since(0, 1)[0]
    assert r["probabilities"] == [0.9, 0.1] and r["unknown"] is False and r["seq"] == 3
    assert r["device_serial"] == "S1" and r["metadata"] == {"lens": "x"} and r["model_sha256"] == "m" * 64
    assert r["completed_at"] >= r["received_at"] and r["inference_ms"] == 1.0
    assert led._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    led.close()
    assert Ledger(tmp_path / "l.sqlite").count() == 5  # durable across reopen


def _csv(path: Path) -> bytes:
    axis = instrument_axis(1024)
    data = "".join(f"{a:.4f},{100 + 50 * np.sin(a / 40):.2f}\n" for a in axis).encode()
    path.write_bytes(data)
    return data


def _run_source(src: WatchSource, until, timeout_s: float = 20.0) -> list[Frame]:
    got: list[Frame] = []
    src.start(got.append)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(got):
            time.sleep(0.02)
    finally:
        src.stop()
        src.join(5)
    return got


def test_a_ledger_from_a_newer_version_is_refused_with_its_own_error(tmp_path: Path) -> None:
    import sqlite3

    from edge_runtime.errors import LedgerError
    from edge_runtime.ledger import SCHEMA_VERSION

    db = tmp_path / "l.sqlite"
    Ledger(db).close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.close()
    with pytest.raises(LedgerError, match=rf"schema version {SCHEMA_VERSION + 1} was written by a newer") as info:
        Ledger(db)
    assert isinstance(info.value, sqlite3.DatabaseError)  # still caught where any database problem is


def test_recovery_moves_on_a_file_already_recorded_and_classifies_one_that_was_not(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "processing").mkdir(parents=True)
    url = f"watch://{drop}"
    led = Ledger(tmp_path / "l.sqlite")
    data = _csv(drop / "processing" / "recorded.csv")
    o = _ok("recorded.csv", hashlib.sha256(data).hexdigest())
    o.frame.source = url
    led.commit([o])  # crash after the commit, before the move
    _csv(drop / "processing" / "claimed.csv")  # crash after the claim, before the commit
    src = WatchSource(url, led, settle_s=0.05, poll_s=0.1)
    got = _run_source(src, lambda g: len(g) >= 1)
    assert [f.ref for f in got] == ["claimed.csv"] and got[0].error is None and got[0].axis is not None
    assert (drop / "done" / "recorded.csv").exists() and src.already_recorded == 1 and src.recovered == 2
    assert led.count() == 1


def test_temp_files_are_ignored_and_half_written_files_wait(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    for name in ("a.csv.part", "b.tmp", ".hidden.csv", "c.csv~"):
        _csv(drop / name)
    writing = drop / "slow.csv"
    full = _csv(tmp_path / "full.csv")
    stop = threading.Event()

    def slow_writer() -> None:
        with open(writing, "wb") as f:
            for k in range(0, len(full), len(full) // 10):
                f.write(full[k : k + len(full) // 10])
                f.flush()
                os.fsync(f.fileno())
                if stop.wait(0.05):
                    return

    t = threading.Thread(target=slow_writer)
    t.start()
    src = WatchSource(f"watch://{drop}", led, settle_s=0.3, poll_s=0.1)
    got = _run_source(src, lambda g: len(g) >= 1)
    stop.set()
    t.join()
    assert [f.ref for f in got] == ["slow.csv"]
    assert got[0].error is None, got[0].error  # read only once complete
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == [".hidden.csv", "a.csv.part", "b.tmp", "c.csv~"]


def test_quarantine_writes_the_reason_beside_the_file(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    (drop / "junk.csv").write_bytes(b"\x00\x01garbage")
    src = WatchSource(f"watch://{drop}", led, settle_s=0.05, poll_s=0.1, events="poll")
    got = _run_source(src, lambda g: len(g) >= 1)
    f = got[0]
    assert f.error is not None and f.error[0] == "read"
    (c,) = led.commit([Outcome.failed(f, *f.error)])
    assert f.on_done is not None
    f.on_done(c)
    info = json.loads((drop / "quarantine" / "junk.csv.error.json").read_text())
    assert info["record_id"] == c.record_id and "binary" in info["reason"] and info["kind"] == "read"
    assert (drop / "quarantine" / "junk.csv").read_bytes() == b"\x00\x01garbage"


def test_the_event_backend_is_chosen_by_events_alone(tmp_path: Path) -> None:
    # the pre-release use_events=True/False shim is gone: one keyword, one meaning
    led = Ledger(tmp_path / "l.sqlite")
    assert WatchSource(f"watch://{tmp_path}", led, events="poll").events_backend == "poll"
    assert WatchSource(f"watch://{tmp_path}", led).events_backend == "auto"
    with pytest.raises(TypeError, match="use_events"):
        WatchSource(f"watch://{tmp_path}", led, use_events=False)  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="watch events"):
        WatchSource(f"watch://{tmp_path}", led, events="false")


def test_the_drop_folder_takes_its_choices_and_defaults_from_the_settings_model(tmp_path: Path) -> None:
    from edge_runtime.settings import load_settings
    from edge_runtime.sources import EVENT_BACKENDS, LINK_POLICIES

    s = load_settings({"model": "m.onnx"})
    w = WatchSource(f"watch://{tmp_path}", Ledger(tmp_path / "l.sqlite"))
    assert (w.max_file_bytes, w.max_spectra_per_file, w.watch_links, w.events_backend) == (
        s.max_file_bytes, s.max_spectra_per_file, s.watch_links, s.watch_events)
    for events in EVENT_BACKENDS:  # every choice the source knows, the settings take, and no other
        assert load_settings({"model": "m.onnx", "watch_events": events}).watch_events == events
    for links in LINK_POLICIES:
        assert load_settings({"model": "m.onnx", "watch_links": links}).watch_links == links
    with pytest.raises(SettingsError, match="watch_links"):
        load_settings({"model": "m.onnx", "watch_links": "follow"})


def _start_collecting(src: WatchSource) -> list[Frame]:
    got: list[Frame] = []
    src.start(got.append)
    return got


def _watching(tmp_path: Path, **options) -> tuple[Path, Ledger, WatchSource, list[Frame]]:
    """A new drop folder and ledger, and a started source collecting its frames."""
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    src = WatchSource(f"watch://{drop}", led, **{"settle_s": 0.05, "poll_s": 0.2, **options})
    return drop, led, src, _start_collecting(src)


def _commit_and_move_on(led: Ledger, frame: Frame) -> Committed:
    """What the daemon's worker does with a frame that classified fine: commit, then the source's action."""
    o = _ok(frame.ref, frame.content_sha256)
    o.frame = frame
    (c,) = led.commit([o])
    assert frame.on_done is not None
    frame.on_done(c)
    return c


def _wait_for(cond, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.mark.parametrize("events", ["inotify", "watchdog", "poll"])
def test_each_event_backend_sees_files_written_in_place_and_moved_in(tmp_path: Path, events: str) -> None:
    if events == "inotify" and not inotify_available():
        pytest.skip("inotify exists on Linux only")
    drop = tmp_path / "drop"
    drop.mkdir()
    led = Ledger(tmp_path / "l.sqlite")
    # with events, the folder scan comes only at start (empty) and in 60 s: only events can find the files
    src = WatchSource(f"watch://{drop}", led, settle_s=0.05, poll_s=60.0 if events != "poll" else 0.1, events=events)
    got = _start_collecting(src)
    try:
        assert _wait_for(lambda: src.status()["scans"] >= 1)  # the start-up scan is over
        _csv(drop / "written.csv")
        _csv(tmp_path / "moved.csv")
        os.rename(tmp_path / "moved.csv", drop / "moved.csv")
        assert _wait_for(lambda: len(got) >= 2), src.status()
    finally:
        src.stop()
        src.join(5)
    assert sorted(f.ref for f in got) == ["moved.csv", "written.csv"]
    assert all(f.error is None and f.axis is not None for f in got)
    st = src.status()
    assert st["events_via"] == events and st["events"] is (events != "poll")
    if events != "poll":
        assert st["scans"] == 1  # found by events, not by a scan


def test_lost_events_make_the_source_rescan_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_runtime.sources._events as events_module
    import edge_runtime.sources._watch as watch_module

    lose, waiting = threading.Event(), threading.Event()

    class Lossy(events_module.PollOnly):
        """Events that never name a file and, when told, report that the kernel dropped some."""

        name = "lossy"

        def wait(self, timeout_s: float) -> tuple[set[str], bool]:
            waiting.set()  # the start-up scan is over
            super().wait(min(timeout_s, 0.02))
            if lose.is_set():
                lose.clear()
                return set(), True
            return set(), False

    monkeypatch.setattr(watch_module, "open_events", lambda folder, backend, url: Lossy())
    drop = tmp_path / "drop"
    drop.mkdir()
    src = WatchSource(f"watch://{drop}", Ledger(tmp_path / "l.sqlite"), settle_s=0.05, poll_s=60.0)
    got = _start_collecting(src)
    try:
        assert waiting.wait(10)
        _csv(drop / "unannounced.csv")
        time.sleep(0.3)
        assert got == []  # no event, no scan due: not seen yet
        lose.set()
        assert _wait_for(lambda: len(got) == 1)
    finally:
        src.stop()
        src.join(5)
    assert got[0].ref == "unannounced.csv" and src.status()["rescans"] == 1


def test_inotify_reports_names_and_wakes_up(tmp_path: Path) -> None:
    if not inotify_available():
        pytest.skip("inotify exists on Linux only")
    ino = Inotify(tmp_path)
    try:
        assert ino.wait(0.01) == (set(), False)
        (tmp_path / "a.csv").write_text("1,2\n")
        (tmp_path / "sub").mkdir()  # folders are not files
        (tmp_path / "elsewhere.tmp").write_text("x")
        os.rename(tmp_path / "elsewhere.tmp", tmp_path / "b.csv")
        names, lost = ino.wait(1.0)
        assert names == {"a.csv", "elsewhere.tmp", "b.csv"} and not lost
        t0 = time.monotonic()
        threading.Timer(0.1, ino.wakeup).start()
        assert ino.wait(10.0) == (set(), False) and time.monotonic() - t0 < 5.0
    finally:
        ino.close()
        ino.close()
    assert ino.wait(0.01) == (set(), False)


@pytest.mark.parametrize("first_ok", [True, False])
def test_the_same_bytes_dropped_again_are_moved_on_as_first_recorded(tmp_path: Path, first_ok: bool) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    url = f"watch://{drop}"
    led = Ledger(tmp_path / "l.sqlite")
    data = _csv(drop / "x.csv")
    first = _ok("x.csv", hashlib.sha256(data).hexdigest())
    first.frame.source = url
    if not first_ok:
        first = Outcome.failed(first.frame, "input", "first time it failed")
    (before,) = led.commit([first])
    src = WatchSource(url, led, settle_s=0.05, poll_s=0.1)
    got = _run_source(src, lambda g: len(g) >= 1)
    again = _ok("x.csv", got[0].content_sha256)
    again.frame = got[0]
    (c,) = led.commit([again])  # classified fine this time, but the ledger already holds this drop
    assert c.duplicate and c.previous is not None and c.previous.id == before.record_id
    assert got[0].on_done is not None
    got[0].on_done(c)
    assert led.count() == 1
    where = "done" if first_ok else "quarantine"
    assert (drop / where / "x.csv").read_bytes() == data
    if not first_ok:
        info = json.loads((drop / "quarantine" / "x.csv.error.json").read_text())
        assert info["record_id"] == before.record_id and info["reason"] == "first time it failed"


def test_a_name_still_in_processing_is_claimed_again_only_after_it_moved_on(tmp_path: Path) -> None:
    drop, led, src, got = _watching(tmp_path)
    try:
        first = _csv(drop / "x.csv")
        assert _wait_for(lambda: len(got) == 1)
        second = b"400,1\n500,2\n600,3\n"
        (drop / "x.csv").write_bytes(second)  # the instrument reuses the name before the first one is done
        time.sleep(0.6)  # events and three scans: the second file must wait, the first is still in processing/
        assert len(got) == 1 and (drop / "processing" / "x.csv").read_bytes() == first
        _commit_and_move_on(led, got[0])
        assert _wait_for(lambda: len(got) == 2)
    finally:
        src.stop()
        src.join(5)
    assert got[1].ref == "x.csv" and got[1].content_sha256 == hashlib.sha256(second).hexdigest()
    assert (drop / "done" / "x.csv").read_bytes() == first


@pytest.mark.parametrize("events", ["auto", "poll"])
def test_a_backlog_is_handed_to_the_readers_a_bounded_number_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: str
) -> None:
    import edge_runtime.sources._watch as watch_module

    monkeypatch.setattr(watch_module, "MAX_QUEUED_CLAIMS", 4)
    drop = tmp_path / "drop"
    drop.mkdir()
    for i in range(60):  # waiting while the daemon was down
        _csv(drop / f"b{i:03d}.csv")
    src = WatchSource(f"watch://{drop}", Ledger(tmp_path / "l.sqlite"), settle_s=0.01, poll_s=0.5, readers=1,
                      events=events)
    got: list[Frame] = []
    most = [0]

    def slow_submit(f: Frame) -> None:  # a busy worker: back-pressure reaches the readers
        most[0] = max(most[0], src._queued)
        time.sleep(0.005)
        got.append(f)

    src.start(slow_submit)
    try:
        assert _wait_for(lambda: len(got) == 60), (len(got), src.status())
    finally:
        src.stop()
        src.join(5)
    assert sorted(f.ref for f in got) == [f"b{i:03d}.csv" for i in range(60)]
    assert 1 <= most[0] <= 4


@pytest.mark.parametrize("events", ["auto", "poll"])
def test_a_drop_folder_that_vanishes_and_comes_back_is_watched_again(tmp_path: Path, events: str) -> None:
    import shutil

    drop, _, src, got = _watching(tmp_path, events=events)
    try:
        _csv(drop / "before.csv")
        assert _wait_for(lambda: len(got) == 1)
        shutil.rmtree(drop)  # an unmounted share, a folder deleted by hand
        assert _wait_for(lambda: src.status()["folder_missing"]), src.status()
        drop.mkdir()
        assert _wait_for(lambda: not src.status()["folder_missing"]), src.status()
        _csv(drop / "after.csv")
        assert _wait_for(lambda: len(got) == 2), src.status()
    finally:
        src.stop()
        src.join(5)
    assert [f.ref for f in got] == ["before.csv", "after.csv"] and src.status()["rewatches"] == 1
    assert all((drop / d).is_dir() for d in ("processing", "done", "quarantine"))


def test_removed_processing_and_done_folders_are_created_again(tmp_path: Path) -> None:
    drop, led, src, got = _watching(tmp_path)
    try:
        assert _wait_for(lambda: src.status()["scans"] >= 1)
        (drop / "processing").rmdir()
        (drop / "done").rmdir()
        data = _csv(drop / "x.csv")
        assert _wait_for(lambda: len(got) == 1), src.status()
    finally:
        src.stop()
        src.join(5)
    assert got[0].error is None and (drop / "processing" / "x.csv").read_bytes() == data
    (drop / "done").rmdir()
    _commit_and_move_on(led, got[0])
    assert (drop / "done" / "x.csv").read_bytes() == data
