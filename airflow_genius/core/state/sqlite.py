"""SQLite state: the embedded default, one file on one machine, safe across processes and threads.

Concurrency model:

* WAL journal, so readers never block the writer and vice versa.
* Every write runs in a ``BEGIN IMMEDIATE`` transaction: the write lock is taken *before* reading, which
  is what lets ``busy_timeout`` queue writers instead of failing them with ``SQLITE_BUSY_SNAPSHOT``.
* One connection per thread (``sqlite3`` connections must not be shared), reopened after ``fork``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_genius.core.clock import parse_time, utcnow
from airflow_genius.core.errors import StateError
from airflow_genius.core.state._common import (
    dumps,
    list_statement,
    loads,
    record_from_row,
    refuse_password,
    run_statements,
    run_values,
    sortable_time,
)
from airflow_genius.core.state.base import RunKey, RunRecord, StateManager, Status, TaskScope
from airflow_genius.core.uris import split_uri

#: How long a writer waits for another process's transaction before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS genius_runs (
    dag_id       TEXT    NOT NULL,
    task_id      TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    map_index    INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    try_number   INTEGER NOT NULL,
    history      TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    heartbeat_at TEXT,
    result       TEXT,
    error        TEXT,
    metrics      TEXT    NOT NULL,
    "window"     TEXT,
    info         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (dag_id, task_id, run_id, map_index)
);
CREATE INDEX IF NOT EXISTS genius_runs_dag_task_updated ON genius_runs (dag_id, task_id, updated_at);
CREATE INDEX IF NOT EXISTS genius_runs_status_updated ON genius_runs (status, updated_at);
CREATE INDEX IF NOT EXISTS genius_runs_updated ON genius_runs (updated_at);
CREATE TABLE IF NOT EXISTS genius_task_state (
    namespace  TEXT NOT NULL,
    dag_id     TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, dag_id, task_id, key)
);
"""

