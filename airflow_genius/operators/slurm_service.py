"""Services on Slurm: a long-running job that clients on the same cluster call, as an Airflow setup task,
and the teardown that stops it.

A **genius service** (a task method that serves until SIGTERM, ``core/service.py``) runs as a Slurm job
with :class:`GeniusSlurmServiceOperator`, which takes every argument of
:class:`~airflow_genius.operators.slurm.GeniusSlurmOperator` plus the service arguments of
:class:`~airflow_genius.operators.service.GeniusServiceMixin`:

.. code-block:: python

    from airflow_genius.operators.slurm import GeniusSlurmOperator
    from airflow_genius.operators.slurm_service import (
        GeniusSlurmServiceOperator, GeniusSlurmServiceStopOperator,
    )

    start = GeniusSlurmServiceOperator(
        task_id="start_echo", ssh_conn_id="hpc_login",
        task_class="airflow_genius.examples.tasks:EchoService", method="serve",
        service_port=8000, health_path="/health", ready_timeout=120, start_timeout=600,
        partition="cpu", time="02:00:00",              # the job's time limit bounds how long it serves
    )
    clients = GeniusSlurmOperator.partial(
        task_id="ask", ssh_conn_id="hpc_login", service="start_echo",   # SERVICE_URL etc. in their env
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call",
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusSlurmServiceStopOperator(task_id="stop_echo", ssh_conn_id="hpc_login", service="start_echo")
    start >> clients >> stop.as_teardown(setups=start)

The start task submits the TaskSpec as a job named like every genius Slurm job (the same on every try, so
a retry after a worker crash reattaches to the service still up), waits until the run record says the
service answered its health path (probed beside it on the node), and returns the published dict —
``name``, ``hostname`` (the address of the node the job runs on, Slurm's ``NodeAddr``), ``port``,
``url``, ``health_path``, ``ready_at``…, plus ``job_id`` and ``job_name``. If the service does not become
ready in time, or the job ends first, the task fails with the tail of the job's output and the job is
cancelled; killing the task cancels it too.

A service that is **not** a genius task (vLLM, a database) runs as a shell ``command`` with
:class:`SlurmServiceOperator` — the same service arguments, readiness checked over HTTP from the login
node:

.. code-block:: python

    start = SlurmServiceOperator(
        task_id="start_llm", ssh_conn_id="hpc_login", service_port=8000, health_path="/health",
        command="exec vllm serve my-model --port $SERVICE_PORT",
        options=SlurmJobOptions(partition="gpu", gpus=1, time="02:00:00"),
    )

:class:`GeniusSlurmServiceStopOperator` stops either kind by the job's deterministic name (so it also
works when the start task failed half-way): a running job gets SIGTERM in its batch shell and all its
children (``scancel --full --signal=TERM``), so a genius service ends its run record SUCCESS; a job still
there after ``stop_timeout`` seconds is cancelled. Stopping a service that is gone is not an error.
"""

from __future__ import annotations

import re
import shlex
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_genius.core.service import DEFAULT_HEALTH_PATH, DEFAULT_PORT, DEFAULT_READY_TIMEOUT, ServiceInfo
from airflow_genius.operators.service import (
    DEFAULT_START_TIMEOUT,
    ERROR_TAIL_LINES,
    GeniusServiceMixin,
    ServiceNotReady,
)
from airflow_genius.operators.slurm import GeniusSlurmOperator, SlurmJob, SlurmJobMixin
from airflow_genius.operators.slurm_script import SlurmJobOptions
from airflow_genius.operators.state_reach import slurm_reach

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.slurm_protocol import JobVerdict
    from airflow_genius.hooks.slurm import SlurmHook

_ONE_NODE = re.compile(r"[A-Za-z0-9._-]+")


class SlurmServiceFailed(ServiceNotReady):
    """The service job ended, or did not become ready in time (the tail of its output is in the text)."""


