"""Drop-folder hardening: hostile and unlucky entries (names that are not UTF-8, symlinks, huge or sparse files,
.npz bombs, descriptor exhaustion, reused names, slow writers, multi-spectrum files) each end as records for that
entry, the entry moves on out of processing/, and nothing else is disturbed."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import SettingsError
from edge_runtime.ledger import Ledger
from edge_runtime.records import Committed, Frame, Outcome
from edge_runtime.settings import load_settings
from edge_runtime.sources import WatchSource, input_ref, name_of_ref
from edge_runtime.sources._inotify import available as inotify_available
from spectral_core.errors import DataError
from spectral_core.synth import instrument_axis


def _csv_bytes(phase: float = 0.0) -> bytes:
    axis = instrument_axis(1024)
    return "".join(f"{a:.4f},{100 + 50 * np.sin(a / 40 + phase):.2f}\n" for a in axis).encode()


def _table_bytes(n: int, *, flat: tuple[int, ...] = ()) -> bytes:
    """A transposed table: a wavenumber column, then one column a spectrum (``flat`` ones constant)."""
    axis = np.linspace(400, 1800, 300)
    lines = ["wavenumber," + ",".join(f"s{k}" for k in range(n))]
    for a in axis:
        cells = [("5.00" if k in flat else f"{100 + 50 * np.sin(a / 40 + k):.2f}") for k in range(n)]
        lines.append(f"{a:.3f}," + ",".join(cells))
    return ("\n".join(lines) + "\n").encode()


class _Watch:
    """A started source on a new drop folder, collecting its frames; the test commits them like the daemon."""

    def __init__(self, tmp_path: Path, *, start: bool = True, **options: object) -> None:
        self.drop = tmp_path / "drop"
        self.drop.mkdir(exist_ok=True)
        self.led = Ledger(tmp_path / "l.sqlite")
        self.url = f"watch://{self.drop}"
        opts = {"settle_s": 0.05, "poll_s": 0.1, **options}
        self.src = WatchSource(self.url, self.led, **opts)  # type: ignore[arg-type]
        self.got: list[Frame] = []
        self._lock = threading.Lock()
        if start:
            self.start()

    def start(self) -> None:
        self.src.start(self._take)

    def _take(self, f: Frame) -> None:
        with self._lock:
            self.got.append(f)

    def wait(self, n: int, timeout_s: float = 20.0) -> list[Frame]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.got) < n:
            time.sleep(0.02)
        return list(self.got)

    def commit(self, frame: Frame, ok: bool | None = None, reason: str = "failed") -> Committed:
        """Commit as the daemon's worker would: ok when the frame has no error (unless told), then on_done."""
        good = frame.error is None if ok is None else ok
        if good:
            o = Outcome(frame=frame, ok=True, class_name="a", class_index=0, confidence=0.9)
        else:
            o = Outcome.failed(frame, *(frame.error or ("input", reason)))
        (c,) = self.led.commit([o])
        assert frame.on_done is not None
        frame.on_done(c)
        return c

    def stop(self) -> None:
        self.src.stop()
        self.src.join(5)

    def processing_empty(self) -> bool:
        return not os.listdir(self.drop / "processing")


