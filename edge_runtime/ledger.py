"""The ledger: every result and every error, committed to an embedded SQLite database in WAL mode.

It is both the default result store and what makes file-drop processing exactly-once: a file is keyed by
(source, input reference, SHA-256 of its bytes), and a unique index on that key means a drop can never be
recorded twice, even if a crash happens between the commit and the file's move to ``done/``.

One writer (the daemon's worker thread) commits each micro-batch in one transaction; readers (HTTP
threads, the watch-folder source) use their own connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from edge_runtime.errors import LedgerError
from edge_runtime.records import RECORD_KEYS, Committed, LedgerEntry, ModelIdentity, Outcome, Record, bounded_text

__all__ = ["SCHEMA_VERSION", "Ledger", "explain", "record_dict"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: columns added since schema 1, with their types: a version-1 ledger gets them (NULL in its old records) on open
_ADDED = {
    2: (("open_set_threshold", "REAL"), ("drift", "INTEGER"), ("drift_t2", "REAL"), ("drift_q", "REAL"),
        ("drift_t2_limit", "REAL"), ("drift_q_limit", "REAL")),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    source              TEXT NOT NULL,
    input_ref           TEXT NOT NULL,
    content_sha256      TEXT,
    status              TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    class               TEXT,
    class_index         INTEGER,
    confidence          REAL,
    probabilities       TEXT,
    unknown             INTEGER,
    open_set_distance   REAL,
    error_kind          TEXT,
    error               TEXT,
    acquired_at         REAL,
    received_at         REAL NOT NULL,
    completed_at        REAL NOT NULL,
    read_ms             REAL,
    preprocess_ms       REAL,
    inference_ms        REAL,
    queue_ms            REAL,
    total_ms            REAL,
    batch_size          INTEGER,
    model_sha256        TEXT NOT NULL,
    preprocess_hash     TEXT NOT NULL,
    provider            TEXT NOT NULL,
    device_serial       TEXT,
    integration_time_us INTEGER,
    seq                 INTEGER,
    saturated           INTEGER,
    metadata            TEXT,
    open_set_threshold  REAL,
    drift               INTEGER,
    drift_t2            REAL,
    drift_q             REAL,
    drift_t2_limit      REAL,
    drift_q_limit       REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS results_drop_key
    ON results (source, input_ref, content_sha256) WHERE content_sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY REFERENCES results (id));
"""

#: the columns written, in the order of the table (and of a record's keys): a record's keys after its id
_COLUMNS = RECORD_KEYS[1:]
_INSERT = (
    f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_LOOKUP = ("SELECT id, status, error_kind, error FROM results "
           "WHERE source = ? AND input_ref = ? AND content_sha256 = ?")
# Metadata keys that have their own column (or are timing internals) are not repeated in ``metadata``.
_OWN_KEYS = frozenset(
    {"device_serial", "integration_time_us", "seq", "saturated", "t_monotonic", "t_wall", "source"}
)


_BOOL_KEYS = ("unknown", "saturated", "drift")
#: what records name as their model before :meth:`Ledger.serve` was called (tools and tests)
_NO_MODEL = ModelIdentity("", "", "")


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1e3, 4)


