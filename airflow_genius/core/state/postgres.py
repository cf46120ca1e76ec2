"""Postgres state (psycopg 3): a real table with typed columns and queryable JSONB.

``status``, ``try_number`` and ``version`` are plain columns, timestamps are ``timestamptz`` and the
JSON fields (history, result, error, metrics, window, info) are ``jsonb`` holding the value itself —
not a JSON string inside JSON — so operators can query them::

    SELECT run_id, metrics->>'rows' FROM genius_runs WHERE status = 'FAILED' AND error->>'type' = 'OOM';

Tables are created on open (``CREATE TABLE IF NOT EXISTS`` under an advisory lock, so concurrent
first opens do not trip over each other). One connection in autocommit mode, guarded by a lock: every
primitive is a single statement, so there is nothing to hold a transaction open for.
"""

# SQL here is built from the table prefix, which must match _PREFIX_RE (an identifier); every value
# travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from airflow_genius.core.clock import utcnow
from airflow_genius.core.errors import StateError, missing_extra
from airflow_genius.core.state._common import (
    list_statement,
    record_from_row,
    refuse_password,
    run_statements,
    run_values,
    scrub,
)
from airflow_genius.core.state.base import RunKey, RunRecord, StateManager, Status, TaskScope
from airflow_genius.core.state.faults import FaultBudget
from airflow_genius.core.uris import query_params, redact, split_uri, state_password

DEFAULT_TABLE_PREFIX = "genius"
#: SQLSTATEs of a server that is going away or coming back (class 08: connection exceptions).
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})
_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
#: How the server (or libpq) refuses a login. psycopg gives connection errors no SQLSTATE, so the message
#: is what there is; each of these is final, while refused ports, resets, timeouts and "the database
#: system is starting up" / "too many clients" are outages the fault budget waits out.
_LOGIN_REFUSALS = (
    "authentication failed",  # 28P01 a wrong password; 28000 for ident, peer, cert, SCRAM
    "no password supplied",  # libpq: the server asks for a password and there is none
    "does not exist",  # 3D000 no such database; 28000 no such role
    "is not permitted to log in",  # 28000 a NOLOGIN role
    "no pg_hba.conf entry",  # 28000 the server admits no such user/database/host
    "permission denied for database",  # 42501 no CONNECT privilege
)


def _statements(p: str) -> dict[str, str]:
    """All SQL of a table prefix. ``p`` is validated by ``_PREFIX_RE``: an identifier, never user data."""
    runs, state = f"{p}_runs", f"{p}_task_state"
    return {
        "schema": _schema(runs, state),
        **run_statements(runs, named=lambda column: f"%({column})s", positional="%s"),
        **_task_state_statements(state),
        "drop": f"DROP TABLE IF EXISTS {runs}; DROP TABLE IF EXISTS {state}",
    }


def _schema(runs: str, state: str) -> str:
    """The two tables and the indexes ``list_runs`` filters and orders by."""
    return f"""
        CREATE TABLE IF NOT EXISTS {runs} (
            dag_id       text        NOT NULL,
            task_id      text        NOT NULL,
            run_id       text        NOT NULL,
            map_index    integer     NOT NULL,
            status       text        NOT NULL,
            try_number   integer     NOT NULL,
            history      jsonb       NOT NULL,
            created_at   timestamptz NOT NULL,
            updated_at   timestamptz NOT NULL,
            heartbeat_at timestamptz,
            result       jsonb,
            error        jsonb,
            metrics      jsonb       NOT NULL,
            "window"     jsonb,
            info         jsonb       NOT NULL,
            version      integer     NOT NULL,
            PRIMARY KEY (dag_id, task_id, run_id, map_index)
        );
        CREATE INDEX IF NOT EXISTS {runs}_dag_task_updated ON {runs} (dag_id, task_id, updated_at DESC);
        CREATE INDEX IF NOT EXISTS {runs}_status_updated ON {runs} (status, updated_at DESC);
        CREATE INDEX IF NOT EXISTS {runs}_updated ON {runs} (updated_at DESC);
        CREATE TABLE IF NOT EXISTS {state} (
            namespace  text        NOT NULL,
            dag_id     text        NOT NULL,
            task_id    text        NOT NULL,
            key        text        NOT NULL,
            value      jsonb       NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (namespace, dag_id, task_id, key)
        )
    """


def _task_state_statements(state: str) -> dict[str, str]:
    """SQL of the task-state primitives; parameters: the scope's parts, the key, then values."""
    scope = "namespace = %s AND dag_id = %s AND task_id = %s"
    upsert = (
        f"INSERT INTO {state} AS t (namespace, dag_id, task_id, key, value, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, dag_id, task_id, key) "
        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    )
    return {
        "state_get": f"SELECT value FROM {state} WHERE {scope} AND key = %s",
        "state_set": upsert,
        "state_delete": f"DELETE FROM {state} WHERE {scope} AND key = %s",
        "state_list": f"SELECT key, value FROM {state} WHERE {scope} ORDER BY key",
        # expected None means "absent or JSON null": insert, or overwrite only a stored null.
        "state_cas_absent": f"{upsert} WHERE t.value = 'null'::jsonb",
        # jsonb equality compares values (key order and 1 vs 1.0 do not matter), like Python's ==.
        "state_cas": (
            f"UPDATE {state} SET value = %s, updated_at = %s WHERE {scope} AND key = %s AND value = %s"
        ),
    }


