"""Render Geniusfiles (``*.genius.yaml``) into Airflow DAGs, or task groups, of genius operators.

A tiny Python file in the DAGs folder exposes every Geniusfile beside it::

    # dags/genius_geniusfiles.py  (the file must mention "airflow" and "dag" for the DAG processor)
    from pathlib import Path
    from airflow_genius.dag_factory import load_geniusfiles

    load_geniusfiles(Path(__file__).parent, globals())

or one file at a time: ``dag = dag_from_geniusfile("dags/quotes.genius.yaml")``, or as a task group of
a hand-written DAG::

    with DAG("nightly", schedule="@daily", render_template_as_native_obj=True):
        prepare = EmptyOperator(task_id="prepare")
        prepare >> task_group_from_geniusfile("dags/quotes.genius.yaml")

Structure is validated by the core (:mod:`airflow_genius.core.geniusfile`, no Airflow); the arguments
that depend on the operators (``runners``, ``platform``, ``operator``) are checked here, against the
operators' signatures, by :func:`check_platform_arguments` — which ``genius dag validate`` also runs
(entry point group ``genius.geniusfile_checks``), so CI reports what the DAG processor would. Task
classes are *not* imported while parsing: the operators take their import paths, and heavy task code
loads only where the task runs. A runner's operator module (and its provider) is imported only when a
Geniusfile uses that runner.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
from collections.abc import Mapping, MutableMapping
from datetime import timedelta
from functools import cache
from typing import Any, Literal, NamedTuple

from airflow.sdk import DAG, Asset, AssetAlias, AssetAll, AssetAny, BaseOperator, Param, TaskGroup, literal

from airflow_genius.core.defaults import DEFAULT_NAMESPACE
from airflow_genius.core.geniusfile import (
    GENIUS_ARGUMENTS,
    AssetSchedule,
    Geniusfile,
    GeniusfileError,
    ParamSettings,
    StateSettings,
    TaskEntry,
    did_you_mean,
    find_geniusfiles,
    load_geniusfile,
)
from airflow_genius.core.uris import ALIAS_PREFIXES
from airflow_genius.operators.base import OUTPUT_XCOM_KEY
from airflow_genius.operators.lineage import asset_uri

log = logging.getLogger(__name__)

_OPS = "airflow_genius.operators"
#: Operator class per (runner, kind) — kind is spout, bolt, service or service_stop — as import paths:
#: a runner's module (and its provider) is imported only when a Geniusfile uses that runner.
OPERATORS: dict[tuple[str, str], str] = {
    ("local", "spout"): f"{_OPS}.local:GeniusSpoutOperator",
    ("local", "bolt"): f"{_OPS}.local:GeniusBoltOperator",
    ("local", "service"): f"{_OPS}.local_service:GeniusLocalServiceOperator",
    ("local", "service_stop"): f"{_OPS}.local_service:GeniusLocalServiceStopOperator",
    ("docker", "spout"): f"{_OPS}.docker:GeniusDockerSpoutOperator",
    ("docker", "bolt"): f"{_OPS}.docker:GeniusDockerBoltOperator",
    ("docker", "service"): f"{_OPS}.docker_service:GeniusDockerServiceOperator",
    ("docker", "service_stop"): f"{_OPS}.docker_service:GeniusDockerServiceStopOperator",
    ("kubernetes", "spout"): f"{_OPS}.kubernetes:GeniusKubernetesSpoutOperator",
    ("kubernetes", "bolt"): f"{_OPS}.kubernetes:GeniusKubernetesBoltOperator",
    ("kubernetes", "service"): f"{_OPS}.kubernetes_service:GeniusKubernetesServiceOperator",
    ("kubernetes", "service_stop"): f"{_OPS}.kubernetes_service:GeniusKubernetesServiceStopOperator",
    ("ecs", "spout"): f"{_OPS}.ecs:GeniusEcsSpoutOperator",
    ("ecs", "bolt"): f"{_OPS}.ecs:GeniusEcsBoltOperator",
    ("ecs", "service"): f"{_OPS}.ecs_service:GeniusEcsServiceOperator",
    ("ecs", "service_stop"): f"{_OPS}.ecs_service:GeniusEcsServiceStopOperator",
    ("batch", "spout"): f"{_OPS}.batch:GeniusBatchSpoutOperator",
    ("batch", "bolt"): f"{_OPS}.batch:GeniusBatchBoltOperator",
    ("slurm", "spout"): f"{_OPS}.slurm:GeniusSlurmSpoutOperator",
    ("slurm", "bolt"): f"{_OPS}.slurm:GeniusSlurmBoltOperator",
    ("slurm", "service"): f"{_OPS}.slurm_service:GeniusSlurmServiceOperator",
    ("slurm", "service_stop"): f"{_OPS}.slurm_service:GeniusSlurmServiceStopOperator",
}

#: Arguments a runner needs although its operators' signatures give them a default, each with the
#: arguments that may supply it instead: ``KubernetesPodOperator`` makes ``image`` optional (a pod
#: template may carry it), but a genius pod without one cannot start.
ALSO_REQUIRED: dict[str, dict[str, tuple[str, ...]]] = {
    "kubernetes": {"image": ("pod_template_file", "pod_template_dict", "full_pod_spec")},
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
    """The DAG of a parsed Geniusfile: one operator per spout/bolt/service, inputs wired through XCom,
    and a stop task per service (an Airflow teardown) after its clients."""
    settings = geniusfile.dag
    try:
        schedule = dag_schedule(settings.schedule)
    except GeniusfileError as exc:
        exc.source = geniusfile.source
        raise
    dag = DAG(
        dag_id=settings.id,
        schedule=schedule,
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
    with dag:
        _render(geniusfile)
    return dag


def dag_schedule(schedule: str | AssetSchedule | None) -> str | AssetAll | AssetAny | None:
    """Airflow's ``schedule`` of a Geniusfile's ``dag.schedule``: a cron expression or preset as
    written; assets as ``AssetAll`` / ``AssetAny`` (what ``[a, b]``, ``a & b`` and ``a | b`` build).

    Each URI becomes the Asset a genius operator declares for that output (``asset_uri`` of
    ``operators/lineage.py``: ``/data/quotes/`` is ``file:///data/quotes``, a stream keeps only
    ``?stream=``), so the producer's outlet and this schedule name one Asset; a
    ``genius-output:<dag>.<task>`` name becomes that AssetAlias. Usage::

        dag_schedule(AssetSchedule("all", ("/data/quotes/",)))
        # AssetAll(Asset(name='file:///data/quotes', uri='file:///data/quotes', ...))
    """
    if not isinstance(schedule, AssetSchedule):
        return schedule
    return _asset_condition(schedule, "dag.schedule")


def _asset_condition(schedule: AssetSchedule, where: str) -> AssetAll | AssetAny:
    items: list[Asset | AssetAlias | AssetAll | AssetAny] = []
    for index, item in enumerate(schedule.items):
        if isinstance(item, AssetSchedule):
            items.append(_asset_condition(item, f"{where}[{index}]"))
        elif item.startswith(ALIAS_PREFIXES):
            items.append(AssetAlias(item))
        elif (uri := asset_uri(item)) is not None:
            items.append(Asset(uri))  # its name is its URI, as on the producer's outlet
        else:  # validated by the core already; asset_uri is stricter on nothing it let through
            raise GeniusfileError(f"{where}[{index}]", "not a location a genius task writes", got=item)
    return AssetAny(*items) if schedule.condition == "any" else AssetAll(*items)


def task_group_from_geniusfile(path: str | os.PathLike[str], group_id: str | None = None) -> TaskGroup:
    """The Geniusfile at ``path`` as a task group of the DAG being defined (call it inside
    ``with DAG(...)``); ``group_id`` defaults to the file's ``dag.id``. Task ids are prefixed with the
    group id (``quotes.fetch``); wire the group like a task: ``prepare >> group``.

    The host DAG owns the DAG-level settings: the file's ``schedule``, ``start_date``, ``catchup`` and
    ``tags`` are ignored, ``description`` becomes the group's tooltip, and each of the file's
    ``params`` the DAG lacks is added to it (the DAG's own definition wins). A file whose ``args`` or
    ``kwargs`` use templates needs a DAG created with ``render_template_as_native_obj=True`` (else
    ``"{{ params.count }}"`` would reach the method as the text ``"20"``); it is refused otherwise.
    """
    return build_task_group(load_geniusfile(path), group_id)


def build_task_group(geniusfile: Geniusfile, group_id: str | None = None) -> TaskGroup:
    """The task group of a parsed Geniusfile inside the DAG being defined (see
    :func:`task_group_from_geniusfile`)."""
    try:
        group = TaskGroup(group_id or geniusfile.dag.id, tooltip=geniusfile.dag.description or "")
    except RuntimeError:  # no DAG context: say what to do, in the Geniusfile's words
        raise GeniusfileError(
            "dag", "a task group is built inside 'with DAG(...)'", source=geniusfile.source
        ) from None
    host = group.dag
    if host is None:  # TaskGroup() raises without a DAG; this keeps the type checker informed
        raise GeniusfileError("dag", "a task group is built inside 'with DAG(...)'", source=geniusfile.source)
    if not host.render_template_as_native_obj and _templated_arguments(geniusfile):
        raise GeniusfileError(
            "dag",
            f"the DAG {host.dag_id!r} renders templates as text, but this file's arguments use templates "
            "that must keep their types; create it with render_template_as_native_obj=True",
            source=geniusfile.source,
        )
    for setting in geniusfile.dag.params:
        if setting.name not in host.params:
            host.params[setting.name] = _param(setting)
    with group:
        _render(geniusfile)
    return group


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


# ---------------------------------------------------------------------- operator classes and arguments
class OperatorArguments(NamedTuple):  # not a dataclass: cheap to define in each parsing process
    """What an operator class's ``__init__`` chain takes: ``accepted`` (every keyword of the
    ``__init__`` of each class along its MRO), ``required`` (no default where the most derived class
    that declares it says so) and ``task_only`` (declared by ``BaseOperator`` alone: Airflow task
    arguments, set through ``operator:``)."""

    name: str
    accepted: frozenset[str]
    required: tuple[str, ...]
    task_only: frozenset[str]

    @property
    def platform(self) -> frozenset[str]:
        """The runner-specific arguments: what a ``platform`` block may set."""
        return self.accepted - self.task_only - GENIUS_ARGUMENTS.keys()


@cache
def operator_arguments(cls: type) -> OperatorArguments:
    """The arguments ``cls`` takes, inspected once per class (the DAG processor re-parses often)."""
    task_classes = set(BaseOperator.__mro__)
    declared: dict[str, bool] = {}  # name -> required, from the most derived class declaring it
    task_only: set[str] = set()
    own: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.name == "self" or parameter.kind in (
                parameter.VAR_KEYWORD,
                parameter.VAR_POSITIONAL,
            ):
                continue
            declared.setdefault(parameter.name, parameter.default is parameter.empty)
            (task_only if klass in task_classes else own).add(parameter.name)
    return OperatorArguments(
        name=cls.__name__,
        accepted=frozenset(declared),
        required=tuple(name for name, required in declared.items() if required),
        task_only=frozenset(task_only - own),
    )


@cache
def _import_operator(path: str) -> type[BaseOperator]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def operator_class(runner: str, kind: str, *, where: str = "runner") -> type[BaseOperator]:
    """The operator class of ``(runner, kind)``, imported on first use; a runner whose module or
    provider is not installed is one :class:`GeniusfileError` naming ``where``."""
    path = OPERATORS.get((runner, kind))
    if path is None:
        raise GeniusfileError(where, f"runner {runner!r} has no {kind.replace('_', ' ')} operator")
    try:
        return _import_operator(path)
    except ImportError as exc:
        raise GeniusfileError(where, f"runner {runner!r} cannot load {path}: {exc}") from None


def _kinds(entry: TaskEntry) -> tuple[str, ...]:
    return ("service", "service_stop") if entry.kind == "service" else (entry.kind,)


def check_platform_arguments(geniusfile: Geniusfile, *, unused_runners: bool = True) -> None:
    """Check ``runners``, each step's ``platform`` and ``operator`` against the signatures of the
    operators they reach; raise the first problem as one :class:`GeniusfileError` line.

    Loaded by ``genius dag validate`` through the ``genius.geniusfile_checks`` entry point group, and
    run by :func:`build_dag` before any operator is made (so a typo is a clear error, not a TypeError).
    ``unused_runners=False`` (rendering) skips the blocks of runners no step uses: checking them would
    import their providers on every parse.
    """
    try:
        used = {entry.runner for entry in geniusfile.tasks}
        _check_runner_blocks(geniusfile, None if unused_runners else used)
        for entry in geniusfile.tasks:
            _check_entry(entry, geniusfile)
    except GeniusfileError as exc:
        exc.source = geniusfile.source
        raise


def _check_runner_blocks(geniusfile: Geniusfile, only: set[str] | None) -> None:
    # A runner's block is shared by its operators: each takes the keys it knows (a service's stop
    # operator takes fewer than its start operator); a key no operator of the runner knows is a typo.
    for runner, block in geniusfile.runners.items():
        if only is not None and runner not in only:
            continue
        where = f"runners.{runner}"
        kinds = [kind for (r, kind) in OPERATORS if r == runner]
        if not geniusfile.services:
            kinds = [kind for kind in kinds if not kind.startswith("service")]
        signatures = [operator_arguments(operator_class(runner, kind, where=where)) for kind in kinds]
        for key in block:
            _check_platform_key(key, f"{where}.{key}", signatures, f"any {runner} operator")


def _check_entry(entry: TaskEntry, geniusfile: Geniusfile) -> None:
    where = f"{entry.where}.runner"
    signatures = [
        operator_arguments(operator_class(entry.runner, kind, where=where)) for kind in _kinds(entry)
    ]
    for key in entry.platform:
        names = " and ".join(s.name for s in signatures)
        _check_platform_key(key, f"{entry.where}.platform.{key}", signatures, names)
    given = geniusfile.platform_of(entry)
    for kind, signature in zip(_kinds(entry), signatures, strict=True):
        missing = [name for name in signature.required if name not in GENIUS_ARGUMENTS and name not in given]
        missing += [
            name
            for name, instead in ALSO_REQUIRED.get(entry.runner, {}).items()
            if name in signature.accepted and not given.get(name) and not any(given.get(i) for i in instead)
        ]
        if missing:
            name = missing[0]
            task = f" for its stop task {entry.stop_name}" if kind == "service_stop" else ""
            raise GeniusfileError(
                f"{entry.where}.platform",
                f"runner {entry.runner!r} needs {name!r}{task} "
                f"(set runners.{entry.runner}.{name} or platform.{name})",
            )
    task_arguments = operator_arguments(BaseOperator)
    for key in entry.operator:
        if key in task_arguments.accepted:
            continue
        field = f"{entry.where}.operator.{key}"
        if any(key in s.platform for s in signatures):
            raise GeniusfileError(field, f"an argument of {signatures[0].name}; set it under 'platform'")
        raise GeniusfileError(
            field, f"not an argument of BaseOperator{did_you_mean(key, task_arguments.accepted)}"
        )


def _check_platform_key(key: str, field: str, signatures: list[OperatorArguments], of: str) -> None:
    if any(key in s.platform for s in signatures):
        return
    if any(key in s.task_only for s in signatures):
        raise GeniusfileError(field, "an Airflow task argument, not a platform one; set it under 'operator'")
    known = frozenset().union(*(s.platform for s in signatures))
    raise GeniusfileError(field, f"unknown argument of {of}{did_you_mean(key, known)}")


def _taken(signature: OperatorArguments, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments ``signature``'s operator takes (a runner block's keys go to those that know them)."""
    return {key: value for key, value in arguments.items() if key in signature.accepted}


