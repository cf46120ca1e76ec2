"""State managers: run records and task state on memory, SQLite, Redis, Postgres or DynamoDB.

>>> state = open_state("memory://")
>>> type(state).__name__
'MemoryStateManager'

``open_state`` picks the backend from the URI scheme and imports it lazily, so optional libraries
(redis, psycopg, boto3) are only needed for the backend in use.
"""

from __future__ import annotations

from collections.abc import Mapping

from airflow_genius.core.defaults import DEFAULT_STATE_URI
from airflow_genius.core.errors import StateError
from airflow_genius.core.schemes import SchemeRegistry
from airflow_genius.core.state.base import (
    TERMINAL,
    RunKey,
    RunRecord,
    StateManager,
    Status,
    TaskScope,
    Transition,
)
from airflow_genius.core.uris import has_password, redact

_BACKENDS: SchemeRegistry[StateManager] = SchemeRegistry(
    "state",
    {
        "memory": "airflow_genius.core.state.memory:MemoryStateManager",
        "sqlite": "airflow_genius.core.state.sqlite:SqliteStateManager",
        "redis": "airflow_genius.core.state.redis:RedisStateManager",
        "rediss": "airflow_genius.core.state.redis:RedisStateManager",
        "postgresql": "airflow_genius.core.state.postgres:PostgresStateManager",
        "postgres": "airflow_genius.core.state.postgres:PostgresStateManager",
        "dynamodb": "airflow_genius.core.state.dynamodb:DynamoDBStateManager",
    },
    StateError,
)

STATE_SCHEMES = _BACKENDS.schemes


def state_class(uri: str) -> type[StateManager]:
    """The StateManager class for ``uri``'s scheme (imports the backend module)."""
    return _BACKENDS.class_for(uri)


def open_state(uri: str, env: Mapping[str, str] | None = None) -> StateManager:
    """Open the state store at ``uri``; credentials come from ``env`` (default: ``os.environ``).

    Refuses URIs with an embedded password: put it in ``GENIUS_STATE_PASSWORD`` instead.
    """
    if has_password(uri):
        raise StateError(
            f"state URI {redact(uri)!r} embeds a password; pass it in the GENIUS_STATE_PASSWORD "
            "environment variable instead"
        )
    return state_class(uri).from_uri(uri, env)


__all__ = [
    "DEFAULT_STATE_URI",
    "STATE_SCHEMES",
    "TERMINAL",
    "RunKey",
    "RunRecord",
    "StateManager",
    "Status",
    "TaskScope",
    "Transition",
    "open_state",
    "state_class",
]