class SlurmServiceJob:
    """A started service job as its operator watches it; each call is one SSH command.

    ``running()`` polls squeue/sacct (and tails new output into the task log), ``log_tail()`` reads the
    end of the job's output file, ``hostname()`` the address of the node it runs on — the three
    callbacks of :meth:`~airflow_genius.operators.service.GeniusServiceMixin.wait_until_ready`.
    """

    def __init__(self, hook: SlurmHook, job: SlurmJob, *, lost_after: float, log: Any) -> None:
        from airflow_genius.core.slurm_protocol import Watch

        self.hook = hook
        self.job = job
        self.log = log
        self.verdict: JobVerdict | None = None
        self.ended: str | None = None
        self._watch = Watch(job.job_id, output_path=job.output_path, lost_after=lost_after)
        self._address = ""

    def running(self) -> bool:
        """True while the job is queued or running (or briefly unaccounted for, see ``lost_after``)."""
        step = self.hook.follow(self._watch, log=self.log)
        self._watch, self.verdict = step.watch, step.verdict
        event = step.event
        if event is None:
            return True
        self.ended = str(event["reason"] or event["state"])
        self.log.error("%s", self.ended)
        return False

    def log_tail(self) -> str:
        """Why Slurm ended the job (if it did), then the last lines of its output."""
        tail = self.hook.tail(self.job.output_path, ERROR_TAIL_LINES).rstrip()
        return "\n".join(part for part in (self.ended, tail) if part)

    def hostname(self) -> str:
        """Where clients on the cluster reach the job: its node's ``NodeAddr``, else the node's name; ''
        while it has no node."""
        if not self._address:
            address = self.hook.node_address(self.job.job_id)
            if address in ("", "n/a", "(null)") and self.verdict is not None:
                # squeue's node list, when it is one plain name (not node[1-4] or a,b)
                address = self.verdict.node if _ONE_NODE.fullmatch(self.verdict.node) else ""
            self._address = address
        return self._address

    def described_tail(self) -> str:
        """``; last log lines: …`` for an error message ('' without output)."""
        try:
            text = self.log_tail()
        except Exception as exc:  # the log is a courtesy: its absence must not hide the real cause
            text = f"(no log: {exc})"
        return f"; last log lines:\n{text}" if text else ""


def cancel_service_job(hook: SlurmHook, job: SlurmJob, log: Any) -> None:
    """``scancel`` a service job the start task gives up on (it failed, timed out, or was killed)."""
    hook.cancel(job.job_id)
    log.info("cancelled Slurm job %s (%s)", job.job_id, job.name)


class GeniusSlurmServiceOperator(GeniusServiceMixin, GeniusSlurmOperator):
    """Run a genius service (a method that serves until SIGTERM) as a Slurm job; return where it listens.

    Args: the service arguments of :class:`~airflow_genius.operators.service.GeniusServiceMixin`
    (``service_port``, ``health_path``, ``ready_timeout``, ``start_timeout`` — which includes the time
    the job waits in the queue —, ``service_name``) and the arguments of
    :class:`~airflow_genius.operators.slurm.GeniusSlurmOperator` (``deferrable`` is ignored: readiness
    is read from the run record by the worker). ``time`` (the job's limit) bounds how long it serves.

    Returns (XCom): the published service — ``name``, ``hostname``, ``port``, ``url``, ``health_path``,
    ``ready_at``, ``ready_seconds`` — plus ``job_id`` and ``job_name``.
    """

    ui_color = "#6c71c4"
    ui_fgcolor = "#ffffff"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # readiness is read from the run record by the worker; a DAG-wide deferrable=True does not apply
        self.deferrable = False

    def execute(self, context: Context) -> dict[str, Any]:
        target = self.genius_state()
        # refused before anything reaches the cluster when its nodes cannot reach the store
        spec = self.build_task_spec(context, state_uri=target.uri, remote=slurm_reach(self.ssh_conn_id))
        options = self.job_options(context)  # validated before anything reaches the cluster
        with self.slurm_hook() as hook:
            # a retry finds the service an earlier try left up; a finished one is not reused
            job = self.launch_genius_job(context, hook, spec, options, target, live_only=True)
            watch = SlurmServiceJob(hook, job, lost_after=self.lost_after, log=self.log)
            try:
                published = self.wait_until_ready(
                    context,
                    running=watch.running,
                    log_tail=watch.log_tail,
                    hostname=watch.hostname,
                    # a reattached job runs the spec (and writes the record) of the try that submitted it
                    try_number=self.submitted_try(hook, job) if job.reattached else None,
                )
            except BaseException:
                cancel_service_job(hook, job, self.log)
                raise
        return {**published, "job_id": job.job_id, "job_name": job.name}