# ---------------------------------------------------------------------- rendering
def _render(geniusfile: Geniusfile) -> None:
    """Create the operators of ``geniusfile`` in the DAG or task group being defined."""
    check_platform_arguments(geniusfile, unused_runners=False)
    operators: dict[str, Any] = {}
    try:
        for entry in geniusfile.tasks:  # dependency order: upstream operators exist already
            operators[entry.name] = _operator(entry, geniusfile, operators)
            for upstream in entry.upstream:
                operators[upstream] >> operators[entry.name]
        for service in geniusfile.services:
            start = operators[service.name]
            stop = _stop_operator(service, geniusfile, start.task_id)
            for client in geniusfile.clients_of(service.name):
                operators[client.name] >> stop
            stop.as_teardown(setups=start)  # runs even when clients fail; start >> stop
    except GeniusfileError as exc:
        exc.source = geniusfile.source
        raise


def _templated_arguments(geniusfile: Geniusfile) -> bool:
    def templated(value: Any) -> bool:
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, Mapping):
            return any(templated(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(templated(v) for v in value)
        return False

    return any(templated([t.args, t.kwargs, t.map_kwargs or ()]) for t in geniusfile.tasks)


def _param(setting: ParamSettings) -> Param:
    if setting.has_default:
        return Param(setting.default, **setting.schema)
    return Param(**setting.schema)  # no default: the trigger form requires a value


def _operator(entry: TaskEntry, geniusfile: Geniusfile, operators: Mapping[str, Any]) -> Any:
    """The operator of a spout, bolt or service (a service's start task)."""
    kind = entry.kind
    cls = operator_class(entry.runner, kind, where=f"{entry.where}.runner")
    arguments: dict[str, Any] = {
        **_taken(operator_arguments(cls), geniusfile.platform_of(entry)),
        **_task_arguments(entry),
        "task_id": entry.name,
        "task_class": entry.class_path,
        "method": entry.method,
        **_state_arguments(entry),
    }
    if entry.args:  # what a hand-written DAG passes: nothing for no arguments
        arguments["method_args"] = _as_written(list(entry.args))
    if kind != "service":
        arguments["output_uri"] = entry.output_uri
    if entry.input_task:  # the id as rendered: prefixed inside a task group
        arguments["input_uri"] = upstream_output_template(operators[entry.input_task].task_id)
    elif entry.input_uri or kind == "bolt":
        arguments["input_uri"] = entry.input_uri
    if entry.service:
        arguments["service"] = operators[entry.service].task_id
    if entry.serves is not None:
        arguments.update(service_port=entry.serves.port, health_path=entry.serves.health_path)
        if entry.serves.ready_timeout_seconds is not None:
            arguments["ready_timeout"] = entry.serves.ready_timeout_seconds
        if entry.serves.start_timeout_seconds is not None:
            arguments["start_timeout"] = entry.serves.start_timeout_seconds
    if entry.model is not None:
        arguments.update(
            model_uri=entry.model.uri, model_name=entry.model.name, model_version=entry.model.version
        )
    if entry.map_kwargs is not None:
        return cls.partial(**arguments).expand(method_kwargs=[_as_written(dict(k)) for k in entry.map_kwargs])
    return cls(method_kwargs=_as_written(dict(entry.kwargs)), **arguments)


def _stop_operator(service: TaskEntry, geniusfile: Geniusfile, start_task_id: str) -> Any:
    """The stop task of ``service``: its runner's stop operator with the platform arguments it takes,
    the service's pool, queue and retries (not its ``operator`` overrides: a teardown's trigger rule is
    Airflow's)."""
    cls = operator_class(service.runner, "service_stop", where=f"{service.where}.runner")
    arguments = _taken(operator_arguments(cls), geniusfile.platform_of(service))
    for name, value in (("pool", service.pool), ("queue", service.queue), ("retries", service.retries)):
        if value is not None:
            arguments[name] = value
    return cls(task_id=service.stop_name, service=start_task_id, **arguments)


def _task_arguments(entry: TaskEntry) -> dict[str, Any]:
    """The Airflow task arguments of an entry: ``operator`` overrides, then its own keys."""
    arguments: dict[str, Any] = dict(entry.operator)
    if entry.retries is not None:
        arguments["retries"] = entry.retries
    if entry.retry_delay_seconds is not None:
        arguments["retry_delay"] = timedelta(seconds=entry.retry_delay_seconds)
    if entry.timeout_seconds is not None:
        arguments["execution_timeout"] = timedelta(seconds=entry.timeout_seconds)
    if entry.pool is not None:
        arguments["pool"] = entry.pool
    if entry.queue is not None:
        arguments["queue"] = entry.queue
    if entry.doc:
        arguments["doc_md"] = entry.doc
    return arguments


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


def _state_arguments(entry: TaskEntry) -> dict[str, Any]:
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
