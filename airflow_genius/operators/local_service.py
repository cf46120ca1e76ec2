"""Run a genius service on the worker itself: a detached ``genius run`` that keeps serving after its start
task succeeded, and the teardown that stops it.

.. code-block:: python

    from airflow_genius.operators.local import GeniusTaskOperator
    from airflow_genius.operators.local_service import (
        GeniusLocalServiceOperator,
        GeniusLocalServiceStopOperator,
    )

    start = GeniusLocalServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=8000,          # $SERVICE_PORT of the process, on the worker's interfaces
        ready_timeout=60,
    )
    ask = GeniusTaskOperator.partial(
        task_id="ask", service="start_echo",                # SERVICE_URL etc. while each client runs
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call",
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusLocalServiceStopOperator(task_id="stop_echo", service="start_echo")
    start >> ask >> stop.as_teardown(setups=start)

**Start.** :class:`GeniusLocalServiceOperator` builds the TaskSpec as every genius operator does (with a
``service`` section) and starts ``python -m airflow_genius.core.cli run --spec-env GENIUS_TASK_SPEC`` with
the worker's own interpreter, as a child in a session and process group of its own (so the worker's end
does not take it along), its output in ``<work_dir>/services/<dag>/<run>/<task>/service.log``. It waits
until the run record says the service answered its health path and returns the published dict —
``name``, ``hostname``, ``port``, ``url``, ``health_path``, ``ready_at``… plus ``process``: ``{"pid",
"host", "started", "log"}``. A service that ends or is not ready in time is stopped and fails the task
with the tail of its log; ``on_kill`` stops it.

**Finding it again.** Right after the launch, ``process`` is pushed as the XCom ``genius_local_process``
(before readiness, so a start that died while waiting is still found) and written to ``process.json``
beside the log. A process is the same one only while its pid *and* its start time match (a pid reused by
another program is never signalled). A retry on the same machine stops what an earlier try left running
before it starts the service again.

**Stop.** :class:`GeniusLocalServiceStopOperator` reads that XCom and must run on the machine that started
the service (it refuses, naming both hosts, elsewhere: use one worker, a queue, or the LocalExecutor).
It sends SIGTERM to the process group — the runtime records it as the service's normal end (run record
SUCCESS) — and SIGKILL after ``stop_timeout`` seconds. A process already gone counts as stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_genius import config
from airflow_genius.core.paths import safe_segment
from airflow_genius.operators.base import GeniusTaskFailed, identity_from_context
from airflow_genius.operators.container import CONTAINER_ARGS, SPEC_ENV
from airflow_genius.operators.local import GeniusTaskOperator
from airflow_genius.operators.service import GeniusServiceMixin, ServiceNotReady

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key of the start task under which the service's process is published (for the stop task).
PROCESS_XCOM_KEY = "genius_local_process"
#: Seconds between SIGTERM and SIGKILL.
DEFAULT_STOP_TIMEOUT = 10.0
#: Lines of the service's log put into a readiness error, and copied into the task log.
ERROR_TAIL_LINES = 40
LOG_LINES = 200
#: Two readings of one process's start time agree to well within this (seconds).
_START_TIME_SLACK = 0.05


@dataclass(frozen=True)
class LocalProcess:
    """A detached service process: its pid, the machine it runs on, when it started (the kernel's
    clock, to tell it from a later process given the same pid) and its log file."""

    pid: int
    host: str
    started: float
    log: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalProcess:
        return cls(int(data["pid"]), str(data["host"]), float(data["started"]), str(data["log"]))


def this_host() -> str:
    """The name of this machine, as a local service's process records it."""
    return socket.gethostname()


def service_folder(work_dir: str | os.PathLike[str], who: Mapping[str, Any]) -> Path:
    """``<work_dir>/services/<dag>/<run>/<task>[.<map index>]``: the log and ``process.json`` of one
    service task instance (the same on every try).

    >>> who = {"dag_id": "d", "run_id": "manual__2024-01-01T00:00:00+00:00", "task_id": "serve", "map_index": 1}
    >>> service_folder("/w", who).as_posix()
    '/w/services/d/manual__2024-01-01T00_00_00+00_00/serve.1'
    """
    leaf = who["task_id"] if who["map_index"] < 0 else f"{who['task_id']}.{who['map_index']}"
    return Path(
        work_dir, "services", safe_segment(who["dag_id"]), safe_segment(who["run_id"]), safe_segment(leaf)
    )