class SlurmServiceOperator(SlurmJobMixin, BaseOperator):
    """Start a shell ``command`` (a service that is not a genius task) as a Slurm job, wait until it
    answers ``health_path`` over HTTP from the login node, and return where it listens.

    Args:
        ssh_conn_id: SSH connection to the cluster's login node (it needs ``curl`` for the health check).
        command: the service's shell line(s) (trusted DAG code; templated); ``$SERVICE_PORT`` and
            ``$SERVICE_NAME`` are set. Start the server with ``exec`` so the stop's SIGTERM reaches it.
        service_port: the port it listens on (former name: ``port``).
        service_name: name published to clients (default: the task id).
        health_path: HTTP path that answers 2xx once it serves (None: RUNNING is enough).
        ready_timeout: seconds the running job has to answer ``health_path``.
        start_timeout: seconds the job may wait in the queue before that (former name:
            ``startup_timeout``). The job is cancelled when ``start_timeout + ready_timeout`` have passed.
        options: sbatch options (partition, time, …) and setup lines.
        remote_base_dir: where job folders live on the cluster.
        poll_interval: longest wait between two polls (they start at 0.25 s).
        lost_after: seconds a job may be missing from both squeue and sacct before it counts as lost.

    Returns (XCom): ``name``, ``hostname``, ``port``, ``url``, ``health_path``, ``job_id``, ``job_name``.
    """

    template_fields: Sequence[str] = ("command",)
    ui_color = "#6c71c4"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        command: str | Sequence[str],
        service_port: int = DEFAULT_PORT,
        service_name: str | None = None,
        health_path: str | None = DEFAULT_HEALTH_PATH,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        options: SlurmJobOptions | None = None,
        remote_base_dir: str = "~/.genius/slurm",
        poll_interval: float = 5.0,
        lost_after: float = 120.0,
        port: int | None = None,
        startup_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if port is not None:
            warnings.warn(
                "SlurmServiceOperator: port= is now service_port=", DeprecationWarning, stacklevel=2
            )
            service_port = port
        if startup_timeout is not None:
            warnings.warn(
                "SlurmServiceOperator: startup_timeout= is now start_timeout= (plus ready_timeout=)",
                DeprecationWarning,
                stacklevel=2,
            )
            start_timeout = startup_timeout
        self.configure_job(
            ssh_conn_id=ssh_conn_id, remote_base_dir=remote_base_dir, poll_interval=poll_interval,
            lost_after=lost_after,
        )  # fmt: skip
        self.command = command
        self.service_port = int(service_port)
        self.service_name = service_name or self.task_id
        self.health_path = health_path
        self.ready_timeout = float(ready_timeout)
        self.start_timeout = float(start_timeout)
        self.options = options or SlurmJobOptions()

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_genius.operators.slurm_script import render_sbatch_script

        body = [self.command] if isinstance(self.command, str) else list(self.command)
        with self.slurm_hook() as hook:

            def prepare(name: str, job_dir: str) -> tuple[str, dict[str, bytes]]:
                return render_sbatch_script(
                    job_name=name, job_dir=job_dir, options=self.options, body=body,
                    extra_env={"SERVICE_NAME": self.service_name, "SERVICE_PORT": str(self.service_port)},
                ), {}  # fmt: skip

            # a retry finds the service an earlier try left up; a finished one is not reused
            job = self.submit_or_reattach(
                context, hook, prepare, what=f"service {self.service_name}", live_only=True
            )
            watch = SlurmServiceJob(hook, job, lost_after=self.lost_after, log=self.log)
            try:
                hostname = self._wait_until_serving(hook, watch)
            except BaseException:
                cancel_service_job(hook, job, self.log)
                raise
        info = ServiceInfo(self.service_name, hostname, self.service_port, self.health_path or "")
        self.log.info("service %s is ready at %s (Slurm job %s)", self.service_name, info.url, job.job_id)
        return {**info.to_dict(), "health_path": self.health_path, "job_id": job.job_id, "job_name": job.name}

    def _wait_until_serving(self, hook: SlurmHook, watch: SlurmServiceJob) -> str:
        """The job's address once it runs and answers ``health_path`` from the login node."""
        from airflow_genius.core.slurm_protocol import poll_delays

        deadline = time.monotonic() + self.start_timeout + self.ready_timeout
        for delay in poll_delays(self.poll_interval):
            if not watch.running():
                raise SlurmServiceFailed(
                    f"the service's job ended before it was ready{watch.described_tail()}"
                )
            if watch.verdict is not None and watch.verdict.state == "RUNNING":
                hostname = watch.hostname()
                if hostname and (
                    self.health_path is None
                    or self._healthy(
                        hook, ServiceInfo("", hostname, self.service_port).url + self.health_path
                    )
                ):
                    return hostname
            if time.monotonic() > deadline:
                raise SlurmServiceFailed(
                    f"service job {watch.job.job_id} was not ready after {self.start_timeout:g}s to start plus "
                    f"{self.ready_timeout:g}s to answer {self.health_path} (state "
                    f"{watch.verdict.state if watch.verdict else 'unknown'}){watch.described_tail()}"
                )
            time.sleep(delay)
        raise AssertionError("unreachable: poll_delays never ends")

    @staticmethod
    def _healthy(hook: SlurmHook, url: str) -> bool:
        status, _, _ = hook.run(f"curl -fsS -o /dev/null --max-time 5 {shlex.quote(url)}", check=False)
        return status == 0


