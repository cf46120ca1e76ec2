"""Local operators: run the genius task inside the Airflow worker, through the same runtime path as
``genius run``.

.. code-block:: python

    from airflow.sdk import dag
    from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

    @dag(schedule="@daily")
    def quotes():
        fetch = GeniusSpoutOperator(
            task_id="fetch",
            task_class="airflow_genius.examples.tasks:QuoteSpout",
            method="fetch",
            method_kwargs={"count": "{{ params.count }}"},
            output_uri="/data/quotes",
        )
        count = GeniusBoltOperator(
            task_id="count",
            task_class="airflow_genius.examples.tasks:WordCount",
            method="count",
            input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
            output_uri="/data/counts",
        )
        fetch >> count
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

from airflow_genius import config
from airflow_genius.links.output import GeniusOutputLink
from airflow_genius.links.record import GeniusRecordLink
from airflow_genius.operators.base import GENIUS_TEMPLATE_FIELDS, GeniusOperatorMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the task's method (a service's address), restored afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class GeniusTaskOperator(GeniusOperatorMixin):
    """Run a genius task method in the worker; its JSON return value is the XCom.

    Failures raise :class:`~airflow_genius.operators.base.GeniusTaskFailed` with the task's own error
    type and message; the traceback is in the task log and in the run record.
    """

    template_fields: Sequence[str] = GENIUS_TEMPLATE_FIELDS
    template_fields_renderers: ClassVar[dict[str, str]] = {"genius_call": "json"}
    operator_extra_links: tuple[BaseOperatorLink, ...] = (GeniusOutputLink(), GeniusRecordLink())
    ui_color = "#e4e48c"

    def execute(self, context: Context) -> Any:
        from airflow_genius.core.runtime import run_spec
        from airflow_genius.core.uris import redact

        target = self.genius_state()
        spec = self.build_task_spec(context, state_uri=target.uri)
        self.log.info("running %s.%s (state %s)", spec.task.class_path, spec.task.method, redact(target.uri))
        with target.open() as state, _environment(self.service_env(context)):
            outcome = run_spec(spec, state=state, work_dir=config.get("work_dir"))
        self.publish_output(context, outcome.record)
        return self.result_from_record(outcome.record)


class GeniusSpoutOperator(GeniusTaskOperator):
    """Run a genius :class:`~airflow_genius.core.task.Spout` in the worker (no input; an output)."""

    genius_kind = "spout"
    ui_color = "#93a1a1"


class GeniusBoltOperator(GeniusTaskOperator):
    """Run a genius :class:`~airflow_genius.core.task.Bolt` in the worker (an input and an output)."""

    genius_kind = "bolt"
    ui_color = "#268bd2"
    ui_fgcolor = "#ffffff"
