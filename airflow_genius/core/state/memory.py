"""In-process state (tests, quick experiments). Nothing survives the process."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from typing import Any

from airflow_genius.core.state.base import RunKey, RunRecord, StateManager, Status, TaskScope


class MemoryStateManager(StateManager):
    """Thread-safe state kept in dictionaries.

    >>> state = MemoryStateManager()
    >>> state.set_state(TaskScope("default", "d", "t"), "cursor", 7)
    >>> state.get_state(TaskScope("default", "d", "t"), "cursor")
    7
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._runs: dict[RunKey, RunRecord] = {}
        self._state: dict[tuple[TaskScope, str], str] = {}

    @classmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> MemoryStateManager:
        return cls()

    def _read(self, key: RunKey) -> RunRecord | None:
        with self._lock:
            record = self._runs.get(key)
        # A copy, so a caller mutating record.metrics cannot change the store behind its back.
        return copy.deepcopy(record)

    def _insert(self, record: RunRecord) -> bool:
        _check_json(record.result)
        with self._lock:
            if record.key in self._runs:
                return False
            self._runs[record.key] = record
            return True

    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        _check_json(record.result)
        with self._lock:
            current = self._runs.get(record.key)
            if current is None or current.version != expected_version:
                return False
            self._runs[record.key] = copy.deepcopy(record)
            return True

    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        with self._lock:
            records = [
                r
                for r in self._runs.values()
                if (dag_id is None or r.key.dag_id == dag_id)
                and (task_id is None or r.key.task_id == task_id)
                and (status is None or r.status is status)
            ]
        records.sort(key=lambda r: r.updated_at, reverse=True)
        return records[:limit]

    def _delete(self, key: RunKey) -> bool:
        with self._lock:
            return self._runs.pop(key, None) is not None

    # Values are kept JSON-encoded so the memory backend rejects what real stores would reject.
    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]:
        with self._lock:
            raw = self._state.get((scope, key))
        return (False, None) if raw is None else (True, json.loads(raw))

    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None:
        raw = json.dumps(value)
        with self._lock:
            self._state[(scope, key)] = raw

    def _state_delete(self, scope: TaskScope, key: str) -> bool:
        with self._lock:
            return self._state.pop((scope, key), None) is not None

    def _state_list(self, scope: TaskScope) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(v) for (s, k), v in self._state.items() if s == scope}

    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        raw = json.dumps(value)
        with self._lock:
            current = self._state.get((scope, key))
            if (None if current is None else json.loads(current)) != expected:
                return False
            self._state[(scope, key)] = raw
            return True


def _check_json(value: Any) -> None:
    json.dumps(value)
