"""The runtime: execute one TaskSpec and record its lifecycle. ``genius run`` and the local
operators both call :func:`run_spec`; nothing else runs a task.

>>> from airflow_genius.core.spec import build_spec
>>> spec = build_spec("airflow_genius.examples.tasks:Echo", "say", args=["hi"],
...                   dag_id="doc", task_id="echo", run_id="r1", state_uri="memory://")
>>> run_spec(spec).result
'hi'

Lifecycle: the record moves to RUNNING (a conflict means this try already runs elsewhere), input is
synced, the method runs with a heartbeat, output is committed, and the record ends SUCCESS with the
JSON result, FAILED with error type/message/traceback, or CANCELLED on SIGTERM/SIGINT.

A platform that starts the same try again (a Slurm job requeued or restarted after a node failure)
says so with ``GENIUS_ATTEMPT`` (:data:`ATTEMPT_ENV`, 1 for the first restart): that attempt takes the
try over from the one it stopped (:meth:`~airflow_genius.core.state.StateManager.start_attempt`), and
the record lists every attempt. Without it (or with 0) a run is the try's only attempt.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from airflow_genius.core.discovery import load_task_class
from airflow_genius.core.errors import RunCancelled, SpecError, TaskCallError
from airflow_genius.core.paths import safe_segment
from airflow_genius.core.service import (
    SERVICE_NAME_ENV,
    SERVICE_PORT_ENV,
    ReadinessWatch,
    ServiceInfo,
    advertised_host,
)
from airflow_genius.core.spec import DataRef, TaskSpec
from airflow_genius.core.spool import Spool, SpooledOutcome
from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status, TaskScope, open_state
from airflow_genius.core.state.faults import StoreUnavailable
from airflow_genius.core.state.scoped import ScopedState
from airflow_genius.core.state.values import check_storable, storable_metrics
from airflow_genius.core.streams import StreamingInput, StreamingOutput, open_stream_log
from airflow_genius.core.streams.io import DEFAULT_FLUSH_EVERY
from airflow_genius.core.streams.unbounded import run_unbounded
from airflow_genius.core.streams.window import DEFAULT_READ_BATCH, StreamWindow
from airflow_genius.core.task import Task, bound_method
from airflow_genius.core.uris import redact

if TYPE_CHECKING:  # imported where used: a run loads only the managers its spec names
    from airflow_genius.core.data import BatchInput, BatchOutput

log = logging.getLogger("airflow_genius.runtime")

#: Seconds between heartbeats while the method runs (env ``GENIUS_HEARTBEAT_SECONDS``).
DEFAULT_HEARTBEAT_SECONDS = 30.0
#: How a platform that restarted the same try says which attempt this is (0: the first; no variable: 0).
ATTEMPT_ENV = "GENIUS_ATTEMPT"
#: Where input from S3 is mirrored and local output is staged (env ``GENIUS_WORK_DIR``).
DEFAULT_WORK_DIR = ".genius/work"


class OutcomeSpooled(StoreUnavailable):
    """The run finished but the state store stayed unavailable: its outcome waits in the spool."""

    def __init__(self, message: str, *, path: Path, status: Status) -> None:
        super().__init__(message)
        self.path = path
        self.status = status


class _CancelGate:
    """Where a SIGTERM/SIGINT may interrupt a run: only inside the task's own code.

    Elsewhere (opening the store, the record's transitions, the output commit) the signal is noted and
    acted on at the next safe point, so a cancelled run always ends with its record written — CANCELLED,
    or SUCCESS when the method had already returned — and never with a half-written store call.
    """

    def __init__(self) -> None:
        self.armed = 0
        self.pending: str | None = None

    def signal(self, name: str) -> None:
        if self.armed:
            raise RunCancelled(f"received {name}")
        self.pending = name

    def stop_if_signalled(self) -> None:
        """A safe point: raise :class:`RunCancelled` if a signal came since the last one."""
        if self.pending:
            raise RunCancelled(f"received {self.pending}")

    @contextmanager
    def open(self) -> Iterator[None]:
        """Let a signal interrupt the block (raises at once if one came before)."""
        self.stop_if_signalled()
        self.armed += 1
        try:
            yield
        finally:
            self.armed -= 1


_GATE = _CancelGate()


@dataclass(frozen=True)
class RunOutcome:
    """What a run ended with: the final record, and its status/result/error for convenience."""

    record: RunRecord
    #: The exception that ended the run, in this process only (not stored); None on success.
    exception: BaseException | None = None

    @property
    def status(self) -> Status:
        return self.record.status

    @property
    def result(self) -> Any:
        return self.record.result

    @property
    def error(self) -> dict[str, Any] | None:
        return self.record.error

    @property
    def ok(self) -> bool:
        return self.record.status is Status.SUCCESS


def run_key(spec: TaskSpec) -> RunKey:
    """The run record key of a spec."""
    return RunKey(spec.run.dag_id, spec.run.task_id, spec.run.run_id, spec.run.map_index)


def task_scope(spec: TaskSpec) -> TaskScope:
    """The owner of the spec's task-scoped state."""
    return TaskScope(spec.state.namespace, spec.run.dag_id, spec.run.task_id)


def run_spec(
    spec: TaskSpec,
    *,
    state: StateManager | None = None,
    env: Mapping[str, str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> RunOutcome:
    """Run ``spec`` to its end and return the outcome; the task's own failure does not raise.

    Raises :class:`~airflow_genius.core.state.faults.StoreUnavailable` when the state store cannot be
    reached within its fault budget — before anything ran, or (:class:`OutcomeSpooled`) after the run,
    whose outcome then waits in ``<work_dir>/spool`` for the next try — and
    :class:`~airflow_genius.core.errors.TransitionConflict` when this try already runs elsewhere.
    """
    source_env = os.environ if env is None else env
    work = Path(work_dir or source_env.get("GENIUS_WORK_DIR", DEFAULT_WORK_DIR))
    owns_state = state is None
    manager = state if state is not None else open_state(spec.state.uri, source_env)
    try:
        spool = Spool.in_work_dir(work)
        completed = spool.apply(manager, run_key(spec))
        if completed is not None and completed.status is Status.SUCCESS:
            # An earlier try succeeded and only its final write was missing: do not run it again.
            log.info("run %s: completed from the outcome spool (try %d)", completed.key, completed.try_number)
            return RunOutcome(completed)
        attempt = attempt_number(source_env)
        if attempt:
            record = manager.get_run(run_key(spec))
            if (
                record is not None
                and record.try_number == spec.run.try_number
                and record.status is Status.SUCCESS
            ):
                # the platform restarted a job whose try had already succeeded: nothing to run again
                log.info(
                    "run %s try %d attempt %d: the try already succeeded",
                    record.key,
                    record.try_number,
                    attempt,
                )
                return RunOutcome(record)
        return _run(spec, manager, source_env, work, spool, attempt)
    finally:
        if owns_state:
            manager.close()


def attempt_number(env: Mapping[str, str]) -> int:
    """The attempt :data:`ATTEMPT_ENV` names (0 when unset or empty).

    >>> attempt_number({}), attempt_number({"GENIUS_ATTEMPT": "2"})
    (0, 2)
    """
    text = (env.get(ATTEMPT_ENV) or "0").strip()
    if not (text.isascii() and text.isdigit()):
        raise SpecError(ATTEMPT_ENV, "expected an integer >= 0", got=text)
    return int(text)


def _run(
    spec: TaskSpec, state: StateManager, env: Mapping[str, str], work_dir: Path, spool: Spool, attempt: int
) -> RunOutcome:
    key = run_key(spec)
    try_number = spec.run.try_number
    if attempt:
        state.start_attempt(key, try_number=try_number, attempt=attempt, info=_run_info(spec))
    else:
        state.start_run(key, try_number=try_number, info=_run_info(spec))
    log.info(
        "run %s try %d%s started: %s.%s",
        key,
        try_number,
        f" attempt {attempt}" if attempt else "",
        spec.task.class_path,
        spec.task.method,
    )
    started = time.monotonic()
    task: Task | None = None
    window: StreamWindow | None = None
    failure: BaseException | None = None
    status, result, message = Status.SUCCESS, None, None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = {}
    service = _start_service(spec, state)
    try:
        with _heartbeat(
            state, key, try_number, float(env.get("GENIUS_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))
        ):
            with _GATE.open():  # input sync and model loading may take long: a signal stops them
                task, window = _build_task(spec, state, work_dir, env=env)
            method = bound_method(task, spec.task.method)
            call_args = _bind(method, spec)

            def call() -> Any:
                with _GATE.open():
                    return method(*call_args.args, **call_args.kwargs)

            result, metrics = _execute(spec, task, window, call, started)
    except RunCancelled as exc:
        _abort_output(task)
        metrics = storable_metrics(_collect_metrics(task, started))
        if service is not None:  # a service's normal end: stopped by its platform (core/service.py)
            status, message = Status.SUCCESS, str(exc) or "stopped"
            result = {
                "service": service.info.name,
                "stopped": message,
                "served_seconds": metrics["duration_seconds"],
                "ready": service.ready,
            }
        else:
            failure = exc
            status, message = Status.CANCELLED, str(exc) or "cancelled"
    except Exception as exc:
        failure = exc
        _abort_output(task)
        status, error = Status.FAILED, error_of(exc)
        # A failure is recorded whatever the task logged: a metric JSON cannot hold is kept as its text.
        metrics = storable_metrics(_collect_metrics(task, started))
    finally:
        if service is not None:
            service.stop()
    _close_managers(task)
    record = _finish(
        state,
        spool,
        spec,
        status,
        result=result,
        error=error,
        metrics=metrics,
        message=message,
        attempt=attempt,
    )
    if status is Status.SUCCESS:
        log.info("run %s try %d succeeded in %.2fs", key, try_number, time.monotonic() - started)
    elif status is Status.CANCELLED:
        log.warning("run %s try %d cancelled: %s", key, try_number, message)
    else:
        log.error("run %s try %d failed: %s: %s", key, try_number, (error or {}).get("type", ""), failure)
    return RunOutcome(record, failure)


def _start_service(spec: TaskSpec, state: StateManager) -> ReadinessWatch | None:
    """For a service run: its environment, where it listens (in the record), and the readiness watch."""
    if spec.service is None:
        return None
    info = ServiceInfo(
        name=spec.service.name or spec.run.task_id,
        hostname=advertised_host(),
        port=spec.service.port,
        health_path=spec.service.health_path,
    )
    # The method (and what it starts) listens where the platform routes clients to.
    os.environ[SERVICE_PORT_ENV] = str(info.port)
    os.environ[SERVICE_NAME_ENV] = info.name
    key = run_key(spec)
    record = state.update_run(key, info={"service": info.to_dict()})

    def report(update: dict[str, Any]) -> None:
        current = (state.get_run(key) or record).info.get("service") or {}
        state.update_run(key, info={"service": {**current, **update}})

    watch = ReadinessWatch(info, timeout=spec.service.ready_timeout, report=report)
    watch.start()
    return watch


def _finish(
    state: StateManager,
    spool: Spool,
    spec: TaskSpec,
    status: Status,
    *,
    result: Any,
    error: dict[str, Any] | None,
    metrics: dict[str, Any],
    message: str | None,
    attempt: int = 0,
) -> RunRecord:
    """The run's final write; when the store stays unavailable, the outcome goes to the spool. An attempt
    that a later one took over (its platform restarted the try meanwhile) gets a TransitionConflict."""
    key = run_key(spec)
    try:
        return state.finish_run(
            key,
            status,
            try_number=spec.run.try_number,
            result=result,
            error=error,
            metrics=metrics,
            message=message,
            attempt=attempt,
        )
    except StoreUnavailable as exc:
        outcome = SpooledOutcome(
            key, spec.run.try_number, status, spec.state.uri, result, error, metrics, message
        )
        path = spool.put(outcome)
        raise OutcomeSpooled(
            f"{exc}; the run ended {status.value} and its outcome is kept in {path}: the next try applies "
            "it, or `genius state apply-spool`",
            path=path,
            status=status,
        ) from exc


def _execute(
    spec: TaskSpec, task: Task, window: StreamWindow | None, call: Any, started: float
) -> tuple[Any, dict[str, Any]]:
    """Call the method and make its output durable: per window for streams, one commit for batch."""
    if window is not None and spec.window is not None and spec.window.unbounded:
        # Successive windows until SIGTERM/SIGINT or max_windows (docs/streams.md).
        result, loop_metrics = run_unbounded(
            task,
            call,
            window=window,
            max_windows=spec.window.max_windows,
            check_result=lambda value: check_storable(value, "result"),
            stop_if_signalled=_GATE.stop_if_signalled,
        )
        metrics = {**_collect_metrics(task, started), **loop_metrics}
    else:
        result = call()
        metrics = _collect_metrics(task, started)
        # Refused before anything is committed: no output published under a record that cannot be written.
        check_storable(result, "result")
        check_storable(metrics, "metrics")
        if window is not None and isinstance(task.input, StreamingInput):
            # Stream input: flush output, ack, checkpoint — in that order (docs/streams.md).
            metrics.update(window.commit(task.input, task.output))
        elif task.output is not None:
            manifest = task.output.commit()
            if manifest is not None:
                metrics["output_files"] = len(manifest.files)
    if task.output is not None:
        metrics["output_location"] = task.output.location
    return result, metrics


def _close_managers(task: Task | None) -> None:
    """Release what the task's managers hold (model caches, connections)."""
    if task is None:
        return
    for name, manager in (("input", task.input), ("output", task.output), ("model", task.model)):
        close = getattr(manager, "close", None)  # streams and model managers hold connections/caches
        if close is not None:
            try:
                close()
            except Exception:
                log.warning("could not close the %s manager", name, exc_info=True)


def error_of(exc: BaseException) -> dict[str, Any]:
    """The run record's ``error``: type (qualified), message and formatted traceback."""
    kind = type(exc)
    qualified = (
        kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    )
    return {
        "type": qualified,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(kind, exc, exc.__traceback__)),
    }


def _run_info(spec: TaskSpec) -> dict[str, Any]:
    return {
        "task": spec.task.class_path,
        "method": spec.task.method,
        "kind": spec.kind,
        "logical_date": spec.run.logical_date,
        "input": redact(spec.input.uri) if spec.input else None,
        "output": redact(spec.output.uri) if spec.output else None,
        "pid": os.getpid(),
    }


def _build_task(
    spec: TaskSpec, state: StateManager, work_dir: Path, *, env: Mapping[str, str] | None = None
) -> tuple[Task, StreamWindow | None]:
    """The task instance with its managers, and the window of its stream input (None without one)."""
    cls = _task_class(spec)
    window = _stream_window(spec, state, env) if _is_stream(spec.input) else None
    source = _stream_input(spec, window) if window is not None else _batch_input(spec, work_dir)
    managers: dict[str, Any] = {
        "state": ScopedState(state, task_scope(spec)),
        "identity": spec.run,
        "input": source,
        "output": _output(spec, source, window, env),
        **_model_managers(spec, work_dir),
    }
    return _instantiate(cls, spec, {k: v for k, v in managers.items() if v is not None}), window


def _task_class(spec: TaskSpec) -> type[Task]:
    """The spec's task class, checked against the kind the spec runs it as."""
    cls = load_task_class(spec.task.class_path)
    if spec.kind != "task" and cls.kind not in (spec.kind, "task"):
        raise SpecError(
            "kind", f"{spec.task.class_path} is a {cls.kind}, but the spec runs it as a {spec.kind}"
        )
    return cls


def _is_stream(section: DataRef | None) -> bool:
    return section is not None and section.type == "stream"


def _batch_input(spec: TaskSpec, work_dir: Path) -> BatchInput | None:
    """The batch input of the spec (None without an input); files from S3 are mirrored under the work dir."""
    if spec.input is None:
        return None
    from airflow_genius.core.data import BatchInput

    return BatchInput(spec.input.uri, cache_dir=work_dir / "input-cache")


def _output(
    spec: TaskSpec,
    source: BatchInput | StreamingInput | None,
    window: StreamWindow | None,
    env: Mapping[str, str] | None,
) -> BatchOutput | StreamingOutput | None:
    """The spec's output manager: a stream output or this run's batch partition (None without one)."""
    if spec.output is None:
        return None
    if _is_stream(spec.output):
        sink = open_stream_log(spec.output.uri, env)
        return StreamingOutput(
            sink,
            flush_every=sink.address.flush_every or DEFAULT_FLUSH_EVERY,
            # Dedup scope = the window's origin (a replayed window keeps the run that first read it).
            scope=window.origin if window is not None else str(run_key(spec)),
            source=source if isinstance(source, StreamingInput) else None,
        )
    from airflow_genius.core.data import BatchOutput, PartitionKey

    run = spec.run
    partition = PartitionKey(run.dag_id, run.task_id, run.run_id, run.map_index, run.logical_datetime)
    return BatchOutput(spec.output.uri, partition=partition, scheme=spec.output.partition_scheme)


def _model_managers(spec: TaskSpec, work_dir: Path) -> dict[str, Any]:
    """``model`` (the model manager) and, when the spec names a model, ``model_path`` (loaded)."""
    if spec.model is None:
        return {}
    from airflow_genius.core.models import open_model_manager

    manager = open_model_manager(spec.model.uri)
    if not spec.model.name:
        return {"model": manager}
    # One folder per run under the work dir, replaced on a retry: nothing piles up in /tmp.
    dest = work_dir / "models" / safe_segment(str(run_key(spec))) / spec.model.name
    shutil.rmtree(dest, ignore_errors=True)
    return {"model": manager, "model_path": manager.load(spec.model.name, spec.model.version, dest=dest)}


def _instantiate(cls: type[Task], spec: TaskSpec, managers: dict[str, Any]) -> Task:
    try:
        return cls(**managers)
    except TypeError as exc:
        raise TaskCallError(
            f"{spec.task.class_path}.__init__ must accept the genius keyword arguments "
            f"(input, output, state, model, model_path, identity) and pass them to super().__init__: {exc}"
        ) from exc


def _stream_window(spec: TaskSpec, state: StateManager, env: Mapping[str, str] | None) -> StreamWindow:
    """The reader of the spec's stream input (its group and consumer), not yet opened."""
    assert spec.input is not None
    stream = open_stream_log(spec.input.uri, env, need_group=True)
    address = stream.address  # parameters already checked and typed by parse_stream_uri
    return StreamWindow(
        state,
        task_scope(spec),
        run_key(spec),
        stream,
        group=address.group or "",
        consumer=address.consumer or f"{spec.run.dag_id}.{spec.run.task_id}.{spec.run.map_index}",
        bounds=spec.window,
        claim_idle_ms=None if address.claim_idle is None else int(address.claim_idle * 1000),
        read_batch=address.batch or DEFAULT_READ_BATCH,
    )


def _stream_input(spec: TaskSpec, window: StreamWindow) -> StreamingInput:
    """This run's window of the stream input; its bounds are in the run record when this returns."""
    if spec.window is not None and spec.window.unbounded:
        return window.empty_input()  # the loop opens each window (streams/unbounded.py)
    return window.open()


def _bind(method: Any, spec: TaskSpec) -> inspect.BoundArguments:
    signature = inspect.signature(method)
    try:
        return signature.bind(*spec.task.args, **spec.task.kwargs)
    except TypeError as exc:
        raise TaskCallError(
            f"{spec.task.class_path}.{spec.task.method}{signature} cannot take "
            f"args={list(spec.task.args)!r} kwargs={spec.task.kwargs!r}: {exc}"
        ) from None


def _collect_metrics(task: Task | None, started: float) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(task.metrics) if task is not None else {}
    metrics["duration_seconds"] = round(time.monotonic() - started, 6)
    source = task.input if task is not None else None
    if source is not None and not isinstance(source, StreamingInput) and source.last_sync is not None:
        sync = source.last_sync  # a batch input's download of its files
        metrics["input_downloaded"] = sync.downloaded
        metrics["input_skipped"] = sync.skipped
    return metrics


def _abort_output(task: Task | None) -> None:
    if task is not None and task.output is not None:
        try:
            task.output.abort()
        except Exception:  # the run's own error matters more than a failed cleanup
            log.exception("could not clean the output staging folder")


@contextmanager
def _heartbeat(state: StateManager, key: RunKey, try_number: int, every: float) -> Iterator[None]:
    """Stamp ``heartbeat_at`` from a daemon thread while the method runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                if state.heartbeat(key, try_number=try_number) is None:
                    return
            except Exception as exc:  # a missed heartbeat must not kill the run; one line, no traceback
                log.warning("heartbeat for %s failed: %s", key, exc)

    thread = threading.Thread(target=beat, name=f"genius-heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def cancel_on_signals(*signals: int) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into a cancellation of the run (main thread only).

    The task's own code is interrupted with :class:`RunCancelled`; a signal that arrives while the store
    is opened, a transition is written or output is committed takes effect at the next safe point.
    """
    wanted = signals or (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        _GATE.signal(signal.Signals(signum).name)

    _GATE.pending = None
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _GATE.pending = None
