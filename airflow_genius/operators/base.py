"""What every genius operator shares: its genius arguments, the TaskSpec built from them and the
Airflow context, the state hook, and turning the run record into the task's result.

Every runner — local or remote — mixes in :class:`GeniusOperatorMixin`; only the launch differs.
The mixin takes its keyword-only arguments and hands everything else to the official operator's
``__init__`` (cooperative ``super()``, no hand-split kwargs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_genius import config
from airflow_genius.core.defaults import DEFAULT_NAMESPACE, DEFAULT_PARTITION_SCHEME
from airflow_genius.core.state.base import RunRecord, Status

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.spec import TaskSpec
    from airflow_genius.core.state import StateManager
    from airflow_genius.core.task import Task
    from airflow_genius.hooks.state import GeniusStateHook
    from airflow_genius.operators.state_reach import RemoteReach

# Module-level imports stay light: DAG files import this module on every parse; the runtime, the spec
# builder and the hooks are imported when a task executes.

log = logging.getLogger(__name__)

#: The one templated attribute of every genius operator (besides the official operator's own): a dict
#: with the method's ``args``/``kwargs``, ``input_uri``, ``output_uri`` and ``model_version``. One field
#: rather than five because Airflow pays per templated field on every DAG parse and serialisation
#: (measured in bench/bench_dag_parse.py); it also shows as one block in "Rendered Template".
GENIUS_TEMPLATE_FIELDS: tuple[str, ...] = ("genius_call",)


#: XCom key under which an operator publishes its committed output partition (a URI).
OUTPUT_XCOM_KEY = "genius_output"


#: How many lines of a remote job's log a failure message quotes: the end of the log, where a crash
#: before ``genius run`` (``genius: command not found``, a missing module) leaves its cause.
LOG_TAIL_LINES = 12
#: Longest quoted log line (a line of JSON or a progress bar would otherwise fill the message).
LOG_TAIL_WIDTH = 500

#: What a runner hands :meth:`GeniusOperatorMixin.finish_remote` as the end of its job's log: the text,
#: or a callable read only when the message needs it (no round trip when the run record explains).
LogTail = str | Iterable[str] | Callable[[], "str | Iterable[str]"]


class GeniusTaskFailed(Exception):
    """The genius task ended FAILED or CANCELLED; the message carries the remote error type and text."""


def last_log_lines(log: LogTail | None, *, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of a remote job's log, each cut at :data:`LOG_TAIL_WIDTH`
    characters; "" when there is no log. ``log``: text, lines (e.g. CloudWatch messages), or a callable
    giving either. Reading the log is a courtesy: a callable that raises gives "(no log: …)" instead.

    >>> last_log_lines("starting\\n\\n/job.sh: line 9: genius: command not found\\n", lines=1)
    '/job.sh: line 9: genius: command not found'
    """
    if log is None:
        return ""
    try:
        text = log() if callable(log) else log
    except Exception as exc:  # the platform's failure is still reported; only the quote is missing
        return f"(no log: {type(exc).__name__}: {exc})"
    raw = (
        text.splitlines() if isinstance(text, str) else [part for item in text for part in item.splitlines()]
    )
    kept = [line.rstrip() for line in raw if line.strip()][-lines:]
    return "\n".join(line if len(line) <= LOG_TAIL_WIDTH else f"{line[:LOG_TAIL_WIDTH]}…" for line in kept)


def with_log_tail(message: str, log: LogTail | None, *, lines: int = LOG_TAIL_LINES) -> str:
    """``message`` plus "; last log lines:" and the end of the job's log (its last ``lines`` lines, see
    :func:`last_log_lines`), or ``message`` alone when there is no log.

    >>> with_log_tail("Slurm job 7 FAILED (exit code 127)", "x.sh: line 3: genius: command not found")
    'Slurm job 7 FAILED (exit code 127); last log lines:\\nx.sh: line 3: genius: command not found'
    """
    tail = last_log_lines(log, lines=lines)
    return f"{message}; last log lines:\n{tail}" if tail else message


