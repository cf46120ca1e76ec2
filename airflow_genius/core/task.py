"""The genius task model: a user writes one class with ordinary methods; a run calls one by name.

>>> class Upper(Bolt):
...     '''Upper-cases every line of every input file.'''
...     def process(self, suffix: str = "") -> int:
...         lines = 0
...         for name in self.input.files():
...             text = self.input.read_text(name)
...             self.output.save(text.upper() + suffix, name)
...             lines += text.count("\\n")
...         self.log_metric("lines", lines)
...         return lines
>>> sorted(Upper.task_methods())
['process']

The runtime builds the instance with its managers (``input``, ``output``, ``state``, ``model``,
``identity``) and calls the method with the spec's args/kwargs; the return value (JSON) becomes the result
in the run record and, under Airflow, the task's XCom.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_genius.core.errors import TaskCallError

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_genius.core.data import BatchInput, BatchOutput
    from airflow_genius.core.models import ModelManager
    from airflow_genius.core.spec import RunIdentity
    from airflow_genius.core.state.scoped import ScopedState
    from airflow_genius.core.streams import StreamingInput, StreamingOutput

#: The run record's metric that lists the model versions a task saved through ``self.model``
#: (``ModelManager.saved``, each as ``SavedModel.to_dict()``); the operator emits an asset event for each.
MODELS_SAVED_METRIC = "models_saved"


class Task:
    """Base of every genius task. Subclass :class:`Spout` or :class:`Bolt` rather than this directly.

    Attributes set by the runtime:
        input: the batch input (bolts), or for a stream input one bounded window
            (:class:`~airflow_genius.core.streams.StreamingInput`: ``for record in self.input``),
            ``None`` otherwise.
        output: the batch output of this run's partition, or a stream output
            (``self.output.send(record)``), ``None`` without an output.
        state: task-scoped key/value state (:class:`ScopedState`), kept across runs.
        model: the model manager, ``None`` without a model in the spec.
        model_path: local folder of the model named in the spec, already loaded.
        identity: the run identity (dag_id, task_id, run_id, map_index, try_number, logical_date).
        metrics: numbers recorded with :meth:`log_metric`; stored in the run record. Once the task saved
            a model version through ``self.model``, ``metrics["models_saved"]`` lists each one (registry
            URI, name, version, content digest): the operator emits its asset event from there.

    A subclass that defines ``__init__`` must accept and pass on these keyword arguments::

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seen = set()
    """

    kind: ClassVar[str] = "task"

    def __init__(
        self,
        *,
        input: BatchInput | StreamingInput | None = None,
        output: BatchOutput | StreamingOutput | None = None,
        state: ScopedState | None = None,
        model: ModelManager | None = None,
        model_path: Path | None = None,
        identity: RunIdentity | None = None,
    ) -> None:
        self.input = input
        self.output = output
        self.state = state
        self.model = model
        self.model_path = model_path
        self.identity = identity
        self._metrics: dict[str, Any] = {}

    @property
    def metrics(self) -> dict[str, Any]:
        """This run's metrics (:meth:`log_metric`), with the model versions saved so far."""
        saved = getattr(self.model, "saved", None)  # ModelManager.saved; None without a model
        if saved:
            self._metrics[MODELS_SAVED_METRIC] = [version.to_dict() for version in saved]
        return self._metrics

    @metrics.setter
    def metrics(self, value: dict[str, Any]) -> None:
        self._metrics = value

    def log_metric(self, name: str, value: float | int | str) -> None:
        """Record a metric of this run (kept in the run record's ``metrics``)."""
        self._metrics[name] = value

    @classmethod
    def task_methods(cls) -> dict[str, inspect.Signature]:
        """Public methods a run may call: those the user defined, not the genius Task API."""
        methods: dict[str, inspect.Signature] = {}
        for name, member in inspect.getmembers(cls, predicate=callable):
            if name.startswith("_") or name in _TASK_API or isinstance(member, type):
                continue
            methods[name] = inspect.signature(getattr(cls, name))
        return methods

    def __repr__(self) -> str:
        run = self.identity
        where = f" {run.dag_id}.{run.task_id}@{run.run_id}" if run else ""
        return f"<{type(self).__name__}{where}>"


class Spout(Task):
    """A task that ingests data from outside (an API, a crawl, a database) into its output."""

    kind: ClassVar[str] = "spout"


class Bolt(Task):
    """A task that reads its input, processes it, and writes its output."""

    kind: ClassVar[str] = "bolt"


_TASK_API = frozenset(name for name, _ in inspect.getmembers(Task, predicate=callable))


def bound_method(instance: Task, name: str) -> Callable[..., Any]:
    """The callable for ``name`` on ``instance``, if ``name`` is one of its task methods."""
    methods = type(instance).task_methods()
    if name not in methods:
        available = ", ".join(sorted(methods)) or "none"
        raise TaskCallError(f"{type(instance).__name__} has no task method {name!r} (available: {available})")
    return getattr(instance, name)  # type: ignore[no-any-return]
