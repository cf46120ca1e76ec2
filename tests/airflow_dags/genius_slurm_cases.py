"""Test DAGs for the Slurm runner (tests/slurm/test_slurm_dags.py, tests/slurm/test_slurm_services.py):
failures, hostile values, a sleeper, services.

``GENIUS_TEST_GENIUS`` is the ``genius`` executable on the compute node (this machine in the rig);
``GENIUS_TEST_SERVICE_PORT`` the port of the service DAGs.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG
from stream_windows import stream_tasks

from airflow_genius.operators.slurm import GeniusSlurmOperator
from airflow_genius.operators.slurm_script import SlurmContainer, SlurmJobOptions
from airflow_genius.operators.slurm_service import (
    GeniusSlurmServiceOperator,
    GeniusSlurmServiceStopOperator,
    SlurmServiceOperator,
    SlurmServiceStopOperator,
)

ECHO = "airflow_genius.examples.tasks:Echo"
SLURM: dict[str, Any] = {
    "ssh_conn_id": "genius_slurm",
    "genius_command": os.environ.get("GENIUS_TEST_GENIUS", "genius"),
    "poll_interval": 0.5,
    "lost_after": 30.0,
}
CANARY = os.environ.get("GENIUS_TEST_CANARY", "/tmp/genius-canary")
HOSTILE = [
    "it's",
    'say "hi"',
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"x; touch {CANARY}",
    f"line\ntouch {CANARY}",
    f"&& touch {CANARY} #",
    "${HOME} \\ $'\\n'",
]
HOSTILE_ENV = {f"HOSTILE_{n}": value for n, value in enumerate(HOSTILE)}

with DAG(dag_id="genius_slurm_failures", schedule=None, catchup=False) as genius_slurm_failures:
    GeniusSlurmOperator(task_id="exits_3", task_class=ECHO, method="exit", method_kwargs={"code": 3}, **SLURM)
    GeniusSlurmOperator(
        task_id="raises",
        task_class=ECHO,
        method="fail",
        method_kwargs={"message": "the remote task broke"},
        **SLURM,
    )
    GeniusSlurmOperator(
        task_id="times_out",
        task_class=ECHO,
        method="sleep",
        method_kwargs={"seconds": 600},
        time="1",
        **SLURM,
    )
    GeniusSlurmOperator(
        task_id="over_memory",
        task_class=ECHO,
        method="hog",
        method_kwargs={"megabytes": 400, "seconds": 20},
        mem="100M",
        **SLURM,
    )

    GeniusSlurmOperator(
        task_id="never_starts",
        task_class=ECHO,
        method="say",
        method_args=["x"],
        extra_directives=["--begin=now+1hour"],
        pending_timeout=3,
        **SLURM,
    )

with DAG(dag_id="genius_slurm_no_genius", schedule=None, catchup=False) as genius_slurm_no_genius:
    # the node has no `genius` on the job's PATH: the job dies before any run record exists, and the
    # cause (`genius: command not found`) is only in its output (tests/slurm/test_failure_causes.py)
    GeniusSlurmOperator(
        task_id="missing",
        task_class=ECHO,
        method="say",
        method_args=["never"],
        **{**SLURM, "genius_command": "genius"},
        setup=["PATH=/usr/bin:/bin"],
        retries=0,
    )
    GeniusSlurmOperator(
        task_id="missing_deferred",
        task_class=ECHO,
        method="say",
        method_args=["never"],
        **{**SLURM, "genius_command": "genius"},
        setup=["PATH=/usr/bin:/bin"],
        deferrable=True,
        retries=0,
    )

with DAG(dag_id="genius_slurm_hostile", schedule=None, catchup=False) as genius_slurm_hostile:
    GeniusSlurmOperator(
        task_id="env", task_class=ECHO, method="environment", method_args=[sorted(HOSTILE_ENV)], env=HOSTILE_ENV,
        **SLURM,
    )  # fmt: skip
    GeniusSlurmOperator(
        task_id="args", task_class=ECHO, method="say", method_args=[HOSTILE], deferrable=True, **SLURM
    )
    GeniusSlurmOperator(
        task_id="bad_option", task_class=ECHO, method="say", method_args=["x"], partition=f"debug\ntouch {CANARY}",
        **SLURM,
    )  # fmt: skip

with DAG(dag_id="genius_slurm_sleeper", schedule=None, catchup=False) as genius_slurm_sleeper:
    GeniusSlurmOperator(
        task_id="sleep",
        task_class=ECHO,
        method="sleep",
        method_kwargs={"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "15"))},
        retries=0,
        **SLURM,
    )

with DAG(dag_id="genius_slurm_secret", schedule=None, catchup=False) as genius_slurm_secret:
    # The state connection has a password: it must reach the job only through the 0600 secret file.
    GeniusSlurmOperator(
        task_id="probe",
        task_class="genius_samples.tasks:SecretProbe",
        method="check",
        method_kwargs={"seconds": 4},
        state_conn_id="genius_pg_secret",
        env={"PYTHONPATH": os.environ.get("GENIUS_TEST_PYTHONPATH", "")},
        **SLURM,
    )

with DAG(dag_id="genius_slurm_container", schedule=None, catchup=False) as genius_slurm_container:
    # genius runs in the runtime image (podman on the node), the state store is Redis on the host network
    GeniusSlurmOperator(
        task_id="echo",
        task_class=ECHO,
        method="say",
        method_args=["hello from a container on Slurm"],
        state_uri=os.environ.get("GENIUS_TEST_REDIS_STATE", "redis://127.0.0.1:6379/15"),
        container=SlurmContainer(
            image=os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev"),
            options=["--pull=never"],
        ),
        **SLURM,
    )

with DAG(dag_id="genius_slurm_stream", schedule="*/5 * * * *", catchup=False) as genius_slurm_stream:
    stream_tasks(GeniusSlurmOperator, bolt_args={"deferrable": True}, **SLURM)


# ---------------------------------------------------------------- services (tests/slurm/test_slurm_services.py)
SERVICE_PORT = int(os.environ.get("GENIUS_TEST_SERVICE_PORT", "8765"))
ECHO_SERVICE: dict[str, Any] = {
    **SLURM,
    "task_class": "airflow_genius.examples.tasks:EchoService",
    "method": "serve",
    "service_port": SERVICE_PORT,
    "time": "00:10:00",  # a broken test leaves nothing behind for long
    "retries": 0,
}

with DAG(
    dag_id="genius_slurm_service_never_ready", schedule=None, catchup=False
) as genius_slurm_service_never_ready:
    # answers its health path only after an hour: the start task gives up after ready_timeout
    GeniusSlurmServiceOperator(
        task_id="start", method_kwargs={"delay": 3600}, ready_timeout=5, start_timeout=120, **ECHO_SERVICE
    )

with DAG(dag_id="genius_slurm_service_kill", schedule=None, catchup=False) as genius_slurm_service_kill:
    # never ready within the test: the start task is still waiting when it is killed
    GeniusSlurmServiceOperator(
        task_id="start", method_kwargs={"delay": 3600}, ready_timeout=600, **ECHO_SERVICE
    )

with DAG(dag_id="genius_slurm_service_retry", schedule=None, catchup=False) as genius_slurm_service_retry:
    retried = GeniusSlurmServiceOperator(task_id="start", service_name="echo", **ECHO_SERVICE)
    retried >> GeniusSlurmServiceStopOperator(
        task_id="stop", ssh_conn_id=SLURM["ssh_conn_id"], service="start", poll_interval=0.5
    ).as_teardown(setups=retried)

with DAG(dag_id="genius_slurm_command_service", schedule=None, catchup=False) as genius_slurm_command_service:
    # a service that is not a genius task: a shell command, checked over HTTP from the login node
    command = SlurmServiceOperator(
        task_id="start",
        ssh_conn_id=SLURM["ssh_conn_id"],
        command='exec python3 -m http.server "$SERVICE_PORT" --bind 0.0.0.0',
        service_port=SERVICE_PORT,
        service_name="files",
        health_path="/",
        ready_timeout=60,
        start_timeout=120,
        options=SlurmJobOptions(time="00:10:00"),
        poll_interval=0.5,
        retries=0,
    )
    callers = GeniusSlurmOperator.partial(
        task_id="client", task_class="airflow_genius.examples.tasks:ServiceClient", method="call",
        service="start", **SLURM,
    ).expand(method_kwargs=[{"times": 3, "path": "/"}] * 2)  # fmt: skip
    (
        command
        >> callers
        >> SlurmServiceStopOperator(
            task_id="stop", ssh_conn_id=SLURM["ssh_conn_id"], service="start", poll_interval=0.5
        ).as_teardown(setups=command)
    )