class GeniusSlurmServiceStopOperator(SlurmJobMixin, BaseOperator):
    """Teardown: stop the service job that the service operator ``service`` started (genius or command).

    The job is found by its deterministic name, not by XCom, so it is stopped even when the start task
    failed after submitting it. A running job gets ``signal`` in its batch shell and all its children
    (a genius service ends its run record SUCCESS on SIGTERM); a queued one is cancelled; whatever is
    still there after ``stop_timeout`` seconds is cancelled (``scancel``). Idempotent.

    Args:
        ssh_conn_id: SSH connection to the cluster's login node.
        service: task id of the service operator (not mapped).
        signal: the signal that asks the service to stop (``TERM``).
        stop_timeout: seconds the service has to stop before it is cancelled.
        poll_interval: longest wait between two checks (they start at 0.25 s).

    Returns (XCom): ``{"job_name", "job_id" (None if nothing ran), "cancelled" (True if it had to be)}``.
    """

    ui_color = "#6c71c4"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        service: str,
        signal: str = "TERM",
        stop_timeout: float = 60.0,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        from airflow_genius.core.slurm_protocol import stop_by_name_command

        super().__init__(**kwargs)
        stop_by_name_command("x", signal)  # a bad signal fails when the DAG is parsed
        self.ssh_conn_id = ssh_conn_id
        self.service = service
        self.signal = signal
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_genius.core.slurm_protocol import job_name, poll_delays

        ti = context["ti"]
        name = job_name(ti.dag_id, self.service, ti.run_id)
        with self.slurm_hook() as hook:
            live = hook.find_live_job(name)
            if live is None:
                self.log.info("no queued or running job named %s: nothing to stop", name)
                return {"job_name": name, "job_id": None, "cancelled": False}
            self.log.info("stopping service job %s (%s, %s) with SIG%s", live[0], name, live[1], self.signal)
            hook.stop_by_name(name, signal=self.signal)
            deadline = time.monotonic() + self.stop_timeout
            for delay in poll_delays(self.poll_interval):
                if hook.find_live_job(name) is None:
                    self.log.info("service job %s stopped", live[0])
                    return {"job_name": name, "job_id": live[0], "cancelled": False}
                if time.monotonic() > deadline:
                    break
                time.sleep(delay)
            hook.cancel_by_name(name)
        self.log.warning("service job %s did not stop within %gs: cancelled", live[0], self.stop_timeout)
        return {"job_name": name, "job_id": live[0], "cancelled": True}


#: The former name of :class:`GeniusSlurmServiceStopOperator`.
SlurmServiceStopOperator = GeniusSlurmServiceStopOperator