def identity_from_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The run identity of a running task instance, as :func:`~airflow_genius.core.spec.build_spec`
    takes it (dag_id, task_id, run_id, map_index, try_number, logical_date).

    Airflow 3 runs may have no logical date (manual runs without one): the partition date then falls
    back to the run's ``run_after``.
    """
    ti = context["ti"]
    logical_date = context.get("logical_date")
    if logical_date is None:
        dag_run = context.get("dag_run")
        logical_date = getattr(dag_run, "run_after", None)
    map_index = getattr(ti, "map_index", -1)
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": -1 if map_index is None else int(map_index),
        "try_number": int(getattr(ti, "try_number", 1) or 1),
        "logical_date": logical_date,
    }


@dataclass(frozen=True)
class StateTarget:
    """A state store as runners need it: the URI (no password) and the secret environment."""

    uri: str
    secret_env: Mapping[str, str] = field(default_factory=dict)
    hook: GeniusStateHook | None = None

    def open(self) -> StateManager:
        """An open StateManager (the caller closes it); the same path ``genius run`` takes."""
        if self.hook is not None:
            return self.hook.open_state()
        from airflow_genius.core.state import open_state

        return open_state(self.uri)


class GeniusOperatorMixin(BaseOperator):
    """Genius arguments shared by every genius operator.

    Put it first among the bases: ``class GeniusEcsOperator(GeniusOperatorMixin, EcsRunTaskOperator)``.
    It derives from ``BaseOperator`` so Airflow's operator metaclass wraps its ``__init__`` (default_args,
    ``partial().expand()`` of genius arguments, XComArg dependencies of templated fields).

    Args:
        task_class: the task class, or its import path ``package.module:ClassName``.
        method: the method to call.
        method_args / method_kwargs: its arguments (JSON; templated).
        input_uri / output_uri: batch input folder and output root (templated).
        (The templated arguments are kept together in ``self.genius_call``.)
        partition_scheme: strftime pattern of output partitions.
        state_conn_id: a genius state connection (for stores with credentials).
        state_uri: a state store URI without credentials (e.g. ``sqlite:////shared/genius.db``).
            Neither given: ``[genius] state_conn_id``, else ``[genius] state_uri`` (embedded SQLite).
        state_namespace: namespace of task-scoped state (named so it never clashes with an official
            operator's own ``namespace``, e.g. KubernetesPodOperator's).
        model_uri / model_name / model_version: model to load before the call (version templated).
        max_records / max_seconds: window of a streaming run.
        unbounded / max_windows: a streaming run that processes successive windows until it is stopped
            (SIGTERM, e.g. a service stop task) or after ``max_windows`` reads (docs/streams.md).
        service: task id of a service operator (``operators/service.py``) this task is a client of: its
            ``SERVICE_NAME``, ``SERVICE_HOSTNAME``, ``SERVICE_PORT`` and ``SERVICE_URL`` are set in the
            task's environment.
    """

    genius_kind: str = "task"
    #: The service arguments of a service operator (``GeniusServiceMixin``); None for a job.
    genius_service: Mapping[str, Any] | None = None

    def __init__(
        self,
        *,
        task_class: type[Task] | str,
        method: str,
        method_args: Sequence[Any] | None = None,
        method_kwargs: Mapping[str, Any] | None = None,
        input_uri: str | None = None,
        output_uri: str | None = None,
        partition_scheme: str = DEFAULT_PARTITION_SCHEME,
        state_conn_id: str | None = None,
        state_uri: str | None = None,
        state_namespace: str = DEFAULT_NAMESPACE,
        model_uri: str | None = None,
        model_name: str | None = None,
        model_version: str = "latest",
        max_records: int | None = None,
        max_seconds: float | None = None,
        unbounded: bool = False,
        max_windows: int | None = None,
        service: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # A class is stored as its import path: that is what the TaskSpec (and a remote runtime) needs.
        self.task_class = (
            task_class
            if isinstance(task_class, str)
            else f"{task_class.__module__}:{task_class.__qualname__}"
        )
        self.method = method
        self.genius_call: dict[str, Any] = {
            "args": list(method_args or []),
            "kwargs": dict(method_kwargs or {}),
            "input_uri": input_uri,
            "output_uri": output_uri,
            "model_version": model_version,
        }
        self.partition_scheme = partition_scheme
        self.state_conn_id = state_conn_id
        self.state_uri = state_uri
        self.state_namespace = state_namespace
        self.model_uri = model_uri
        self.model_name = model_name
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.unbounded = unbounded
        self.max_windows = max_windows
        self.service = service
        self.refuse_secrets_in_uris()
        self.declare_assets()

    def refuse_secrets_in_uris(self) -> None:
        """Refuse a password (user info or query) in ``state_uri``, ``model_uri``, ``input_uri`` or
        ``output_uri`` when the DAG is parsed: a URI is rendered in the UI and travels in the TaskSpec.

        Raises :class:`~airflow_genius.core.errors.SpecError` (a ``ValueError``): one line naming the
        argument and the task, the URI redacted. Templates are checked as written; the rendered values
        are checked again when the TaskSpec is built.
        """
        from airflow_genius.core import uris

        call = self.genius_call
        arguments = {
            "state_uri": self.state_uri,
            "model_uri": self.model_uri,
            "input_uri": call["input_uri"],
            "output_uri": call["output_uri"],
        }
        for name, uri in arguments.items():
            if not isinstance(uri, str) or not uris.has_password(uri):
                continue
            from airflow_genius.core.spec import refuse_secret
            from airflow_genius.core.streams.base import STREAM_SCHEMES

            where = f"{name} of task {self.task_id!r}"
            if name == "state_uri":
                hint = (
                    f"{uris.STATE_CREDENTIALS_HINT} or keep it in a genius state connection (state_conn_id=)"
                )
                refuse_secret(uri, where, hint)
            elif name == "model_uri":
                refuse_secret(uri, where, uris.MODEL_CREDENTIALS_HINT, what="credentials")
            elif uris.split_uri(uri).scheme.lower() in STREAM_SCHEMES:
                refuse_secret(uri, where, uris.STATE_CREDENTIALS_HINT)
            refuse_secret(uri, where, uris.DATA_CREDENTIALS_HINT, what="credentials")

    # ------------------------------------------------------------------ assets and lineage
    def declare_assets(self) -> None:
        """Declare the output root as an outlet Asset and a plain input root as an inlet, beside the
        ``inlets``/``outlets`` given (docs/lineage.md). A templated ``output_uri`` declares the AssetAlias
        ``genius-output:<dag_id>.<task_id>`` instead: Airflow needs outlets when the DAG is parsed. With a
        ``model_uri``, the model named by ``model_name`` is an inlet; without ``model_name`` the task
        declares the AssetAlias ``genius-model:<dag_id>.<task_id>`` for the versions it saves."""
        from airflow_genius.operators.lineage import declared_assets

        if getattr(self, "_BaseOperator__from_mapped", False):
            # One instance of a mapped task, built when it runs: its inlets and outlets are the mapped
            # operator's, declared at parse time (partial() below); an Asset added now would be unknown.
            return
        dag = self.get_dag()
        inlets, outlets = declared_assets(
            self.genius_call["input_uri"],
            self.genius_call["output_uri"],
            dag_id=dag.dag_id if dag is not None else None,
            task_id=self.task_id,
            model_uri=self.model_uri,
            model_name=self.model_name,
        )
        self.inlets.extend(asset for asset in inlets if asset not in self.inlets)
        self.outlets.extend(asset for asset in outlets if asset not in self.outlets)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """``BaseOperator.partial``, whose ``expand()`` / ``expand_kwargs()`` also declare the mapped
        task's Assets: its output root (the AssetAlias ``genius-output:<dag_id>.<task_id>`` when each
        instance gets its own ``output_uri`` from the expansion) and a plain input root (docs/lineage.md)::

            # outlet AssetAlias("genius-output:<dag_id>.fetch"); each commit's event goes to /d/a or /d/b
            GeniusSpoutOperator.partial(task_id="fetch", ...).expand(output_uri=["/d/a", "/d/b"])
        """
        from airflow_genius.operators.lineage import genius_partial_class

        partial = super().partial(**kwargs)
        partial.__class__ = genius_partial_class()
        return partial

    def genius_remote_job_id(self) -> str | None:
        """The remote job this task instance ran as (pod name, ECS task ARN, Batch job id, Slurm job id,
        Docker container); None in the worker. Each remote runner overrides it in one line."""
        return None

    def emit_asset_event(self, context: Context, record: RunRecord) -> None:
        """The committed run's asset event: its ``extra`` holds the run identity, the partition URI, the
        file count and the manifest digest (on the output root's Asset, or through the AssetAlias when
        ``output_uri`` was templated). Kept for the OpenLineage facets of this task instance too."""
        from airflow.sdk import Asset, AssetAlias

        from airflow_genius.core.uris import OUTPUT_ALIAS_PREFIX
        from airflow_genius.operators.lineage import (
            asset_uri,
            commit_extra,
            is_stream,
            read_committed_manifest,
            runner_name,
        )

        location = record.metrics.get("output_location")
        manifest = None
        if isinstance(location, str) and asset_uri(location) is not None and not is_stream(location):
            manifest = read_committed_manifest(location)
        extra = commit_extra(
            record,
            runner=runner_name(type(self)),
            remote_job_id=self.genius_remote_job_id(),
            manifest=manifest,
        )
        self.genius_commit = extra
        root = asset_uri(self.genius_call["output_uri"])  # rendered by now
        events = context.get("outlet_events")
        if root is None or events is None:
            return
        for outlet in self.outlets:
            if isinstance(outlet, Asset) and outlet.uri == Asset(root).uri:
                events[outlet].extra.update(extra)
            elif isinstance(outlet, AssetAlias) and outlet.name.startswith(OUTPUT_ALIAS_PREFIX):
                events[outlet].add(Asset(root), extra=extra)

    def emit_model_events(self, context: Context, record: RunRecord) -> None:
        """One asset event for each model version the run saved (its ``models_saved`` metric): on the
        model's Asset (``<model store URI>/<name>``), with the name, version, content digest, store and
        run in its ``extra``. It goes on that Asset when the task declares it as an outlet (one event per
        Asset), else through the ``genius-model:<dag_id>.<task_id>`` alias; a version neither reaches is
        named in the task log. Kept for the OpenLineage facets of this task instance too."""
        from airflow.sdk import Asset, AssetAlias

        from airflow_genius.operators.lineage import MODEL_ALIAS_PREFIX, model_events, runner_name

        events = model_events(record, runner=runner_name(type(self)))
        self.genius_models = events
        outlet_events = context.get("outlet_events")
        if not events or outlet_events is None:
            return
        alias = next(
            (o for o in self.outlets if isinstance(o, AssetAlias) and o.name.startswith(MODEL_ALIAS_PREFIX)),
            None,
        )
        declared = {o.uri: o for o in self.outlets if isinstance(o, Asset)}
        for uri, extra in events:
            asset = Asset(uri)
            if (outlet := declared.pop(asset.uri, None)) is not None:
                outlet_events[outlet].extra.update(extra)
            elif alias is not None:
                outlet_events[alias].add(asset, extra=extra)
            else:
                self.log.warning(
                    "model %s %s was saved, but this task declares neither Asset(%r) nor a model alias "
                    "among its outlets (it names model_name=): no asset event for it",
                    extra["name"],
                    extra["version"],
                    asset.uri,
                )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): input and output datasets and the ``genius``
        run facet (runner, remote job id, task class and method, the commit)."""
        from airflow.sdk import Asset

        from airflow_genius.operators.lineage import (
            asset_uri,
            model_asset_uri,
            operator_lineage,
            runner_name,
            upstream_root,
        )

        call = self.genius_call  # rendered by now
        declared = {inlet.uri for inlet in self.inlets if isinstance(inlet, Asset)}
        # An input rendered from a template (an upstream's partition) is named by its upstream's root.
        upstream = None if asset_uri(call["input_uri"]) in declared else upstream_root(call["input_uri"])
        return operator_lineage(
            input_uri=call["input_uri"],
            output_uri=call["output_uri"],
            runner=runner_name(type(self)),
            remote_job_id=self.genius_remote_job_id(),
            task_class=self.task_class,
            method=self.method,
            kind=self.genius_kind,
            commit=getattr(self, "genius_commit", None),
            input_root=upstream,
            model_input=model_asset_uri(self.model_uri, self.model_name),
            models=getattr(self, "genius_models", ()),
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """As :meth:`get_openlineage_facets_on_complete`; a failed run committed nothing."""
        return self.get_openlineage_facets_on_complete(task_instance)

    # ------------------------------------------------------------------ state
    def genius_state(self) -> StateTarget:
        """Where this task's run records live: ``state_conn_id``, else ``state_uri``, else
        ``[genius] state_conn_id``, else ``[genius] state_uri`` (the embedded SQLite store)."""
        from airflow_genius.hooks.state import state_hook

        if self.state_uri and not self.state_conn_id:
            return StateTarget(uri=self.state_uri)
        conn_id = self.state_conn_id or config.get("state_conn_id")
        if not conn_id:
            return StateTarget(uri=config.get("state_uri"))
        hook = state_hook(conn_id)
        return StateTarget(uri=hook.state_uri, secret_env=hook.secret_env, hook=hook)

    # ------------------------------------------------------------------ spec and result
    def build_task_spec(
        self, context: Context, *, state_uri: str, remote: RemoteReach | None = None
    ) -> TaskSpec:
        """The TaskSpec of this task instance (rendered arguments + identity from the context).

        ``remote``: where the job runs when that is not this worker (every remote runner passes it). Its
        state store must then be reachable from there, else
        :class:`~airflow_genius.operators.state_reach.StateNotReachable` is raised before anything is
        launched (an embedded SQLite file outside a shared mount, ``memory://``; docs/state.md).
        """
        from airflow_genius.core.spec import build_spec

        if remote is not None:
            from airflow_genius.operators.state_reach import check_state_reach

            check_state_reach(state_uri, remote)
        call = self.genius_call  # rendered by now
        return build_spec(
            self.task_class,
            self.method,
            args=call["args"],
            kwargs=call["kwargs"],
            kind=self.genius_kind,
            input_uri=call["input_uri"],
            output_uri=call["output_uri"],
            partition_scheme=self.partition_scheme,
            state_uri=state_uri,
            namespace=self.state_namespace,
            model_uri=self.model_uri,
            model_name=self.model_name,
            model_version=call["model_version"],
            **identity_from_context(context),
            max_records=self.max_records,
            max_seconds=self.max_seconds,
            unbounded=self.unbounded,
            max_windows=self.max_windows,
            **(self.genius_service or {}),
        )

    def service_env(self, context: Context) -> dict[str, str]:
        """A client's ``SERVICE_*`` environment from the service task's XCom ({} without ``service``)."""
        from airflow_genius.operators.service import published_env

        return published_env(context, self.service)

    def publish_output(self, context: Context, record: RunRecord) -> None:
        """Push the committed output location (XCom ``genius_output`` + the extra link), if any, and emit
        the asset events of the output and of the model versions saved."""
        location = record.metrics.get("output_location")
        if record.status is Status.SUCCESS and location:
            from airflow_genius.links.output import GeniusOutputLink

            self.log.info("output committed at %s", location)
            # Downstream bolts read it with input_uri="{{ ti.xcom_pull('<task>', key='genius_output') }}"
            context["ti"].xcom_push(key=OUTPUT_XCOM_KEY, value=location)
            GeniusOutputLink.persist(context, location)
            self.emit_asset_event(context, record)
        if record.status is Status.SUCCESS:  # a training task may save models and have no output
            self.emit_model_events(context, record)

    def finish_remote(
        self, context: Context, *, failure: str | None = None, log_tail: LogTail | None = None
    ) -> Any:
        """After a remote job ended, its run record decides (docs/architecture.md#the-run-record-decides): the result, or the task's own
        error. ``failure`` is what the platform says went wrong (None: the job exited cleanly, with its
        exit code where the platform gives one); it fails the task even if the record looks fine, and is
        combined with the record's error when there is one. ``log_tail`` is the end of the job's log
        (:data:`LogTail`): when the record cannot say what happened (missing, or never finished — the
        job died before or inside ``genius run``), its last lines are quoted in the error.
        """
        from airflow_genius.core.state.base import RunKey
        from airflow_genius.core.uris import redact

        who = identity_from_context(context)
        key = RunKey(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])
        target = self.genius_state()
        with target.open() as state:
            record = state.get_run(key)
        if failure is not None:
            if record is not None and record.status is Status.FAILED and record.error:
                error = _log_traceback(record)
                raise GeniusTaskFailed(
                    f"{error.get('type', 'Error')}: {error.get('message', '')} ({failure})"
                )
            if record is not None and not record.status.terminal:
                # `genius run` exits 4 when the state store stayed unreachable: the outcome then waits in
                # the work folder's spool and the next try applies it (docs/state.md#faults).
                raise GeniusTaskFailed(
                    with_log_tail(
                        f"{failure} (run record: {record.status.value}): the job ended without finishing "
                        f"its run record (try {record.try_number}); exit code 4 means the state store was "
                        "unreachable and the outcome waits in the job's spool for the next try",
                        log_tail,
                    )
                )
            status = record.status.value if record else "missing"
            raise GeniusTaskFailed(with_log_tail(f"{failure} (run record: {status})", log_tail))
        if record is None:
            raise GeniusTaskFailed(
                with_log_tail(
                    f"the remote job ended but left no run record for {key} in {redact(target.uri)}: "
                    "did it reach `genius run`, and can it reach that state store?",
                    log_tail,
                )
            )
        if not record.status.terminal:  # the job exited cleanly (or its platform says so) mid-run
            raise GeniusTaskFailed(
                with_log_tail(
                    f"genius task {record.key} ended without a result (status {record.status.value})",
                    log_tail,
                )
            )
        self.publish_output(context, record)
        return self.result_from_record(record)

    def result_from_record(self, record: RunRecord) -> Any:
        """SUCCESS → the result (the XCom); FAILED/CANCELLED → raise with the task's own error."""
        if record.status is Status.SUCCESS:
            return record.result
        error = _log_traceback(record)
        if record.status is Status.CANCELLED:
            raise GeniusTaskFailed(f"genius task {record.key} was cancelled")
        if record.status is Status.FAILED:
            raise GeniusTaskFailed(f"{error.get('type', 'Error')}: {error.get('message', '')}")
        raise GeniusTaskFailed(
            f"genius task {record.key} ended without a result (status {record.status.value})"
        )


def task_state_get(context: Mapping[str, Any], key: str) -> Any:
    """A value an earlier try of this task instance kept in Airflow's ``task_state_store`` (3.3+), e.g. a
    remote job id to reattach to; None when there is none or no store (older Airflow, a direct call)."""
    store = context.get("task_state_store")
    if store is None:
        return None
    try:
        return store.get(key)
    except Exception:  # no supervisor to ask: the runners fall back to finding the job by name
        return None


def task_state_set(context: Mapping[str, Any], key: str, value: Any) -> None:
    """Keep ``value`` for later tries of this task instance (best effort, see :func:`task_state_get`)."""
    store = context.get("task_state_store")
    if store is None:
        return
    try:
        store.set(key, value)
    except Exception:  # reattach by the job's deterministic name still works
        return


def _log_traceback(record: RunRecord) -> dict[str, Any]:
    """Put the task's own traceback into the Airflow task log; returns the record's error dict."""
    error = record.error or {}
    if error.get("traceback"):
        log.error("genius task %s failed; its traceback:\n%s", record.key, error["traceback"])
    return error
