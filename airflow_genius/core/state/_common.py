"""Helpers shared by the persistent state backends (SQLite, Redis, Postgres, DynamoDB).

Nothing here has meaning of its own: transition rules live in :mod:`.base`. These are the codecs and
key builders every backend needs, kept in one place so they encode a record the same way.
"""

# SQL here is built from constant column names and a table name that is a constant or a validated
# identifier; every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_genius.core.errors import StateError
from airflow_genius.core.state.base import RunKey, RunRecord, Status, Transition
from airflow_genius.core.uris import has_password, redact

# Compact separators: values are stored, not read by people, and smaller payloads mean fewer bytes on
# the wire. ensure_ascii stays on so lone surrogates in user strings never break a UTF-8 encoder.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


def dumps(value: Any) -> str:
    """JSON text of ``value`` (raises ``TypeError`` for what JSON cannot hold, like every backend)."""
    return _ENCODER.encode(value)


def loads(raw: str | bytes) -> Any:
    """Inverse of :func:`dumps`; accepts the bytes that Redis or boto3 hand back."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8")
    return _DECODER.decode(raw)


def sortable_time(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so that ordering the text orders the instants (SQLite, DynamoDB)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def escape(part: str, separator: str) -> str:
    """Escape ``part`` so that joining escaped parts with ``separator`` is unambiguous.

    ``%`` is escaped first, so a literal ``%3A`` in a run_id can never be mistaken for an escaped ``:``.

    >>> escape("scheduled__2024-01-01T00:00:00+00:00", ":")
    'scheduled__2024-01-01T00%3A00%3A00+00%3A00'
    """
    encoded = f"%{ord(separator):02X}"
    return part.replace("%", "%25").replace(separator, encoded)


_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def unescape(text: str) -> str:
    """Inverse of :func:`escape` (for any separator).

    >>> unescape(escape("a%3A#b", "#"))
    'a%3A#b'
    """
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), text)


def record_to_json(record: RunRecord) -> str:
    """The whole record as one JSON document (Redis, DynamoDB)."""
    return dumps(record.to_dict())


def record_from_json(raw: str | bytes, version: int) -> RunRecord:
    """Decode :func:`record_to_json`; the stored ``version`` (kept beside the document) wins."""
    data = loads(raw)
    data["version"] = version
    return RunRecord.from_dict(data)


class RunRow(NamedTuple):
    """A run record's row by column name, key first: SQLite and Postgres share the layout.

    Statements, the values written and the rows read are all named from these fields, so no position
    can drift between them; reading a field of a row costs a tuple index.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    status: str
    try_number: int
    history: Any
    created_at: Any
    updated_at: Any
    heartbeat_at: Any
    result: Any
    error: Any
    metrics: Any
    window: Any
    info: Any
    version: int


RUN_COLUMNS: tuple[str, ...] = RunRow._fields
RUN_KEY_COLUMNS = RUN_COLUMNS[:4]
#: What a compare-and-set rewrites: everything but the key and ``created_at``.
_REWRITTEN = tuple(c for c in RUN_COLUMNS if c not in RUN_KEY_COLUMNS and c != "created_at")


def _sql_name(column: str) -> str:
    return '"window"' if column == "window" else column  # a reserved word in both dialects


def run_statements(table: str, *, named: Callable[[str], str], positional: str) -> dict[str, str]:
    """SQL of the run-record primitives on ``table`` (a constant or a validated identifier).

    Written values are bound by column name (``named("status")`` is the dialect's named placeholder, and
    ``replace`` also binds ``expected_version``); the key of ``read``/``delete`` is bound by position
    (``positional``: ``?`` or ``%s``), in :data:`RUN_KEY_COLUMNS` order. ``select`` takes a WHERE clause.

    >>> run_statements("runs", named=lambda c: f":{c}", positional="?")["delete"]
    'DELETE FROM runs WHERE dag_id = ? AND task_id = ? AND run_id = ? AND map_index = ?'
    """
    names = ", ".join(_sql_name(column) for column in RUN_COLUMNS)
    key = " AND ".join(f"{column} = {positional}" for column in RUN_KEY_COLUMNS)
    named_key = " AND ".join(f"{column} = {named(column)}" for column in RUN_KEY_COLUMNS)
    select = f"SELECT {names} FROM {table}"
    return {
        "select": select,
        "read": f"{select} WHERE {key}",
        "insert": (
            f"INSERT INTO {table} ({names}) VALUES ({', '.join(named(column) for column in RUN_COLUMNS)}) "
            f"ON CONFLICT ({', '.join(RUN_KEY_COLUMNS)}) DO NOTHING"
        ),
        "replace": (
            f"UPDATE {table} SET {', '.join(f'{_sql_name(c)} = {named(c)}' for c in _REWRITTEN)} "
            f"WHERE {named_key} AND version = {named('expected_version')}"
        ),
        "delete": f"DELETE FROM {table} WHERE {key}",
    }


