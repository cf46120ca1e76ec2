"""Task state as a task sees it: a small key/value view bound to (namespace, dag_id, task_id)."""

from __future__ import annotations

from typing import Any

from airflow_genius.core.state.base import StateManager, TaskScope


class ScopedState:
    """Key/value state that belongs to one task across all its runs.

    Inside a task method::

        cursor = self.state.get("cursor", 0)
        ...
        self.state.set("cursor", cursor + len(batch))
    """

    def __init__(self, manager: StateManager, scope: TaskScope) -> None:
        self.manager = manager
        self.scope = scope

    def get(self, key: str, default: Any = None) -> Any:
        return self.manager.get_state(self.scope, key, default)

    def set(self, key: str, value: Any) -> None:
        self.manager.set_state(self.scope, key, value)

    def delete(self, key: str) -> bool:
        return self.manager.delete_state(self.scope, key)

    def items(self) -> dict[str, Any]:
        return self.manager.list_state(self.scope)

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        return self.manager.compare_and_set_state(self.scope, key, expected, value)

    def __repr__(self) -> str:
        return f"ScopedState({'/'.join(self.scope.parts())})"
