"""A long-running service as a Slurm job, for genius clients on the same cluster (setup/teardown).

.. code-block:: python

    from airflow_genius.operators.slurm import GeniusSlurmOperator
    from airflow_genius.operators.slurm_service import SlurmServiceOperator, SlurmServiceStopOperator
    from airflow_genius.operators.slurm_script import SlurmJobOptions

    start = SlurmServiceOperator(
        task_id="start_llm", ssh_conn_id="hpc_login", port=8000, health_path="/health",
        command="vllm serve my-model --port $SERVICE_PORT",
        options=SlurmJobOptions(partition="gpu", gpus=1, time="02:00:00"),
    )
    clients = GeniusSlurmOperator.partial(
        task_id="ask", ssh_conn_id="hpc_login", service="start_llm", ...
    ).expand(method_kwargs=[...])          # each job gets SERVICE_URL etc. in its environment
    stop = SlurmServiceStopOperator(task_id="stop_llm", ssh_conn_id="hpc_login", service="start_llm")
    start >> clients >> stop.as_teardown(setups=start)

The service job gets ``SERVICE_NAME`` and ``SERVICE_PORT`` in its environment. The setup task waits
until the job is RUNNING and answers ``health_path`` over HTTP (checked from the login node), then
returns ``{"name", "hostname", "port", "url", "job_id", "job_name"}`` as its XCom. The teardown
cancels the job by its deterministic name, so it works even when the setup task failed half-way.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_genius.operators.slurm import SlurmJobMixin
from airflow_genius.operators.slurm_script import SlurmJobOptions

if TYPE_CHECKING:
    from airflow.sdk import Context


class SlurmServiceFailed(Exception):
    """The service job ended, or did not become healthy in time."""


class SlurmServiceOperator(SlurmJobMixin, BaseOperator):
    """Start ``command`` as a Slurm job and wait until it serves; publish where it listens.

    Args:
        ssh_conn_id: SSH connection to the cluster's login node.
        command: the service's shell line(s) (trusted DAG code); ``$SERVICE_PORT`` is set.
        port: the port it listens on.
        service_name: name published to clients (default: the task id).
        health_path: HTTP path that must answer 2xx before clients start (None: RUNNING is enough).
        startup_timeout: seconds to wait for RUNNING and healthy; the job is cancelled after that.
        options: sbatch options (partition, time, …) and setup lines.
    """

    template_fields: ClassVar[tuple[str, ...]] = ("command",)
    ui_color = "#6c71c4"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        command: str | Sequence[str],
        port: int,
        service_name: str | None = None,
        health_path: str | None = "/",
        startup_timeout: float = 600.0,
        options: SlurmJobOptions | None = None,
        remote_base_dir: str = "~/.genius/slurm",
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.command = command
        self.port = int(port)
        self.service_name = service_name or self.task_id
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self.options = options or SlurmJobOptions()
        self.remote_base_dir = remote_base_dir
        self.poll_interval = poll_interval
        self.deferrable = False
        self.lost_after = 120.0
        self.pending_timeout = startup_timeout
        self.job_id: str | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_genius.operators.slurm_script import render_sbatch_script

        name = self.job_name_for(context)
        body = [self.command] if isinstance(self.command, str) else list(self.command)
        with self.slurm_hook() as hook:
            job_dir = hook.resolve_path(f"{self.remote_base_dir.rstrip('/')}/{name}")
            live = hook.find_live_job(name)
            if live:
                job_id = live[0]
                self.log.info("service job %s (%s) is already up: reusing it", job_id, name)
            else:
                script = render_sbatch_script(
                    job_name=name, job_dir=job_dir, options=self.options, body=body,
                    extra_env={"SERVICE_NAME": self.service_name, "SERVICE_PORT": str(self.port)},
                )  # fmt: skip
                hook.run(f"mkdir -p {shlex.quote(job_dir)}")
                job_id = hook.submit(script, work_dir=job_dir)
                self.log.info("submitted service job %s (%s)", job_id, name)
            self.remember_job(context, job_id)
            try:
                hostname = self._wait_until_serving(hook, job_id, f"{job_dir}/slurm-{job_id}.out")
            except BaseException:
                hook.cancel(job_id)
                raise
        url = f"http://{hostname}:{self.port}"
        self.log.info("service %s is up at %s (Slurm job %s)", self.service_name, url, job_id)
        return {
            "name": self.service_name, "hostname": hostname, "port": self.port, "url": url,
            "job_id": job_id, "job_name": name,
        }  # fmt: skip

    def _wait_until_serving(self, hook: Any, job_id: str, output_path: str) -> str:
        from airflow_genius.hooks.slurm_protocol import JobWatch, poll_delays

        watch = JobWatch(job_id, lost_after=self.lost_after)
        deadline = time.monotonic() + self.startup_timeout
        offset = 0
        for delay in poll_delays(self.poll_interval):
            poll = hook.poll(job_id, output_path=output_path, offset=offset)
            offset = hook._log_output(job_id, poll, self.log)
            event = watch.observe(poll.verdict, time.monotonic())
            if event is not None:
                raise SlurmServiceFailed(
                    f"the service job ended before serving: {event['reason'] or event['state']}"
                )
            if poll.verdict.state == "RUNNING" and poll.verdict.node:
                hostname = poll.verdict.node.split(",")[0]
                if self.health_path is None or self._healthy(
                    hook, f"http://{hostname}:{self.port}{self.health_path}"
                ):
                    return hostname
            if time.monotonic() > deadline:
                raise SlurmServiceFailed(
                    f"service job {job_id} not serving after {self.startup_timeout:.0f} s "
                    f"(state {poll.verdict.state}); it is cancelled"
                )
            time.sleep(delay)
        raise AssertionError("unreachable: poll_delays never ends")

    @staticmethod
    def _healthy(hook: Any, url: str) -> bool:
        status, _, _ = hook.run(f"curl -fsS -o /dev/null --max-time 5 {shlex.quote(url)}", check=False)
        return status == 0


class SlurmServiceStopOperator(SlurmJobMixin, BaseOperator):
    """Teardown: cancel the service job started by the :class:`SlurmServiceOperator` ``service``.

    The job is found by its deterministic name, not by XCom, so it is cancelled even when the setup
    task failed after submitting it.
    """

    ui_color = "#6c71c4"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, ssh_conn_id: str, service: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.service = service

    def execute(self, context: Context) -> None:
        from airflow_genius.hooks.slurm_protocol import job_name

        ti = context["ti"]
        name = job_name(ti.dag_id, self.service, ti.run_id)
        with self.slurm_hook() as hook:
            hook.cancel_by_name(name)
        self.log.info("cancelled service job(s) named %s", name)