def list_statement(
    select: str,
    positional: str,
    *,
    dag_id: str | None,
    task_id: str | None,
    status: Status | None,
    limit: int,
) -> tuple[str, tuple[Any, ...]]:
    """``list_runs`` as SQL and parameters: the filters that are set, most recently updated first.

    >>> list_statement("SELECT * FROM runs", "?", dag_id="etl", task_id=None, status=None, limit=5)
    ('SELECT * FROM runs WHERE dag_id = ? ORDER BY updated_at DESC LIMIT ?', ('etl', 5))
    """
    filters = (("dag_id", dag_id), ("task_id", task_id), ("status", status.value if status else None))
    used = [(column, value) for column, value in filters if value is not None]
    where = " AND ".join(f"{column} = {positional}" for column, _ in used)
    sql = f"{select}{' WHERE ' + where if used else ''} ORDER BY updated_at DESC LIMIT {positional}"
    return sql, (*(value for _, value in used), limit)


def run_values(
    record: RunRecord, *, json: Callable[[Any], Any], time: Callable[[datetime], Any]
) -> dict[str, Any]:
    """The record's column values by name; ``json``/``time`` encode them for the driver.

    None stays SQL NULL in the optional columns (so ``result IS NULL`` works) instead of JSON null.
    """
    key = record.key
    return {
        "dag_id": key.dag_id,
        "task_id": key.task_id,
        "run_id": key.run_id,
        "map_index": key.map_index,
        "status": record.status.value,
        "try_number": record.try_number,
        "history": json([entry.to_dict() for entry in record.history]),
        "created_at": time(record.created_at),
        "updated_at": time(record.updated_at),
        "heartbeat_at": None if record.heartbeat_at is None else time(record.heartbeat_at),
        "result": None if record.result is None else json(record.result),
        "error": None if record.error is None else json(record.error),
        "metrics": json(record.metrics),
        "window": None if record.window is None else json(record.window),
        "info": json(record.info),
        "version": record.version,
    }


def record_from_row(
    values: Sequence[Any], *, json: Callable[[Any], Any], time: Callable[[Any], datetime | None]
) -> RunRecord:
    """Inverse of :func:`run_values` for a row selected in :data:`RUN_COLUMNS` order (``select``/``read``)."""
    row = RunRow._make(values)  # raises if the row does not have every column
    return RunRecord(
        key=RunKey(row.dag_id, row.task_id, row.run_id, row.map_index),
        status=Status(row.status),
        try_number=int(row.try_number),
        history=tuple(Transition.from_dict(item) for item in json(row.history) or ()),
        created_at=time(row.created_at),  # type: ignore[arg-type]  # NOT NULL column
        updated_at=time(row.updated_at),  # type: ignore[arg-type]  # NOT NULL column
        heartbeat_at=time(row.heartbeat_at),
        result=None if row.result is None else json(row.result),
        error=None if row.error is None else json(row.error),
        metrics=dict(json(row.metrics) or {}),
        window=None if row.window is None else json(row.window),
        info=dict(json(row.info) or {}),
        version=int(row.version),
    )


def refuse_password(uri: str) -> None:
    """Backends are opened with the password from the environment only (see ``open_state``)."""
    if has_password(uri):
        raise StateError(
            f"state URI {redact(uri)!r} embeds a password; pass it in the GENIUS_STATE_PASSWORD "
            "environment variable instead"
        )


def scrub(message: str, secret: str | None) -> str:
    """``message`` with ``secret`` masked: drivers should never echo it, this makes sure."""
    return message.replace(secret, "***") if secret else message


def parse_bool(value: str | None, *, name: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise StateError(f"query parameter {name}={value!r} must be true or false")
