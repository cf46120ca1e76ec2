"""The embedded stream log: Redis Streams semantics in one SQLite file, for one machine.

``sqlite:///relative/streams.db?stream=events&group=g`` (``sqlite:////abs/path.db`` for an absolute path).

Tables (several streams share one file):

* ``genius_stream(stream, id, dedup, data)`` — append-only; ``id`` grows monotonically per stream (taken
  from ``genius_stream_seq``, so trimming never reuses an id); ``UNIQUE(stream, dedup)`` makes an append
  with a known dedup id a no-op (exactly-once output of a replayed window).
* ``genius_stream_group(stream, grp, last_id)`` — each group's read position.
* ``genius_stream_pending(stream, grp, id, consumer, delivered_at, deliveries)`` — delivered, not acked.

Safe across processes: WAL, and every read-modify-write (append, deliver, claim, ack) is one
``BEGIN IMMEDIATE`` transaction, so two consumers never receive the same new record.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from airflow_genius.core.streams.base import (
    Message,
    Record,
    StreamAddress,
    StreamError,
    StreamLog,
    encode_record,
)

BUSY_TIMEOUT_MS = 30_000
#: How often a blocking read polls the file (SQLite has no server to wake us).
POLL_SECONDS = 0.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS genius_stream (
    stream TEXT NOT NULL, id INTEGER NOT NULL, dedup TEXT, data TEXT NOT NULL,
    PRIMARY KEY (stream, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS genius_stream_dedup ON genius_stream (stream, dedup);
CREATE TABLE IF NOT EXISTS genius_stream_seq (stream TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS genius_stream_group (
    stream TEXT NOT NULL, grp TEXT NOT NULL, last_id INTEGER NOT NULL, PRIMARY KEY (stream, grp)
);
CREATE TABLE IF NOT EXISTS genius_stream_pending (
    stream TEXT NOT NULL, grp TEXT NOT NULL, id INTEGER NOT NULL, consumer TEXT NOT NULL,
    delivered_at REAL NOT NULL, deliveries INTEGER NOT NULL, PRIMARY KEY (stream, grp, id)
);
"""