class PostgresStateManager(StateManager):
    """State in two Postgres tables, ``<prefix>_runs`` and ``<prefix>_task_state``.

    >>> state = PostgresStateManager.from_uri(  # doctest: +SKIP
    ...     "postgresql://genius@db:5432/airflow?table_prefix=genius", env={"GENIUS_STATE_PASSWORD": "..."}
    ... )
    >>> state.list_runs(dag_id="etl", status=Status.FAILED)  # doctest: +SKIP

    URI: ``postgresql://user@host:port/db`` with optional ``?table_prefix=NAME`` (default ``genius``);
    other query parameters are libpq options (``sslmode=require``...). The password comes from
    ``GENIUS_STATE_PASSWORD``, never from the URI.
    """

    def __init__(
        self, conninfo: str, *, table_prefix: str = DEFAULT_TABLE_PREFIX, password: str | None = None,
        uri: str | None = None, budget: FaultBudget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(budget=budget)
        try:
            import psycopg
            from psycopg.types.json import Jsonb
        except ImportError:
            raise missing_extra("psycopg", "postgres") from None
        if not _PREFIX_RE.match(table_prefix):
            raise StateError(
                f"postgres table_prefix {table_prefix!r} must be a plain identifier "
                "(letters, digits, underscore; at most 40 characters)"
            )
        self._psycopg = psycopg
        self._jsonb = Jsonb
        self._conninfo = conninfo
        self._password = password
        self._uri = uri or conninfo
        self.table_prefix = table_prefix
        self._sql = _statements(table_prefix)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._watchdog = _SocketWatchdog()
        try:
            self._call("open", self._create_schema)
        except psycopg.Error as exc:  # not a fault (a refused login is a StateError already): no permission
            message = f"cannot open postgres state store {redact(self._uri)!r}: {' '.join(str(exc).split())}"
            raise StateError(scrub(message, self._password)) from None

    def _create_schema(self) -> None:
        with self._cursor() as conn, conn.transaction():
            # Serialise concurrent first opens: CREATE TABLE IF NOT EXISTS is not race-free.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"genius-schema:{self.table_prefix}",)
            )
            conn.execute(self._sql["schema"])

    @classmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> PostgresStateManager:
        refuse_password(uri)
        parts = split_uri(uri)
        prefix = query_params(uri).get("table_prefix", DEFAULT_TABLE_PREFIX)
        # libpq rejects parameters it does not know: table_prefix is ours.
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "table_prefix"]
        conninfo = parts._replace(scheme="postgresql", query=urlencode(kept)).geturl()
        return cls(
            conninfo,
            table_prefix=prefix,
            password=state_password(env),
            uri=uri,
            budget=FaultBudget.from_env(env),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self._uri)!r}, table_prefix={self.table_prefix!r})"

    # ---------------------------------------------------------------- connection
    def _connect(self) -> Any:
        return self._psycopg.connect(
            self._conninfo,
            password=self._password,
            autocommit=True,
            # timestamptz comes back in UTC, like every other backend returns it.
            options="-c TimeZone=UTC",
            connect_timeout=max(2, round(self.budget.call_timeout)),
        )

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """The connection, under the lock; reconnects after a fork or a dropped connection.

        Each use is bounded by ``budget.call_timeout``: a server that stops answering (frozen, a dead
        network path) has its socket shut by the watchdog, so the call fails instead of hanging.
        """
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken or self._pid != os.getpid():
                self._conn = conn = self._connect()
                self._pid = os.getpid()
            with self._watchdog.bounded(conn.pgconn.socket, self.budget.call_timeout):
                yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
        self._watchdog.stop()

    # ---------------------------------------------------------------- faults
    def store_label(self) -> str:
        return repr(redact(self._uri))

    def _is_transient(self, exc: BaseException) -> bool:
        psycopg = self._psycopg
        if isinstance(exc, psycopg.InterfaceError):
            return True
        if not isinstance(exc, psycopg.OperationalError):
            return False
        state = getattr(exc, "sqlstate", None)
        if state is None:  # no answer from a server (refused, reset, closed, timed out), or a login refused
            return not _login_refused(exc)
        return state.startswith("08") or state in _TRANSIENT_STATES

    def _refusal(self, exc: BaseException) -> str | None:
        if not isinstance(exc, self._psycopg.OperationalError) or not _login_refused(exc):
            return None
        reason = " ".join(str(exc).split())
        hint = "check the user and database in the URI and GENIUS_STATE_PASSWORD"
        return scrub(f"the server refused the login: {reason} ({hint})", self._password)

    def _is_timeout(self, exc: BaseException) -> bool:
        return self._watchdog.fired or "timeout expired" in str(exc)

    def _reset_connection(self) -> None:
        with self._lock:
            if self._conn is not None and (self._conn.broken or self._watchdog.fired):
                with suppress(Exception):  # already broken; a new connection is made at the next use
                    self._conn.close()
                self._conn = None
            self._watchdog.fired = False

    def drop_tables(self) -> None:
        """Drop this prefix's tables (tests, tear-down). Irreversible."""
        with self._cursor() as conn:
            conn.execute(self._sql["drop"])

    # ---------------------------------------------------------------- run records
    def _read(self, key: RunKey) -> RunRecord | None:
        with self._cursor() as conn:
            row = conn.execute(self._sql["read"], key.parts()).fetchone()
        return _from_row(row) if row is not None else None

    def _insert(self, record: RunRecord) -> bool:
        with self._cursor() as conn:
            return bool(conn.execute(self._sql["insert"], self._values(record)).rowcount == 1)

    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        # The key and created_at never change: the UPDATE names everything else, guarded by the version.
        values = {**self._values(record), "expected_version": expected_version}
        with self._cursor() as conn:
            return bool(conn.execute(self._sql["replace"], values).rowcount == 1)

    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        sql, params = list_statement(
            self._sql["select"], "%s", dag_id=dag_id, task_id=task_id, status=status, limit=limit
        )
        with self._cursor() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_from_row(row) for row in rows]

    def _delete(self, key: RunKey) -> bool:
        with self._cursor() as conn:
            return bool(conn.execute(self._sql["delete"], key.parts()).rowcount == 1)

    # ---------------------------------------------------------------- task state
    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]:
        with self._cursor() as conn:
            row = conn.execute(self._sql["state_get"], (*scope.parts(), key)).fetchone()
        return (False, None) if row is None else (True, row[0])

    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None:
        values = (*scope.parts(), key, self._jsonb(value), utcnow())
        with self._cursor() as conn:
            conn.execute(self._sql["state_set"], values)

    def _state_delete(self, scope: TaskScope, key: str) -> bool:
        with self._cursor() as conn:
            return bool(conn.execute(self._sql["state_delete"], (*scope.parts(), key)).rowcount == 1)

    def _state_list(self, scope: TaskScope) -> dict[str, Any]:
        with self._cursor() as conn:
            rows = conn.execute(self._sql["state_list"], scope.parts()).fetchall()
        return dict(rows)

    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        now = utcnow()
        values: tuple[Any, ...]
        if expected is None:
            sql, values = self._sql["state_cas_absent"], (*scope.parts(), key, self._jsonb(value), now)
        else:
            sql = self._sql["state_cas"]
            values = (self._jsonb(value), now, *scope.parts(), key, self._jsonb(expected))
        with self._cursor() as conn:
            return bool(conn.execute(sql, values).rowcount == 1)

    # ---------------------------------------------------------------- codec
    def _values(self, record: RunRecord) -> dict[str, Any]:
        # JSON columns hold real JSONB (queryable), not JSON text; timestamptz takes the datetime as is.
        return run_values(record, json=self._jsonb, time=_same)