def log_tail(path: str | os.PathLike[str], lines: int) -> str:
    """The last ``lines`` lines of a log file ("" when there is none yet)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 200 * lines))  # lines of a service log are short
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if there is none or it is a zombie."""
    import psutil  # an Airflow dependency

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def is_alive(process: LocalProcess) -> bool:
    """Whether ``process`` still runs on this machine: its pid exists and started when it did."""
    started = process_start_time(process.pid)
    return started is not None and abs(started - process.started) < _START_TIME_SLACK


def refuse_other_host(process: LocalProcess, here: str, task_id: str) -> None:
    """Raise unless ``process`` runs on this machine (``here``): a pid means nothing on another one.

    >>> refuse_other_host(LocalProcess(7, "w1", 0.0, "/log"), "w2", "stop")
    Traceback (most recent call last):
    ...
    airflow_genius.operators.base.GeniusTaskFailed: a local service must be stopped on the machine that started it: started on 'w1', this is 'w2' (run 'stop' on that worker, e.g. through a queue only it serves)
    """
    if process.host != here:
        raise GeniusTaskFailed(
            f"a local service must be stopped on the machine that started it: started on "
            f"{process.host!r}, this is {here!r} (run {task_id!r} on that worker, e.g. "
            "through a queue only it serves)"
        )


def stop_process(process: LocalProcess, *, timeout: float) -> str:
    """Stop a service's process group: SIGTERM, SIGKILL after ``timeout`` seconds.

    Returns ``"gone"`` (it no longer ran), ``"terminated"`` (it ended on SIGTERM) or ``"killed"``.
    The caller checks the host first: a pid means nothing on another machine.
    """
    import psutil

    if not is_alive(process):
        return "gone"
    try:
        handle = psutil.Process(process.pid)
        os.killpg(process.pid, signal.SIGTERM)  # the leader's pid is its group's id (own session)
        handle.wait(timeout)  # reaps it too when it is this process's child
        return "terminated"
    except psutil.NoSuchProcess:
        return "terminated"
    except ProcessLookupError:
        return "gone"
    except psutil.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
        handle.wait(timeout)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
    return "killed"