# Statements are built from constant names only (the table and the columns in ``_common``): never from
# user input, which always travels as bound parameters.
_RUNS = run_statements("genius_runs", named=lambda column: f":{column}", positional="?")
_STATE_GET = (
    "SELECT value FROM genius_task_state WHERE namespace = ? AND dag_id = ? AND task_id = ? AND key = ?"
)
_STATE_DELETE = "DELETE FROM genius_task_state WHERE namespace = ? AND dag_id = ? AND task_id = ? AND key = ?"
_STATE_LIST = (
    "SELECT key, value FROM genius_task_state WHERE namespace = ? AND dag_id = ? AND task_id = ? ORDER BY key"
)
_STATE_UPSERT = (
    "INSERT INTO genius_task_state (namespace, dag_id, task_id, key, value, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, dag_id, task_id, key) "
    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


class _Holder:
    """A thread's connection; a plain object so a WeakSet can track it (connections refuse weakrefs)."""

    __slots__ = ("__weakref__", "conn", "generation", "pid")

    def __init__(self, conn: sqlite3.Connection, generation: int, pid: int) -> None:
        self.conn = conn
        self.generation = generation
        self.pid = pid


class SqliteStateManager(StateManager):
    """State in one SQLite file (the embedded default).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "state", "genius.db")
    >>> state = SqliteStateManager(path)
    >>> state.set_state(TaskScope("default", "etl", "spout"), "cursor", {"offset": 10})
    >>> SqliteStateManager(path).get_state(TaskScope("default", "etl", "spout"), "cursor")
    {'offset': 10}

    URIs: ``sqlite:///relative/path.db`` (relative to the working directory) or
    ``sqlite:////absolute/path.db``. Parent folders are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        if str(self.path) in ("", ":memory:"):
            # Each thread has its own connection, so an in-memory database would not be shared.
            raise StateError("the sqlite state backend needs a file path; use memory:// for in-process state")
        self._local = threading.local()
        self._holders: weakref.WeakSet[_Holder] = weakref.WeakSet()
        self._holders_lock = threading.Lock()
        self._generation = 0
        # Create the schema once, up front, so a bad path fails at open rather than at first use.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            with self._write(conn):
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            # A folder that cannot exist (under /proc, below a file) or an unreadable file: one line.
            self.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, FileExistsError):  # mkdir met a file where the folder should be
                reason = f"{str(self.path.parent)!r} is a file, not a folder"
            raise StateError(f"cannot open the sqlite state store {str(self.path)!r}: {reason}") from None

    @classmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> SqliteStateManager:
        refuse_password(uri)
        parts = split_uri(uri)
        if parts.netloc:
            raise StateError(
                f"sqlite URI {uri!r} names a host; use sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        # Like SQLAlchemy: the path is what follows "sqlite:///", so a fourth slash makes it absolute.
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise StateError(f"sqlite URI {uri!r} has no file path, e.g. sqlite:///.genius/state.db")
        return cls(os.path.expanduser(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # ---------------------------------------------------------------- connections
    def _conn(self) -> sqlite3.Connection:
        holder: _Holder | None = getattr(self._local, "holder", None)
        pid = os.getpid()
        if holder is not None and holder.generation == self._generation and holder.pid == pid:
            return holder.conn
        # isolation_level=None: autocommit, so transactions are exactly the BEGIN IMMEDIATE we issue.
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,  # only close() touches it from another thread
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _enable_wal(conn)
        if mode != "wal":
            conn.close()
            raise StateError(f"cannot put {self.path} in WAL mode (got {mode}); a network filesystem?")
        # NORMAL is durable against process crashes in WAL mode; FULL would fsync every commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        holder = _Holder(conn, self._generation, pid)
        self._local.holder = holder
        with self._holders_lock:
            self._holders.add(holder)
        return conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # never leave this thread's connection inside a transaction
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._holders_lock:
            holders = list(self._holders)
            self._holders.clear()
            # Threads still holding an old connection open a new one on their next call.
            self._generation += 1
        for holder in holders:
            if holder.pid == os.getpid():
                holder.conn.close()

    # ---------------------------------------------------------------- run records
    def _read(self, key: RunKey) -> RunRecord | None:
        row = self._conn().execute(_RUNS["read"], key.parts()).fetchone()
        return _from_row(row) if row is not None else None

    def _insert(self, record: RunRecord) -> bool:
        values = _values(record)
        with self._write() as conn:
            return conn.execute(_RUNS["insert"], values).rowcount == 1

    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        # The key and created_at never change: the UPDATE names everything else, guarded by the version.
        values = {**_values(record), "expected_version": expected_version}
        with self._write() as conn:
            return conn.execute(_RUNS["replace"], values).rowcount == 1

    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        sql, params = list_statement(
            _RUNS["select"], "?", dag_id=dag_id, task_id=task_id, status=status, limit=limit
        )
        return [_from_row(row) for row in self._conn().execute(sql, params)]

    def _delete(self, key: RunKey) -> bool:
        with self._write() as conn:
            return conn.execute(_RUNS["delete"], key.parts()).rowcount == 1

    # ---------------------------------------------------------------- task state
    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]:
        row = self._conn().execute(_STATE_GET, (*scope.parts(), key)).fetchone()
        return (False, None) if row is None else (True, loads(row[0]))

    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None:
        raw = dumps(value)
        with self._write() as conn:
            _upsert_state(conn, scope, key, raw)

    def _state_delete(self, scope: TaskScope, key: str) -> bool:
        with self._write() as conn:
            return conn.execute(_STATE_DELETE, (*scope.parts(), key)).rowcount == 1

    def _state_list(self, scope: TaskScope) -> dict[str, Any]:
        rows = self._conn().execute(_STATE_LIST, scope.parts())
        return {key: loads(value) for key, value in rows}

    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        raw = dumps(value)
        # The immediate transaction holds the write lock across read-compare-write: no one slips in.
        with self._write() as conn:
            row = conn.execute(_STATE_GET, (*scope.parts(), key)).fetchone()
            current = None if row is None else loads(row[0])
            if current != expected:
                return False
            _upsert_state(conn, scope, key, raw)
            return True


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL (persistent in the file) and return the journal mode now in force.

    Switching needs an exclusive lock and SQLite answers "database is locked" at once, without its
    busy handler, when processes open a brand-new file together: retry until the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not a secret


def _upsert_state(conn: sqlite3.Connection, scope: TaskScope, key: str, raw: str) -> None:
    conn.execute(_STATE_UPSERT, (*scope.parts(), key, raw, sortable_time(utcnow())))


def _values(record: RunRecord) -> dict[str, Any]:
    return run_values(record, json=dumps, time=sortable_time)


def _from_row(row: tuple[Any, ...]) -> RunRecord:
    return record_from_row(row, json=loads, time=parse_time)
