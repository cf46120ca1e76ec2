"""Render Geniusfiles (``*.genius.yaml``) into Airflow DAGs of genius operators.

A tiny Python file in the DAGs folder exposes every Geniusfile beside it::

    # dags/genius_geniusfiles.py  (the file must mention "airflow" and "dag" for the DAG processor)
    from pathlib import Path
    from airflow_genius.dag_factory import load_geniusfiles

    load_geniusfiles(Path(__file__).parent, globals())

or one file at a time: ``dag = dag_from_geniusfile("dags/quotes.genius.yaml")``.

Validation is the core's (:mod:`airflow_genius.core.geniusfile`), so ``genius dag validate`` in CI
reports exactly what the DAG processor would. Task classes are *not* imported while parsing: the
operators take their import paths, and heavy task code loads only where the task runs.
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any, Literal

from airflow.sdk import DAG, Param, literal

from airflow_genius.core.defaults import DEFAULT_NAMESPACE
from airflow_genius.core.geniusfile import (
    Geniusfile,
    GeniusfileError,
    ParamSettings,
    StateSettings,
    TaskEntry,
    find_geniusfiles,
    load_geniusfile,
)
from airflow_genius.operators.base import OUTPUT_XCOM_KEY, GeniusOperatorMixin
from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

log = logging.getLogger(__name__)

#: Operator class per (runner, kind). Remote runners join here as their operators land.
OPERATORS: dict[tuple[str, str], type[GeniusOperatorMixin]] = {
    ("local", "spout"): GeniusSpoutOperator,
    ("local", "bolt"): GeniusBoltOperator,
}


def upstream_output_template(task_id: str) -> str:
    """The Jinja that renders to the committed output partition of ``task_id``.

    >>> upstream_output_template("fetch")
    "{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}"
    """
    # task ids are [A-Za-z0-9_.-] (validated), so they are safe inside the quotes
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}', key='{OUTPUT_XCOM_KEY}') }}}}"


def dag_from_geniusfile(path: str | os.PathLike[str]) -> DAG:
    """Build the DAG described by the Geniusfile at ``path``; assign it at module level of a DAG file
    (``dag = dag_from_geniusfile(...)``) for Airflow to find it.

    Raises :class:`~airflow_genius.core.geniusfile.GeniusfileError` (one line: file, field, problem).
    """
    return build_dag(load_geniusfile(path))


def build_dag(geniusfile: Geniusfile) -> DAG:
    """The DAG of a parsed Geniusfile: one operator per spout/bolt, inputs wired through XCom."""
    settings = geniusfile.dag
    dag = DAG(
        dag_id=settings.id,
        schedule=settings.schedule,
        start_date=settings.start_date,
        catchup=settings.catchup,
        tags=list(settings.tags),
        description=settings.description,
        doc_md=settings.doc,
        params={p.name: _param(p) for p in geniusfile.dag.params},
        # "{{ params.count }}" renders to 20, not "20": method kwargs keep their JSON types.
        render_template_as_native_obj=True,
        # Registered only where the caller puts it (a DAG file's globals): a Geniusfile that fails
        # half-way through `with dag:` must not reach the DagBag through DagContext's auto-registration.
        auto_register=False,
    )
    operators: dict[str, Any] = {}
    try:
        with dag:
            for entry in geniusfile.tasks:  # dependency order: upstream operators exist already
                operators[entry.name] = _operator(entry, geniusfile)
                for upstream in entry.upstream:
                    operators[upstream] >> operators[entry.name]
    except GeniusfileError as exc:
        exc.source = geniusfile.source
        raise
    return dag


def load_geniusfiles(
    folder: str | os.PathLike[str],
    globals_dict: MutableMapping[str, Any],
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[DAG]:
    """Register one DAG per ``*.genius.yaml`` in ``folder`` into ``globals_dict`` (a DAG file's
    ``globals()``) and return them.

    ``on_error="raise"`` (default): any invalid Geniusfile raises one error listing every bad file, so
    Airflow shows it as the import error of the calling file (its other DAGs are then not loaded either:
    run ``genius dag validate`` in CI to keep that from happening). ``"skip"``: log bad files and
    register the others.
    """
    dags: list[DAG] = []
    errors: list[str] = []
    owners: dict[str, str] = {}
    for path in find_geniusfiles(folder):
        try:
            geniusfile = load_geniusfile(path)
            if geniusfile.dag.id in owners:
                raise GeniusfileError(
                    "dag.id",
                    f"{geniusfile.dag.id!r} is already used by {owners[geniusfile.dag.id]}",
                    source=str(path),
                )
            dag = build_dag(geniusfile)
        except GeniusfileError as exc:
            errors.append(str(exc))
            continue
        owners[geniusfile.dag.id] = path.name
        dags.append(dag)
    if errors and on_error == "raise":
        raise GeniusfileError(
            "geniusfiles",
            f"{len(errors)} invalid Geniusfile(s) in {os.fspath(folder)}: " + " | ".join(errors),
        )
    for message in errors:
        log.error("skipping Geniusfile: %s", message)
    for dag in dags:
        globals_dict[dag.dag_id] = dag
    return dags


# ---------------------------------------------------------------------- pieces
def _param(setting: ParamSettings) -> Param:
    if setting.has_default:
        return Param(setting.default, **setting.schema)
    return Param(**setting.schema)  # no default: the trigger form requires a value


def _operator(entry: TaskEntry, geniusfile: Geniusfile) -> Any:
    operator_class = OPERATORS[(entry.runner, entry.kind)]
    arguments: dict[str, Any] = {
        "task_id": entry.name,
        "task_class": entry.class_path,
        "method": entry.method,
        "method_args": _as_written(list(entry.args)),
        "output_uri": entry.output_uri,
        **_state_arguments(entry, geniusfile),
    }
    if entry.kind == "bolt":
        arguments["input_uri"] = (
            upstream_output_template(entry.input_task) if entry.input_task else entry.input_uri
        )
    if entry.model is not None:
        arguments.update(
            model_uri=entry.model.uri, model_name=entry.model.name, model_version=entry.model.version
        )
    if entry.retries is not None:
        arguments["retries"] = entry.retries
    if entry.retry_delay_seconds is not None:
        arguments["retry_delay"] = timedelta(seconds=entry.retry_delay_seconds)
    if entry.doc:
        arguments["doc_md"] = entry.doc
    if entry.map_kwargs is not None:
        return operator_class.partial(**arguments).expand(
            method_kwargs=[_as_written(dict(k)) for k in entry.map_kwargs]
        )
    return operator_class(method_kwargs=_as_written(dict(entry.kwargs)), **arguments)


def _as_written(value: Any) -> Any:
    """Keep plain texts as the Geniusfile wrote them.

    With ``render_template_as_native_obj`` Airflow evaluates every rendered text as a Python literal, so
    ``label: "123"`` would reach the method as the int 123 and ``"[1, 2]"`` as a list. Texts without
    Jinja that would change that way are wrapped in ``literal()``; templates (``{{ params.x }}``) still
    render to native values, which is the point of the option.
    """
    if isinstance(value, dict):
        return {key: _as_written(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_written(item) for item in value]
    if isinstance(value, str) and "{{" not in value and "{%" not in value:
        try:
            native = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return value
        if not isinstance(native, str) or native != value:
            return literal(value)
    return value


def _state_arguments(entry: TaskEntry, geniusfile: Geniusfile) -> dict[str, Any]:
    state: StateSettings | None = entry.state
    if state is None:
        return {}
    arguments: dict[str, Any] = {}
    if state.namespace != DEFAULT_NAMESPACE:
        arguments["state_namespace"] = state.namespace
    if state.conn_id:
        arguments["state_conn_id"] = state.conn_id
    else:
        arguments["state_uri"] = state.uri
    return arguments