class GeniusLocalServiceOperator(GeniusServiceMixin, GeniusTaskOperator):
    """Start a genius service (a task method that serves until stopped) as a detached process on the
    worker, wait until it answers its health path, and publish where it listens (the XCom clients'
    ``service=`` reads).

    Takes the genius arguments of :class:`~airflow_genius.operators.local.GeniusTaskOperator` and the
    service arguments of :class:`~airflow_genius.operators.service.GeniusServiceMixin`
    (``service_port``, ``health_path``, ``ready_timeout``, ``start_timeout``, ``service_name``). Besides:

    Args:
        service_hostname: publish this address instead of the one the runtime records (the machine's
            primary address), e.g. ``"127.0.0.1"`` for clients on the same worker only.
        stop_timeout: seconds between SIGTERM and SIGKILL when a failed start stops the service.
    """

    ui_color = "#b58900"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        service_hostname: str | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service_hostname = service_hostname
        self.stop_timeout = stop_timeout
        self._process: LocalProcess | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._killed = False

    def execute(self, context: Context) -> Any:
        """Start the service; what it publishes once ready (the XCom)."""
        target = self.genius_state()
        spec = self.build_task_spec(context, state_uri=target.uri)
        work_dir = str(config.get("work_dir"))
        folder = service_folder(work_dir, identity_from_context(context))
        self._stop_earlier_try(folder)
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "service.log"
        env = {**os.environ, **self.service_env(context), **target.secret_env, SPEC_ENV: spec.to_json()}
        command = [sys.executable, "-m", "airflow_genius.core.cli", *CONTAINER_ARGS, "--work-dir", work_dir]
        self.log.info(
            "starting service %s (%s.%s) on %s port %s; its log: %s",
            self.published_name, spec.task.class_path, spec.task.method, this_host(),
            spec.service and spec.service.port, log_path,
        )  # fmt: skip
        try:
            with open(log_path, "ab") as log_file:
                # Its own session and process group: the worker's end (or its signals) leave it serving.
                self._child = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )  # fmt: skip
            started = process_start_time(self._child.pid)
            self._process = LocalProcess(self._child.pid, this_host(), started or 0.0, str(log_path))
            (folder / "process.json").write_text(json.dumps(self._process.to_dict()))
            context["ti"].xcom_push(key=PROCESS_XCOM_KEY, value=self._process.to_dict())
            if self._killed:
                raise ServiceNotReady("the task was killed while its service was starting")
            published = self.wait_until_ready(
                context,
                running=lambda: self._child is not None and self._child.poll() is None,
                log_tail=lambda: log_tail(log_path, ERROR_TAIL_LINES),
                hostname=self.service_hostname,
            )
        except BaseException:
            self._stop_after_failure()
            raise
        output = log_tail(log_path, LOG_LINES)
        if output:
            self.log.info("the service's output so far (last %d lines):\n%s", LOG_LINES, output)
        self.log.info(
            "process %s keeps serving at %s until GeniusLocalServiceStopOperator(service=%r) stops it",
            self._process.pid, published["url"], self.task_id,
        )  # fmt: skip
        return {**published, "process": self._process.to_dict()}

    def on_kill(self) -> None:
        """Stop the service's process group (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        self._killed = True
        self._stop_after_failure()

    def _stop_after_failure(self) -> None:
        if self._process is None:
            return
        outcome = stop_process(self._process, timeout=self.stop_timeout)
        self.log.info("stopped service process %s: %s", self._process.pid, outcome)
        if self._child is not None:
            self._child.poll()  # reap it (stop_process may have done so already)

    def _stop_earlier_try(self, folder: Path) -> None:
        """A retry after a worker crash: the earlier try's process may still serve (and hold the port)."""
        try:
            earlier = LocalProcess.from_dict(json.loads((folder / "process.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return
        if earlier.host == this_host() and is_alive(earlier):
            self.log.warning("an earlier try's service process %s still runs: stopping it", earlier.pid)
            stop_process(earlier, timeout=self.stop_timeout)


class GeniusLocalServiceStopOperator(BaseOperator):
    """Teardown: stop the local service started by the task ``service`` in this DAG run.

    Finds the process through the start task's XCom ``genius_local_process`` and refuses to run on
    another machine than the one that started it. SIGTERM to its process group (the runtime ends the
    service's run record SUCCESS), SIGKILL after ``stop_timeout`` seconds; a process already gone, or a
    start task that never launched one, is not an error. The service's last log lines are copied into
    this task's log.

    Args:
        service: task id of the :class:`GeniusLocalServiceOperator` to stop.
        service_map_index: its map index, for a mapped start task (default -1: not mapped).
        stop_timeout: seconds between SIGTERM and SIGKILL.

    Returns (XCom): ``{"pid", "host", "stopped": "gone" | "terminated" | "killed" | "not started"}``.
    """

    ui_color = "#b58900"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        service: str,
        service_map_index: int = -1,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.service_map_index = service_map_index
        self.stop_timeout = stop_timeout

    def execute(self, context: Context) -> Any:
        """Stop the service's process; ``{"pid", "host", "stopped"}`` (the XCom)."""
        found = context["ti"].xcom_pull(
            task_ids=self.service, key=PROCESS_XCOM_KEY, map_indexes=self.service_map_index
        )
        if not isinstance(found, Mapping):
            self.log.info("service task %r launched no process in this run: nothing to stop", self.service)
            return {"pid": None, "host": None, "stopped": "not started"}
        process = LocalProcess.from_dict(found)
        refuse_other_host(process, this_host(), self.task_id)
        self.log.info(
            "stopping service process %s (SIGTERM, SIGKILL after %ss)", process.pid, self.stop_timeout
        )
        outcome = stop_process(process, timeout=self.stop_timeout)
        if outcome == "gone":
            self.log.info("service process %s had already ended", process.pid)
        elif outcome == "killed":
            self.log.warning(
                "service process %s did not end within %ss of SIGTERM and was killed",
                process.pid,
                self.stop_timeout,
            )
        output = log_tail(process.log, LOG_LINES)
        if output:
            self.log.info("the service's last output (up to %d lines):\n%s", LOG_LINES, output)
        return {"pid": process.pid, "host": process.host, "stopped": outcome}
