"""The genius task core: tasks, specs, state, data, models, and the ``genius`` runtime.

Nothing here imports Airflow: this package runs inside lean containers and on Slurm nodes.

>>> from airflow_genius.core import Bolt, build_spec, run_spec

Names are imported on first use (PEP 562), so importing one submodule — as every DAG file does through
the operators — does not load the whole core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Bolt": "airflow_genius.core.task",
    "Spout": "airflow_genius.core.task",
    "Task": "airflow_genius.core.task",
    "GeniusError": "airflow_genius.core.errors",
    "SpecError": "airflow_genius.core.errors",
    "RunOutcome": "airflow_genius.core.runtime",
    "run_spec": "airflow_genius.core.runtime",
    "TaskSpec": "airflow_genius.core.spec",
    "build_spec": "airflow_genius.core.spec",
    "RunKey": "airflow_genius.core.state",
    "RunRecord": "airflow_genius.core.state",
    "StateManager": "airflow_genius.core.state",
    "Status": "airflow_genius.core.state",
    "TaskScope": "airflow_genius.core.state",
    "open_state": "airflow_genius.core.state",
}

__all__ = [
    "Bolt",
    "GeniusError",
    "RunKey",
    "RunOutcome",
    "RunRecord",
    "SpecError",
    "Spout",
    "StateManager",
    "Status",
    "Task",
    "TaskScope",
    "TaskSpec",
    "build_spec",
    "open_state",
    "run_spec",
]

if TYPE_CHECKING:
    from airflow_genius.core.errors import GeniusError, SpecError
    from airflow_genius.core.runtime import RunOutcome, run_spec
    from airflow_genius.core.spec import TaskSpec, build_spec
    from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status, TaskScope, open_state
    from airflow_genius.core.task import Bolt, Spout, Task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_genius.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