def _login_refused(exc: BaseException) -> bool:
    """Whether a failed connect is the server saying no to the login (final) rather than no answer."""
    if getattr(exc, "sqlstate", None) is not None:  # an answer to a statement: the login went through
        return False
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is not None and getattr(pgconn, "needs_password", False):
        return True
    text = str(exc)
    return any(marker in text for marker in _LOGIN_REFUSALS)


def _same(value: Any) -> Any:
    return value


def _utc(moment: Any) -> Any:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _from_row(row: tuple[Any, ...]) -> RunRecord:
    # psycopg hands JSONB back decoded; timestamptz comes in the session's zone (UTC), made explicit.
    return record_from_row(row, json=_same, time=_utc)


class _SocketWatchdog:
    """Bounds a blocking libpq call: shuts the socket down when the call outlives its deadline.

    One daemon thread per state manager, started at the first call; setting a deadline costs a few
    attribute writes, so the common path stays as fast as an unbounded call.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._deadline: float | None = None
        self._fd = -1
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: Whether the last bounded call was cut short (the caller's error is then a timeout).
        self.fired = False

    @contextmanager
    def bounded(self, fd: int, seconds: float) -> Iterator[None]:
        if self._thread is None or not self._thread.is_alive():
            self._stopped.clear()
            self._thread = threading.Thread(target=self._watch, name="genius-postgres-watchdog", daemon=True)
            self._thread.start()
        with self._guard:
            self._deadline, self._fd = time.monotonic() + seconds, fd
        try:
            yield
        finally:
            with self._guard:
                self._deadline, self._fd = None, -1

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(0.25):
            with self._guard:
                if self._deadline is None or time.monotonic() < self._deadline or self._fd < 0:
                    continue
                try:
                    # shutdown() wakes the blocked read in the other thread; closing is left to psycopg.
                    with socket.socket(fileno=os.dup(self._fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.fired = True
                self._deadline = None