@pytest.fixture
def watch(tmp_path: Path):
    made: list[_Watch] = []

    def make(**options: object) -> _Watch:
        w = _Watch(tmp_path, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


def _error_json(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.error.json").read_text(encoding="utf-8"))


# -- names ----------------------------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_recorded_losslessly_and_moved_under_its_own_bytes(watch, tmp_path: Path) -> None:
    w = watch(start=False)
    raw = b"bad\xff.csv"
    data = _csv_bytes()
    with open(os.path.join(os.fsencode(w.drop), raw), "wb") as fh:
        fh.write(data)
    (w.drop / "bad\\xff.csv").write_bytes(_csv_bytes(1.0))  # a real name that looks like the escape
    w.start()
    got = w.wait(2)
    assert len(got) == 2
    refs = sorted(f.ref for f in got)
    assert refs == ["bad\\\\xff.csv", "bad\\xff.csv"], refs
    for f in got:
        assert f.error is None, f.error
        w.commit(f)  # SQLite takes the reference (a str with surrogates would raise)
    stored = sorted(r[0] for r in w.led._reader().execute("SELECT input_ref FROM results"))
    assert stored == refs
    assert sorted(name_of_ref(r) for r in stored) == sorted([raw, b"bad\\xff.csv"])
    done = sorted(os.listdir(os.fsencode(w.drop / "done")))
    assert done == sorted([raw, b"bad\\xff.csv"])
    with open(os.path.join(os.fsencode(w.drop / "done"), raw), "rb") as fh:
        assert fh.read() == data
    assert w.processing_empty()


def test_a_bad_file_with_a_name_that_is_not_utf8_gets_a_storable_error_record(watch) -> None:
    w = watch(start=False)
    with open(os.path.join(os.fsencode(w.drop), b"junk\xfe.csv"), "wb") as fh:
        fh.write(b"not,a\nspectrum\n")
    w.start()
    (f,) = w.wait(1)
    assert f.ref == "junk\\xfe.csv" and f.error is not None
    w.commit(f)  # the reader quotes the file name; a lone surrogate in the reason would make SQLite raise
    (reason,) = w.led._reader().execute("SELECT error FROM results").fetchone()
    assert reason == f.error[1]
    assert b"junk\xfe.csv" in os.listdir(os.fsencode(w.drop / "quarantine"))
    assert json.loads((w.drop / "quarantine" / os.fsdecode(b"junk\xfe.csv.error.json")).read_text())["file"] == f.ref


def test_input_ref_is_identity_for_ordinary_names_and_reversible_for_the_rest() -> None:
    for name in ("a.csv", "spectrum 1 (ü).txt", "x#y.csv"):
        assert input_ref(name) == name
    for raw in (b"bad\xff.csv", b"a\\b.csv", b"\\xff.csv", b"\xc3(\x80.csv"):
        ref = input_ref(os.fsdecode(raw))
        ref.encode("utf-8")  # storable
        assert name_of_ref(ref) == raw
    assert input_ref(os.fsdecode(b"bad\xff.csv")) != input_ref("bad\\xff.csv")


# -- links and odd entries ------------------------------------------------------------------------------


@pytest.mark.parametrize("events", ["auto", "poll"])
def test_symlinks_are_refused_quarantined_as_links_and_never_read(watch, tmp_path: Path, events: str) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("TOPSECRET-LINE,1\n400,2\n500,3\n")
    w = watch(start=False, events=events)
    os.symlink("loop.csv", w.drop / "loop.csv")  # a link to itself: ELOOP for anyone who follows it
    os.symlink(secret, w.drop / "out.csv")
    os.symlink(w.drop / "missing.csv", w.drop / "dangling.csv")
    (w.drop / "good.csv").write_bytes(_csv_bytes())
    w.start()
    got = {f.ref: f for f in w.wait(4)}
    assert sorted(got) == ["dangling.csv", "good.csv", "loop.csv", "out.csv"]
    assert got["good.csv"].error is None
    for name in ("dangling.csv", "loop.csv", "out.csv"):
        err = got[name].error
        assert err is not None and "symlink refused" in err[1], err
        assert "TOPSECRET" not in err[1] and str(tmp_path) not in err[1]
    for f in got.values():
        w.commit(f)
    q = w.drop / "quarantine"
    for name in ("dangling.csv", "loop.csv", "out.csv"):
        assert (q / name).is_symlink(), name  # the link itself, not a copy of its target
        text = (q / f"{name}.error.json").read_text()
        assert "symlink refused" in text and "TOPSECRET" not in text
    assert secret.read_text().startswith("TOPSECRET")
    assert (w.drop / "done" / "good.csv").exists() and w.processing_empty()
    assert w.led.count() == 4


def test_links_inside_the_folder_are_read_when_allowed_and_outside_ones_still_refused(watch, tmp_path: Path) -> None:
    w = watch(start=False, watch_links="inside")
    (w.drop / "store").mkdir()
    data = _csv_bytes()
    (w.drop / "store" / "x.dat").write_bytes(data)
    (tmp_path / "outside.csv").write_bytes(data)
    os.symlink("store/x.dat", w.drop / "in.csv")  # relative: resolved from the drop folder, not processing/
    os.symlink(tmp_path / "outside.csv", w.drop / "out.csv")
    os.symlink("../drop/store/../../outside.csv", w.drop / "sneaky.csv")
    w.start()
    got = {f.ref: f for f in w.wait(3)}
    assert sorted(got) == ["in.csv", "out.csv", "sneaky.csv"]
    assert got["in.csv"].error is None and got["in.csv"].content_sha256 == hashlib.sha256(data).hexdigest()
    for name in ("out.csv", "sneaky.csv"):
        err = got[name].error
        assert err is not None and "symlink refused" in err[1]
    with pytest.raises(SettingsError, match="watch_links"):
        WatchSource(w.url, w.led, watch_links="follow")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_an_error_record_and_never_blocks_the_readers(watch) -> None:
    w = watch(start=False)
    os.mkfifo(w.drop / "pipe.csv")
    (w.drop / "good.csv").write_bytes(_csv_bytes())
    w.start()
    got = {f.ref: f for f in w.wait(2)}
    assert sorted(got) == ["good.csv", "pipe.csv"]
    err = got["pipe.csv"].error
    assert err is not None and "not a regular file (FIFO)" in err[1]
    w.commit(got["pipe.csv"])
    assert (w.drop / "quarantine" / "pipe.csv").exists()


# -- size ----------------------------------------------------------------------------------------------


def test_a_sparse_100_gb_file_is_refused_unread_with_its_size_and_the_limit(watch) -> None:
    w = watch(start=False)
    with open(w.drop / "huge.csv", "wb") as fh:
        fh.truncate(100 << 30)  # sparse: takes no disk, but reading it would take 100 GB of memory
    w.start()
    (f,) = w.wait(1)
    assert f.error is not None and f.error[0] == "read"
    assert str(100 << 30) in f.error[1] and "max_file_bytes=67108864" in f.error[1]
    w.commit(f)
    assert (w.drop / "quarantine" / "huge.csv").stat().st_size == 100 << 30
    assert w.processing_empty()


def test_the_size_cap_is_a_setting(watch) -> None:
    w = watch(max_file_bytes=1000)
    (w.drop / "a.csv").write_bytes(_csv_bytes())
    (f,) = w.wait(1)
    assert f.error is not None and "max_file_bytes=1000" in f.error[1]
    assert load_settings({"model": "m.onnx", "max_file_bytes": 5}).max_file_bytes == 5
    assert load_settings({"model": "m.onnx"}).max_file_bytes == 64 << 20


def _npz_declaring(values: int) -> bytes:
    """A tiny .npz whose X.npy header declares ``values`` float32 values (the data itself is missing)."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (values,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", head.getvalue() + b"\0" * 64)
        zf.writestr("axis.npy", head.getvalue())
    return buf.getvalue()


def test_an_npz_declaring_a_billion_values_is_refused_before_allocation(watch) -> None:
    w = watch(start=False)
    (w.drop / "bomb.npz").write_bytes(_npz_declaring(10**9))
    w.start()
    (f,) = w.wait(1)
    assert f.error is not None and "refused before reading them" in f.error[1], f.error
    assert "1000000000" in f.error[1]


# -- isolation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [MemoryError("no room"), RuntimeError("surprise"), KeyError("k")])
def test_any_exception_while_parsing_is_that_files_error_record(
    watch, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    import edge_runtime.sources._watch as watch_module

    real = watch_module.parse_file

    def parse(path: Path, data: bytes, **kw: int):
        if path.name == "bad.csv":
            raise exc
        return real(path, data, **kw)

    monkeypatch.setattr(watch_module, "parse_file", parse)
    w = watch(start=False)
    (w.drop / "bad.csv").write_bytes(_csv_bytes())
    (w.drop / "good.csv").write_bytes(_csv_bytes(2.0))
    w.start()
    got = {f.ref: f for f in w.wait(2)}
    assert sorted(got) == ["bad.csv", "good.csv"]
    err = got["bad.csv"].error
    assert err is not None and type(exc).__name__ in err[1]
    assert got["good.csv"].error is None
    for f in got.values():
        w.commit(f)
    assert (w.drop / "quarantine" / "bad.csv").exists() and w.processing_empty()
    (w.drop / "later.csv").write_bytes(_csv_bytes(3.0))  # the readers are still alive
    assert [f.ref for f in w.wait(3)][-1] == "later.csv"


def test_a_recovered_file_that_fails_while_being_read_is_recorded_too(
    watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: WatchSource, path_s: str, name: str) -> tuple[bytes, os.stat_result]:
        raise RuntimeError("disk said no")

    monkeypatch.setattr(WatchSource, "_read_bytes", boom)
    (tmp_path / "drop" / "processing").mkdir(parents=True)
    (tmp_path / "drop" / "processing" / "left.csv").write_bytes(_csv_bytes())
    w = watch()
    (f,) = w.wait(1)
    assert f.ref == "left.csv" and f.error is not None and "RuntimeError: disk said no" in f.error[1]
    assert f.content_sha256 is not None  # keyed, so a crash before the move cannot record it twice
    w.commit(f)
    assert (w.drop / "quarantine" / "left.csv").exists() and w.processing_empty()


def test_descriptor_exhaustion_is_waited_out_and_the_file_read_again(watch, monkeypatch: pytest.MonkeyPatch) -> None:
    real = WatchSource._read_bytes
    calls = {"n": 0}

    def exhausted(self: WatchSource, path_s: str, name: str) -> tuple[bytes, os.stat_result]:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(self, path_s, name)

    monkeypatch.setattr(WatchSource, "_read_bytes", exhausted)
    w = watch(start=False)
    data = _csv_bytes()
    (w.drop / "a.csv").write_bytes(data)
    w.start()
    (f,) = w.wait(1)
    assert f.error is None and f.content_sha256 == hashlib.sha256(data).hexdigest()
    assert w.src.fd_retries == 3
    w.commit(f)
    assert (w.drop / "done" / "a.csv").read_bytes() == data and w.processing_empty()


def test_a_move_that_meets_descriptor_exhaustion_is_retried(watch, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_runtime.sources._watch as watch_module

    real = watch_module.move_exclusive
    calls = {"n": 0}

    def flaky(*a: object, **k: object) -> str:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(errno.ENFILE, "File table overflow")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(watch_module, "move_exclusive", flaky)
    w = watch()
    (w.drop / "a.csv").write_bytes(_csv_bytes())
    (f,) = w.wait(1)
    w.commit(f)
    deadline = time.monotonic() + 20
    # a move is a link into done/, then the unlink from processing/: wait for both
    while time.monotonic() < deadline and not ((w.drop / "done" / "a.csv").exists() and w.processing_empty()):
        time.sleep(0.02)
    assert (w.drop / "done" / "a.csv").exists() and w.processing_empty() and calls["n"] == 3


# -- done/ and quarantine/ -----------------------------------------------------------------------------


@pytest.mark.parametrize("ok", [True, False])
def test_done_and_quarantine_never_overwrite_a_file(watch, ok: bool) -> None:
    w = watch()
    contents = [b"C" + _csv_bytes(), b"A" + _csv_bytes(1.0), b"B" + _csv_bytes(2.0)]
    for name, data in zip(("x.3.csv", "x.csv", "x.csv"), contents, strict=True):
        (w.drop / name).write_bytes(data)  # x.csv twice: the second only once the first moved on
        got = w.wait(len(w.got) + 1)
        w.commit(got[-1], ok=ok)
    assert [f.ref for f in w.got] == ["x.3.csv", "x.csv", "x.csv"]
    assert [r[0] for r in w.led._reader().execute("SELECT id FROM results")] == [1, 2, 3]
    folder = w.drop / ("done" if ok else "quarantine")
    kept = {p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".error.json")}
    assert kept == set(contents)  # before the fix, x.csv #3 went to x.3.csv over C
    if not ok:
        assert len([p for p in folder.iterdir() if p.name.endswith(".error.json")]) == 3


def test_a_crash_between_link_and_unlink_leaves_one_copy_after_recovery(watch, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    for d in ("processing", "done", "quarantine"):
        (drop / d).mkdir(parents=True)
    data = _csv_bytes()
    (drop / "processing" / "x.csv").write_bytes(data)
    os.link(drop / "processing" / "x.csv", drop / "done" / "x.csv")  # the move was half done
    led = Ledger(tmp_path / "l.sqlite")
    f = Frame(f"watch://{drop}", "x.csv", None, None, content_sha256=hashlib.sha256(data).hexdigest())
    led.commit([Outcome(frame=f, ok=True, class_name="a", class_index=0, confidence=0.9)])
    led.close()
    w = watch()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not w.processing_empty():
        time.sleep(0.02)
    assert w.processing_empty() and os.listdir(drop / "done") == ["x.csv"] and not w.got


def test_an_orphan_error_note_in_quarantine_is_never_overwritten(watch) -> None:
    w = watch()
    (w.drop / "quarantine" / "y.csv.error.json").write_text("{\"old\": 1}")  # its file was taken away
    (w.drop / "y.csv").write_bytes(b"junk")
    (f,) = w.wait(1)
    w.commit(f)
    assert (w.drop / "quarantine" / "y.csv.error.json").read_text() == "{\"old\": 1}"
    assert (w.drop / "quarantine" / "y.1.csv").read_bytes() == b"junk"
    assert _error_json(w.drop / "quarantine", "y.1.csv")["record_id"] == 1


def test_a_quarantine_reason_is_bounded_and_says_where_it_was_cut(watch, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_runtime.sources._watch as watch_module

    def parse(path: Path, data: bytes, **kw: int):
        raise DataError("line 1: " + "x" * 200_000)

    monkeypatch.setattr(watch_module, "parse_file", parse)
    w = watch()
    (w.drop / "long.csv").write_bytes(_csv_bytes())
    (f,) = w.wait(1)
    w.commit(f)
    info = _error_json(w.drop / "quarantine", "long.csv")
    assert len(info["reason"].encode()) <= 64 << 10
    assert info["reason"].startswith("line 1: xxx")
    cut = re.search(r" \.\.\. \[cut ([\d,]+) bytes\]$", info["reason"])
    assert cut is not None and int(cut.group(1).replace(",", "")) + len(info["reason"].encode()) > 200_008


def test_a_quarantined_name_dropped_again_with_new_content_is_read_again(watch) -> None:
    w = watch()
    (w.drop / "s.csv").write_bytes(_csv_bytes()[:500])  # cut short: an error
    (first,) = w.wait(1)
    assert first.error is not None
    w.commit(first)
    assert (w.drop / "quarantine" / "s.csv").exists()
    complete = _csv_bytes()
    (w.drop / "s.csv").write_bytes(complete)
    got = w.wait(2)
    assert len(got) == 2 and got[1].error is None
    assert got[1].content_sha256 == hashlib.sha256(complete).hexdigest()
    w.commit(got[1])
    assert (w.drop / "done" / "s.csv").read_bytes() == complete and w.led.count() == 2


# -- slow writers --------------------------------------------------------------------------------------


@pytest.mark.skipif(not inotify_available(), reason="IN_CLOSE_WRITE is inotify's (Linux)")
def test_a_writer_pausing_between_chunks_of_one_open_file_is_read_once_complete(watch) -> None:
    w = watch(settle_s=0.1, events="inotify")
    data = _csv_bytes()
    third = len(data) // 3
    with open(w.drop / "slow.csv", "wb") as fh:
        for k in range(3):
            fh.write(data[k * third : (k + 1) * third if k < 2 else len(data)])
            fh.flush()
            time.sleep(0.5)  # five times the settle time: unchanged, yet not complete
            assert not w.got, "claimed while its writer still held it open"
    (f,) = w.wait(1)
    assert f.error is None and f.content_sha256 == hashlib.sha256(data).hexdigest()


def test_with_a_ready_marker_a_file_reopened_to_append_is_claimed_only_once_marked(watch) -> None:
    w = watch(ready_marker=".ready")
    data = _csv_bytes()
    third = len(data) // 3
    for k in range(3):  # closed and reopened between chunks: every close looks like the end of the file
        with open(w.drop / "append.csv", "ab") as fh:
            fh.write(data[k * third : (k + 1) * third if k < 2 else len(data)])
        time.sleep(0.4)
        assert not w.got, "claimed before its marker"
    (w.drop / "append.csv.ready").touch()
    (f,) = w.wait(1)
    assert f.ref == "append.csv" and f.error is None and f.content_sha256 == hashlib.sha256(data).hexdigest()
    time.sleep(0.3)
    assert len(w.got) == 1 and not (w.drop / "append.csv.ready").exists()
    with pytest.raises(SettingsError, match="ready_marker"):
        WatchSource(w.url, w.led, ready_marker="a/b")
    assert load_settings({"model": "m.onnx", "ready_marker": ".ok"}).ready_marker == ".ok"


# -- multi-spectrum files ------------------------------------------------------------------------------


def test_a_file_of_n_spectra_gives_n_records_and_moves_on_after_the_last(watch) -> None:
    w = watch()
    (w.drop / "table.csv").write_bytes(_table_bytes(3))
    got = w.wait(3)
    assert [f.ref for f in got] == ["table.csv#0", "table.csv#1", "table.csv#2"]
    assert len({id(f.axis) for f in got}) == 1 and all(f.error is None for f in got)
    assert [f.metadata["spectrum_index"] for f in got] == [0, 1, 2]
    w.commit(got[0])
    w.commit(got[2])
    assert (w.drop / "processing" / "table.csv").exists(), "moved on before all its records were committed"
    w.commit(got[1])
    assert (w.drop / "done" / "table.csv").exists() and w.processing_empty()
    assert w.led.count() == 3


def test_a_partly_bad_multi_spectrum_file_records_both_and_lists_the_failed_k(watch) -> None:
    w = watch()
    (w.drop / "t.csv").write_bytes(_table_bytes(4))
    got = w.wait(4)
    for k, f in enumerate(got):
        w.commit(f, ok=k not in (1, 3), reason=f"flat spectrum {k}")
    info = _error_json(w.drop / "quarantine", "t.csv")
    assert info["spectra"] == 4 and info["failed_count"] == 2
    assert [e["k"] for e in info["failed"]] == [1, 3] and info["failed"][0]["reason"] == "flat spectrum 1"
    assert info["reason"].startswith("2 of 4 spectra failed")
    rows = [tuple(r) for r in w.led._reader().execute("SELECT input_ref, status FROM results ORDER BY input_ref")]
    assert rows == [("t.csv#0", "ok"), ("t.csv#1", "error"), ("t.csv#2", "ok"), ("t.csv#3", "error")]


def test_recovery_classifies_only_the_spectra_not_yet_recorded(watch, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "processing").mkdir(parents=True)
    data = _table_bytes(3)
    (drop / "processing" / "t.csv").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    led = Ledger(tmp_path / "l.sqlite")
    before = []
    for k in (0, 2):  # committed before the crash
        f = Frame(f"watch://{drop}", f"t.csv#{k}", None, None, content_sha256=sha)
        before.append(Outcome(frame=f, ok=True, class_name="a", class_index=0, confidence=0.9))
    led.commit(before)
    led.close()
    w = watch()
    (f,) = w.wait(1)
    time.sleep(0.3)
    assert [g.ref for g in w.got] == ["t.csv#1"] and w.src.already_recorded == 2
    w.commit(f)
    assert (drop / "done" / "t.csv").exists() and w.led.count() == 3


def _partly_bad_table(n: int, bad: int) -> bytes:
    """A transposed table of ``n`` spectra whose spectrum ``bad`` holds a NaN (a detector glitch, a gap)."""
    lines = _table_bytes(n).decode().splitlines()
    cells = lines[5].split(",")
    cells[1 + bad] = "nan"
    lines[5] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def test_a_partly_bad_file_gives_error_records_for_its_bad_spectra_and_results_for_the_rest(watch) -> None:
    w = watch()
    (w.drop / "t.csv").write_bytes(_partly_bad_table(4, 2))
    rows = ["label," + ",".join(f"{a:.1f}" for a in np.linspace(400, 1800, 50))]
    rows += [f"a,{','.join(['1.5'] * (50 if k != 1 else 20))}" for k in range(3)]  # row #1 cut short
    (w.drop / "map.csv").write_bytes(("\n".join(rows) + "\n").encode())
    got = {f.ref: f for f in w.wait(7)}
    assert sorted(got) == ["map.csv#0", "map.csv#1", "map.csv#2", "t.csv#0", "t.csv#1", "t.csv#2", "t.csv#3"]
    bad = got["t.csv#2"]
    assert bad.error is not None and bad.error[0] == "read" and bad.axis is None and bad.intensities is None
    assert "column 4 ('s2'), line 6: non-finite value 'nan'" in bad.error[1]
    assert bad.metadata == {"spectrum_index": 2, "spectra_in_file": 4}
    assert got["map.csv#1"].error is not None and "line 3 has 21 column(s)" in got["map.csv#1"].error[1]
    good = [got[r] for r in ("t.csv#0", "t.csv#1", "t.csv#3", "map.csv#0", "map.csv#2")]
    assert all(f.error is None and f.intensities is not None for f in good)
    assert got["t.csv#3"].metadata["spectrum_index"] == 3 and got["t.csv#1"].intensities[0] != got["t.csv#3"].intensities[0]
    for f in got.values():
        w.commit(f)
    info = _error_json(w.drop / "quarantine", "t.csv")
    assert info["spectra"] == 4 and [e["k"] for e in info["failed"]] == [2] and "non-finite" in info["failed"][0]["reason"]
    assert (w.drop / "quarantine" / "map.csv").exists() and w.processing_empty()
    rows_db = dict(w.led._reader().execute("SELECT input_ref, status FROM results WHERE input_ref LIKE 't.csv%'"))
    assert rows_db == {"t.csv#0": "ok", "t.csv#1": "ok", "t.csv#2": "error", "t.csv#3": "ok"}


def test_recovery_of_a_partly_bad_file_records_each_spectrum_exactly_once(watch, tmp_path: Path) -> None:
    """A crash after #0 (ok) and #2 (its read error) were committed: the restart submits only #1 and #3."""
    drop = tmp_path / "drop"
    (drop / "processing").mkdir(parents=True)
    data = _partly_bad_table(4, 2)
    (drop / "processing" / "t.csv").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    led = Ledger(tmp_path / "l.sqlite")
    ok = Frame(f"watch://{drop}", "t.csv#0", None, None, content_sha256=sha)
    failed = Frame(f"watch://{drop}", "t.csv#2", None, None, content_sha256=sha)
    led.commit([Outcome(frame=ok, ok=True, class_name="a", class_index=0, confidence=0.9),
                Outcome.failed(failed, "read", "non-finite value")])
    led.close()
    w = watch()
    got = w.wait(2)
    time.sleep(0.3)
    assert sorted(f.ref for f in w.got) == ["t.csv#1", "t.csv#3"] and w.src.already_recorded == 2
    assert all(f.error is None for f in got)
    for f in got:
        w.commit(f)
    assert (drop / "quarantine" / "t.csv").exists() and w.led.count() == 4
    assert [e["k"] for e in _error_json(drop / "quarantine", "t.csv")["failed"]] == [2]


def test_too_many_spectra_in_one_file_is_one_error_record(watch) -> None:
    w = watch(max_spectra_per_file=2)
    (w.drop / "t.csv").write_bytes(_table_bytes(3))
    (f,) = w.wait(1)
    time.sleep(0.2)
    assert len(w.got) == 1 and f.ref == "t.csv"
    assert f.error is not None and "max_spectra_per_file=2" in f.error[1]


# -- the real daemon -----------------------------------------------------------------------------------


def test_the_daemon_records_every_hostile_entry_and_keeps_going(model: Path, tmp_path: Path, serve) -> None:
    """One drop folder holding a name that is not UTF-8 (good and bad content), a link loop, a link out of the
    folder, a sparse 100 GB file, an .npz bomb, a 3-spectrum table and a good file: ``ramanedge serve`` records
    each, moves each on, and exits cleanly."""
    import signal
    import sqlite3

    from spectral_core.synth import instrument_axis as ax

    drop = tmp_path / "drop"
    drop.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET\n")
    axis = ax(1024)
    good = "".join(f"{a:.4f},{100 + 50 * np.sin(a / 40):.2f}\n" for a in axis).encode()
    bdrop = os.fsencode(drop)
    for raw, data in ((b"ok\xff.csv", good), (b"bad\xfe.csv", b"1,2\n3\n")):
        with open(os.path.join(bdrop, raw), "wb") as fh:
            fh.write(data)
    os.symlink("loop.csv", drop / "loop.csv")
    os.symlink(secret, drop / "shadow.csv")
    with open(drop / "huge.csv", "wb") as fh:
        fh.truncate(100 << 30)
    (drop / "bomb.npz").write_bytes(_npz_declaring(10**9))
    (drop / "good.csv").write_bytes(good)
    (drop / "table.csv").write_bytes(_table_bytes(3))
    db = tmp_path / "results.sqlite"
    d = serve(["--model", str(model), "--source", f"watch://{drop}", "--db", str(db), "--http", "off",
               "--provider", "cpu", "--settle", "0.05", "--poll", "0.2"]).wait_ready()
    deadline = time.monotonic() + 60
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        if db.exists():
            con = sqlite3.connect(db, timeout=10)
            try:
                rows = con.execute("SELECT input_ref, status, error FROM results").fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                con.close()
        if len(rows) >= 10 and not os.listdir(drop / "processing"):
            break
        time.sleep(0.05)
    d.signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log
    by = {r[0]: r for r in rows}
    assert sorted(by) == sorted(["ok\\xff.csv", "bad\\xfe.csv", "loop.csv", "shadow.csv", "huge.csv", "bomb.npz",
                                 "good.csv", "table.csv#0", "table.csv#1", "table.csv#2"]), d.log
    assert len(rows) == 10
    for ok in ("ok\\xff.csv", "good.csv", "table.csv#0", "table.csv#1", "table.csv#2"):
        assert by[ok][1] == "ok", by[ok]
    for bad, why in (("bad\\xfe.csv", ""), ("loop.csv", "symlink refused"), ("shadow.csv", "symlink refused"),
                     ("huge.csv", "max_file_bytes"), ("bomb.npz", "refused before reading")):
        assert by[bad][1] == "error" and why in by[bad][2], by[bad]
    assert not any("TOPSECRET" in (r[2] or "") for r in rows)
    assert not os.listdir(drop / "processing")
    assert sorted(os.listdir(bdrop + b"/done")) == sorted([b"ok\xff.csv", b"good.csv", b"table.csv"])
    assert (drop / "quarantine" / "shadow.csv").is_symlink() and secret.read_text() == "TOPSECRET\n"


def test_each_spectrum_of_a_map_keeps_its_own_coordinates(watch) -> None:
    w = watch()
    axis = np.linspace(400.0, 1800.0, 300)
    lines = ["#Acq. time (s)=\t1", "\t\t" + "\t".join(f"{a:g}" for a in axis[::-1])]
    coords = [(-5.0, 0.0), (0.0, 0.0), (-5.0, 2.5)]
    for k, (x, y) in enumerate(coords):
        lines.append(f"{x:g}\t{y:g}\t" + "\t".join(f"{100 + k + np.sin(a / 50):g}" for a in axis[::-1]))
    (w.drop / "map.txt").write_text("\n".join(lines) + "\n")
    got = w.wait(3)
    assert [f.ref for f in got] == ["map.txt#0", "map.txt#1", "map.txt#2"]
    assert [(f.metadata["x"], f.metadata["y"]) for f in got] == coords
