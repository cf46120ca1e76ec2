"""The genius task core: tasks, specs, state, data, models, and the ``genius`` runtime.

Nothing here imports Airflow: this package runs inside lean containers and on Slurm nodes.

>>> from airflow_genius.core import Bolt, build_spec, run_spec
"""

from airflow_genius.core.errors import GeniusError, SpecError
from airflow_genius.core.runtime import RunOutcome, run_spec
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status, TaskScope, open_state
from airflow_genius.core.task import Bolt, Spout, Task

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
