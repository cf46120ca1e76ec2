"""Helpers shared by the persistent state backends (SQLite, Redis, Postgres, DynamoDB).

Nothing here has meaning of its own: transition rules live in :mod:`.base`. These are the codecs and
key builders every backend needs, kept in one place so they encode a record the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

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


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


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


def history_to_json(history: tuple[Transition, ...]) -> list[dict[str, Any]]:
    return [entry.to_dict() for entry in history]


def history_from_json(items: list[Mapping[str, Any]] | None) -> tuple[Transition, ...]:
    return tuple(Transition.from_dict(item) for item in items or ())


def record_from_columns(
    key: RunKey,
    status: str,
    try_number: int,
    history: list[Mapping[str, Any]] | None,
    created_at: datetime,
    updated_at: datetime,
    heartbeat_at: datetime | None,
    result: Any,
    error: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    window: dict[str, Any] | None,
    info: dict[str, Any] | None,
    version: int,
) -> RunRecord:
    """Build a record from decoded SQL columns (SQLite and Postgres share the column layout)."""
    return RunRecord(
        key=key,
        status=Status(status),
        try_number=int(try_number),
        history=history_from_json(history),
        created_at=created_at,
        updated_at=updated_at,
        heartbeat_at=heartbeat_at,
        result=result,
        error=error,
        metrics=dict(metrics or {}),
        window=window,
        info=dict(info or {}),
        version=int(version),
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


def where_clause(filters: tuple[tuple[str, Any], ...], placeholder: str) -> tuple[str, list[Any]]:
    """``(" WHERE a = ? AND b = ?", [va, vb])`` for the filters whose value is not None."""
    used = [(column, value) for column, value in filters if value is not None]
    if not used:
        return "", []
    clause = " AND ".join(f"{column} = {placeholder}" for column, _ in used)
    return f" WHERE {clause}", [value for _, value in used]