class SqliteStreamLog(StreamLog):
    """A stream in an embedded SQLite file (one machine, many processes)."""

    def __init__(self, address: StreamAddress) -> None:
        super().__init__(address)
        assert address.path is not None  # parse_stream_uri sets it for every sqlite URI
        self.path = address.path
        self.maxlen = address.maxlen or 0
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)  # executescript commits on its own: no BEGIN around it
        except (OSError, sqlite3.Error) as exc:
            # A folder that cannot exist (a parent that is a file, /proc): one line, not a traceback.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, FileExistsError):  # mkdir met a file where the folder should be
                reason = f"{str(self.path.parent)!r} is a file, not a folder"
            raise StreamError(f"cannot open stream log {str(self.path)!r}: {reason}") from None

    # sqlite3 connections must not cross threads or a fork: one per (thread, pid).
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # take the write lock before reading: no lost updates
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def append(
        self, records: Sequence[Record], *, scope: str | None = None, want_ids: bool = True
    ) -> list[str | None]:
        if not records:
            return []
        out: list[str | None] = []
        with self._write() as db:
            row = db.execute(
                "SELECT last_id FROM genius_stream_seq WHERE stream = ?", (self.stream,)
            ).fetchone()
            last = row[0] if row else 0
            for record in records:
                data = encode_record(record.data)
                cursor = db.execute(
                    "INSERT OR IGNORE INTO genius_stream (stream, id, dedup, data) VALUES (?, ?, ?, ?)",
                    (self.stream, last + 1, record.dedup, data),
                )
                if cursor.rowcount:
                    last += 1
                    out.append(str(last))
                else:
                    out.append(None)
            db.execute(
                "INSERT INTO genius_stream_seq (stream, last_id) VALUES (?, ?) "
                "ON CONFLICT (stream) DO UPDATE SET last_id = excluded.last_id",
                (self.stream, last),
            )
            if self.maxlen:
                db.execute(
                    "DELETE FROM genius_stream WHERE stream = ? AND id <= ?",
                    (self.stream, last - self.maxlen),
                )
        return out

    def ensure_group(self, group: str, *, start: str = "0") -> None:
        with self._write() as db:
            if start == "$":
                row = db.execute(
                    "SELECT last_id FROM genius_stream_seq WHERE stream = ?", (self.stream,)
                ).fetchone()
                position = row[0] if row else 0
            else:
                position = int(start)
            db.execute(
                "INSERT OR IGNORE INTO genius_stream_group (stream, grp, last_id) VALUES (?, ?, ?)",
                (self.stream, group, position),
            )

    def _group_position(self, db: sqlite3.Connection, group: str) -> int:
        row = db.execute(
            "SELECT last_id FROM genius_stream_group WHERE stream = ? AND grp = ?", (self.stream, group)
        ).fetchone()
        if row is None:
            raise StreamError(f"NOGROUP: no group {group!r} on stream {self.stream!r}")
        return int(row[0])

    def read_new(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Message]:
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            with self._write() as db:
                position = self._group_position(db, group)
                rows = db.execute(
                    "SELECT id, data FROM genius_stream WHERE stream = ? AND id > ? ORDER BY id LIMIT ?",
                    (self.stream, position, count),
                ).fetchall()
                if rows:
                    now = time.time()
                    db.executemany(
                        "INSERT OR REPLACE INTO genius_stream_pending VALUES (?, ?, ?, ?, ?, 1)",
                        [(self.stream, group, row[0], consumer, now) for row in rows],
                    )
                    db.execute(
                        "UPDATE genius_stream_group SET last_id = ? WHERE stream = ? AND grp = ?",
                        (rows[-1][0], self.stream, group),
                    )
                    return [Message(str(i), json.loads(d)) for i, d in rows]
            if block_ms is None or time.monotonic() >= deadline:
                return []
            time.sleep(POLL_SECONDS)

    def read_pending(self, group: str, consumer: str, count: int) -> list[Message]:
        rows = (
            self._db()
            .execute(
                "SELECT p.id, s.data FROM genius_stream_pending p JOIN genius_stream s "
                "ON s.stream = p.stream AND s.id = p.id "
                "WHERE p.stream = ? AND p.grp = ? AND p.consumer = ? ORDER BY p.id LIMIT ?",
                (self.stream, group, consumer, count),
            )
            .fetchall()
        )
        return [Message(str(i), json.loads(d)) for i, d in rows]

    def ack(self, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._write() as db:
            done = 0
            for message_id in ids:
                done += db.execute(
                    "DELETE FROM genius_stream_pending WHERE stream = ? AND grp = ? AND id = ?",
                    (self.stream, group, int(message_id)),
                ).rowcount
        return done

    def pending_ids(self, group: str) -> list[str]:
        rows = (
            self._db()
            .execute(
                "SELECT id FROM genius_stream_pending WHERE stream = ? AND grp = ? ORDER BY id",
                (self.stream, group),
            )
            .fetchall()
        )
        return [str(row[0]) for row in rows]

    def autoclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        with self._write() as db:
            now = time.time()
            rows = db.execute(
                "SELECT p.id, s.data FROM genius_stream_pending p LEFT JOIN genius_stream s "
                "ON s.stream = p.stream AND s.id = p.id "
                "WHERE p.stream = ? AND p.grp = ? AND p.delivered_at <= ? ORDER BY p.id LIMIT ?",
                (self.stream, group, now - min_idle_ms / 1000, count),
            ).fetchall()
            claimed = []
            for message_id, data in rows:
                if data is None:  # trimmed while pending: like XAUTOCLAIM, drop it from the pending list
                    db.execute(
                        "DELETE FROM genius_stream_pending WHERE stream = ? AND grp = ? AND id = ?",
                        (self.stream, group, message_id),
                    )
                    continue
                db.execute(
                    "UPDATE genius_stream_pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 "
                    "WHERE stream = ? AND grp = ? AND id = ?",
                    (consumer, now, self.stream, group, message_id),
                )
                claimed.append(Message(str(message_id), json.loads(data)))
        return claimed

    def get(self, ids: Sequence[str]) -> list[Message]:
        db = self._db()
        found = []
        for message_id in ids:
            row = db.execute(
                "SELECT data FROM genius_stream WHERE stream = ? AND id = ?", (self.stream, int(message_id))
            ).fetchone()
            if row is None:
                raise self.trimmed(message_id)
            found.append(Message(str(message_id), json.loads(row[0])))
        return found

    def read_all(self) -> list[Message]:
        rows = (
            self._db()
            .execute("SELECT id, data FROM genius_stream WHERE stream = ? ORDER BY id", (self.stream,))
            .fetchall()
        )
        return [Message(str(i), json.loads(d)) for i, d in rows]

    def length(self) -> int:
        return int(
            self._db()
            .execute("SELECT COUNT(*) FROM genius_stream WHERE stream = ?", (self.stream,))
            .fetchone()[0]
        )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