def _int_or_none(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


class Ledger:
    """The SQLite result store.

    Args:
        path: database file (created with its parent folder when missing).
        serving: the model named in every record (:meth:`serve` changes it); None: records name none.
        synchronous: ``normal`` (durable across process crashes, the WAL default) or ``full`` (also across
            power loss, one fsync per commit).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        serving: ModelIdentity | None = None,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._serving = _NO_MODEL if serving is None else serving
        self._sync = "FULL" if synchronous == "full" else "NORMAL"
        #: when set (the MQTT sink), every new record's id is also queued in ``outbox``, in the same
        #: transaction, until the broker acknowledged it: a result is never committed without being owed.
        self.outbox = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        with self._writer:
            self._writer.executescript(_SCHEMA)
            row = self._writer.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._writer.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) < SCHEMA_VERSION:
                self._migrate(int(row[0]))
            elif int(row[0]) != SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: ledger schema version {row[0]} was written by a newer ramanedge (this one "
                    f"reads versions up to {SCHEMA_VERSION}); upgrade ramanedge or use another --db"
                )
        self._closed = False
        # Checkpoints (copying the WAL back into the database, with an fsync) run in their own thread and
        # connection, so a commit on the hot path never pays for one.
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._ckpt_stop = threading.Event()
        self._ckpt = threading.Thread(target=self._checkpointer, name="ledger-checkpoint", daemon=True)
        self._ckpt.start()

    def _migrate(self, version: int) -> None:
        """Bring an older ledger to :data:`SCHEMA_VERSION` by adding columns: its records stay as they were,
        the new columns NULL in them. Idempotent: a crash between two steps is finished at the next open."""
        have = {str(r[1]) for r in self._writer.execute("PRAGMA table_info(results)")}
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for name, kind in _ADDED.get(v, ()):
                if name not in have:
                    self._writer.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
        self._writer.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        logger.info("%s: ledger schema %d migrated to %d (columns added)", self.path, version, SCHEMA_VERSION)

    def _checkpointer(self, interval_s: float = 1.0) -> None:
        con = self._connect()
        try:
            while not self._ckpt_stop.wait(interval_s):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    logger.debug("ledger checkpoint: %s", exc)
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._sync}")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.row_factory = sqlite3.Row
            self._local.con = con
        return con

    @property
    def serving(self) -> ModelIdentity:
        """The model the next records name."""
        return self._serving

    def serve(self, model: ModelIdentity) -> None:
        """Name ``model`` in every record committed from now on (a model swap, between two batches).

        One reference replaced at once: a batch being committed names either model whole, never a mix.
        """
        self._serving = model

    @staticmethod
    def _row(o: Outcome, model: ModelIdentity, now_wall: float, now_mono: float) -> tuple[Any, ...]:
        f = o.frame
        m = f.metadata
        total = max(0.0, now_mono - f.t_received)
        work = f.read_s + o.preprocess_s + o.inference_s
        extra = {k: v for k, v in m.items() if k not in _OWN_KEYS}
        return (
            f.source,
            f.ref,
            f.content_sha256,
            "ok" if o.ok else "error",
            o.class_name,
            o.class_index,
            o.confidence,
            None if o.probabilities is None else json.dumps([round(p, 7) for p in o.probabilities]),
            None if o.unknown is None else int(o.unknown),
            o.open_set_distance,
            o.error_kind,
            None if o.error is None else bounded_text(o.error),
            f.acquired_at,
            now_wall - total,
            now_wall,
            _ms(f.read_s),
            _ms(o.preprocess_s),
            _ms(o.inference_s),
            _ms(max(0.0, total - work)),
            _ms(total),
            o.batch_size or None,
            model.model_sha256,
            model.preprocess_hash,
            model.provider,
            None if m.get("device_serial") is None else str(m.get("device_serial")),
            _int_or_none(m.get("integration_time_us")),
            _int_or_none(m.get("seq")),
            None if m.get("saturated") is None else int(bool(m.get("saturated"))),
            json.dumps(extra, default=str) if extra else None,
            o.open_set_threshold,
            None if o.drift is None else int(o.drift),
            o.drift_t2,
            o.drift_q,
            o.drift_t2_limit,
            o.drift_q_limit,
        )

    def commit(self, outcomes: Sequence[Outcome]) -> list[Committed]:
        """Record a batch in one transaction. The outcomes are not changed.

        Returns:
            one :class:`Committed` per outcome, in order: its new record (as /results and the sinks show it),
            or for a drop already recorded, no record and what the ledger holds from the first time.
        """
        if not outcomes:
            return []
        now_wall, now_mono = time.time(), time.monotonic()
        model = self._serving
        rows = [self._row(o, model, now_wall, now_mono) for o in outcomes]
        # per outcome: (new record id, None) or (id of the record already there or None, what that one says)
        ids: list[tuple[int | None, LedgerEntry | None]] = []
        with self._lock:
            con = self._writer
            con.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    # The unique key (source, name, SHA-256) of a dropped file may already hold a record (a
                    # re-drop of the same bytes, or a crash between commit and move): the first one stays. It is
                    # looked up before inserting because a refused insert would still use up an id, and a gap
                    # in the ids would look like a lost record.
                    prev = None if row[2] is None else con.execute(_LOOKUP, (row[0], row[1], row[2])).fetchone()
                    got = None if prev is not None else con.execute(_INSERT, row).fetchone()
                    if got is None:
                        if prev is None:  # lost a race with the unique index: same outcome
                            prev = con.execute(_LOOKUP, (row[0], row[1], row[2])).fetchone()
                        entry = None if prev is None else LedgerEntry(int(prev[0]), str(prev[1]), prev[2], prev[3])
                        ids.append((None if entry is None else entry.id, entry))
                    else:
                        ids.append((int(got[0]), None))
                        if self.outbox:
                            con.execute("INSERT INTO outbox (id) VALUES (?)", (int(got[0]),))
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        done = []
        for o, row, (rid, entry) in zip(outcomes, rows, ids, strict=True):
            if entry is not None or rid is None:  # a duplicate: no new record
                done.append(Committed(o, rid, now_wall, None, entry))
            else:
                done.append(Committed(o, rid, now_wall, _as_record(rid, row, o.probabilities, o.frame.metadata)))
        return done

    def lookup(self, source: str, ref: str, content_sha256: str) -> LedgerEntry | None:
        """The record of a dropped file, if it was already committed."""
        row = self._reader().execute(_LOOKUP, (source, ref, content_sha256)).fetchone()
        if row is None:
            return None
        return LedgerEntry(int(row[0]), str(row[1]), row[2], row[3])

    def since(self, since_id: int = 0, limit: int = 1000) -> list[Record]:
        """Records with ``id > since_id``, oldest first, at most ``limit``."""
        rows = self._reader().execute(
            "SELECT * FROM results WHERE id > ? ORDER BY id LIMIT ?", (int(since_id), int(limit))
        ).fetchall()
        return [record_dict(r) for r in rows]

    def outbox_after(self, after_id: int, limit: int) -> list[Record]:
        """Records still owed to the broker with ``id > after_id``, oldest first."""
        rows = self._reader().execute(
            "SELECT r.* FROM outbox o JOIN results r ON r.id = o.id WHERE o.id > ? ORDER BY o.id LIMIT ?",
            (int(after_id), int(limit)),
        ).fetchall()
        return [record_dict(r) for r in rows]

    def outbox_count(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def mark_published(self, ids: Sequence[int]) -> None:
        """The broker acknowledged these records: they leave the outbox (one short transaction)."""
        if not ids:
            return
        with self._lock:
            if self._closed:
                return
            con = self._writer
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("DELETE FROM outbox WHERE id = ?", [(int(i),) for i in ids])
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def count(self) -> int:
        row = self._reader().execute("SELECT COUNT(*) FROM results").fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ckpt_stop.set()
        self._ckpt.join(10)
        with self._lock:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                logger.warning("final ledger checkpoint: %s", exc)
            self._writer.close()
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()


def _rollback(con: sqlite3.Connection) -> None:
    """Roll back after a failed statement without hiding why it failed.

    SQLite ends the transaction itself on some errors (SQLITE_FULL on a full disk, SQLITE_IOERR): a ROLLBACK
    then raises "cannot rollback - no transaction is active", which replaced the real error in the log.
    The caller re-raises the original error; a failure of the rollback itself is only logged.
    """
    if not con.in_transaction:
        return
    try:
        con.execute("ROLLBACK")
    except sqlite3.Error as exc:
        logger.error("ledger rollback after a failed transaction: %s", exc)


def _as_record(
    record_id: int, row: tuple[Any, ...], probabilities: list[float] | None, metadata: dict[str, Any]
) -> Record:
    d: dict[str, Any] = {"id": record_id, **dict(zip(_COLUMNS, row, strict=True))}
    if probabilities is not None:
        d["probabilities"] = [round(p, 7) for p in probabilities]
    if d["metadata"] is not None:
        d["metadata"] = {k: v for k, v in metadata.items() if k not in _OWN_KEYS}
    for key in _BOOL_KEYS:
        if d[key] is not None:
            d[key] = bool(d[key])
    return cast("Record", d)


def record_dict(row: sqlite3.Row) -> Record:
    """A ledger row as the JSON record used by /results and the JSON-lines sink."""
    return cast("Record", _decode(dict(row)))


def _decode(d: dict[str, Any]) -> dict[str, Any]:
    for key in ("probabilities", "metadata"):
        if d.get(key) is not None:
            d[key] = json.loads(d[key])
    for key in _BOOL_KEYS:
        if d.get(key) is not None:
            d[key] = bool(d[key])
    return d


def _vs(value: float, limit: float | None, fmt: str, name: str = "") -> str:
    """``0.412 > threshold 0.300``: a statistic against its limit (the statistic alone without a limit)."""
    if limit is None:
        return f"{value:{fmt}}"
    return f"{value:{fmt}} {'>' if value > limit else '<='} {name}{limit:{fmt}}"


def explain(record: Mapping[str, Any]) -> dict[str, str | None]:
    """The unknown and drift decisions of a record in words, each statistic against its threshold.

    ``{"unknown": "unknown: distance 0.412 > threshold 0.300", "drift": "drift: T^2 12.3 > 9.5, Q 0.031 <= 0.05"}``;
    "not available" when the model served had no open-set or drift model; None for an error record.
    """
    if record.get("status") != "ok":
        return {"unknown": None, "drift": None}
    d = record.get("open_set_distance")
    if d is None:
        unknown = "unknown: not available (the model has no open-set data)"
    else:
        thr = record.get("open_set_threshold")
        word = "unknown" if record.get("unknown") else "known"
        unknown = f"{word}: distance {_vs(float(d), None if thr is None else float(thr), '.3f', 'threshold ')}"
    t2, q = record.get("drift_t2"), record.get("drift_q")
    if record.get("drift") is None or t2 is None or q is None:
        drift = "drift: not available (the model carries no drift model)"
    else:
        t2l, ql = record.get("drift_t2_limit"), record.get("drift_q_limit")
        word = "drift" if record.get("drift") else "no drift"
        drift = (f"{word}: T^2 {_vs(float(t2), None if t2l is None else float(t2l), '.3g')}, "
                 f"Q {_vs(float(q), None if ql is None else float(ql), '.3g')}")
    return {"unknown": unknown, "drift": drift}
