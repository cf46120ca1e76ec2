"""Per-backend fixtures for the state tests: each yields a fresh, isolated store on a real engine.

* memory — in-process;
* sqlite — a file under ``tmp_path``;
* redis — the rig's Redis, a unique key prefix, every key under it deleted afterwards;
* postgres — the rig's Postgres, a unique table prefix, its tables dropped afterwards;
* dynamodb — moto_server, a unique table, deleted afterwards.

An engine that is not reachable fails the test (the session fixtures in ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_genius.core.state import StateManager, open_state
from airflow_genius.core.state.memory import MemoryStateManager


@dataclass
class Backend:
    """How to open (and reopen, from another process) one isolated store."""

    name: str
    uri: str
    env: dict[str, str] = field(default_factory=dict)
    shared: StateManager | None = None  # memory: there is only the one instance

    @property
    def persistent(self) -> bool:
        return self.shared is None

    def open(self) -> StateManager:
        return self.shared if self.shared is not None else open_state(self.uri, self.env)


PERSISTENT = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("dynamodb", id="dynamodb", marks=pytest.mark.aws),
]
ALL = [pytest.param("memory", id="memory"), *PERSISTENT]


def _make_backend(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[Backend]:
    if name == "memory":
        yield Backend("memory", "memory://", shared=MemoryStateManager())
    elif name == "sqlite":
        # tmp_path is absolute: this is the sqlite:////abs/path form, in a folder that does not exist yet.
        yield Backend("sqlite", f"sqlite:///{tmp_path}/state/genius.db")
    elif name == "redis":
        backend = Backend("redis", f"{request.getfixturevalue('redis_url')}?prefix={unique}")
        yield backend
        with open_state(backend.uri) as state:
            state.purge()  # type: ignore[attr-defined]
    elif name == "postgres":
        backend = Backend("postgres", f"{request.getfixturevalue('postgres_url')}?table_prefix={unique}")
        yield backend
        with open_state(backend.uri) as state:
            state.drop_tables()  # type: ignore[attr-defined]
    elif name == "dynamodb":
        request.getfixturevalue("aws_endpoint")
        backend = Backend("dynamodb", f"dynamodb://{unique}?region=us-east-1&create=true")
        yield backend
        with open_state(backend.uri) as state:
            state.delete_table()  # type: ignore[attr-defined]
    else:  # pragma: no cover - a typo in a parameter list
        raise AssertionError(name)


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Backend]:
    """Every backend, memory included."""
    yield from _make_backend(request.param, request, tmp_path, unique_name)


@pytest.fixture(params=PERSISTENT)
def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Backend]:
    """Backends whose data outlives the manager (and is shared between processes)."""
    yield from _make_backend(request.param, request, tmp_path, unique_name)


@pytest.fixture
def state(backend: Backend) -> Iterator[StateManager]:
    """A fresh, isolated state manager on each backend."""
    manager = backend.open()
    yield manager
    manager.close()
