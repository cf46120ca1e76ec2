"""Test DAGs of the Docker runner (tests/containers/docker/test_docker_dags.py): failures, a sleeper to
kill or reattach to, and a task whose state connection has a password.

``GENIUS_TEST_DOCKER_URL`` / ``GENIUS_TEST_IMAGE``: the rig's engine and runtime image. The containers
use the host network, so the state stores of the rig on 127.0.0.1 are reachable.
"""

from __future__ import annotations

import logging
import os

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseHook
from stream_windows import stream_tasks

from airflow_genius.operators.docker import GeniusDockerOperator

ECHO = "airflow_genius.examples.tasks:Echo"
DOCKER = {
    "image": os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev"),
    "docker_url": os.environ.get("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock"),
    "network_mode": "host",
    "retries": 0,
}
#: A genius_postgres connection with a password (see test_no_secret_in_argv_or_log).
SECRET_CONN_ID = "genius_pg_secret"

with DAG(dag_id="genius_docker_failures", schedule=None, catchup=False) as genius_docker_failures:
    GeniusDockerOperator(
        task_id="raises",
        task_class=ECHO,
        method="fail",
        method_kwargs={"message": "the remote task broke"},
        **DOCKER,
    )
    GeniusDockerOperator(
        task_id="exits_3", task_class=ECHO, method="exit", method_kwargs={"code": 3}, **DOCKER
    )

with DAG(dag_id="genius_docker_sleeper", schedule=None, catchup=False) as genius_docker_sleeper:
    GeniusDockerOperator(
        task_id="sleep",
        task_class=ECHO,
        method="sleep",
        method_kwargs={"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "15"))},
        **DOCKER,
    )


def _control(**_: object) -> None:
    """Logs the password between markers: proves the log masker is off in this run, so the password's
    absence from the genius task's log is the operator's doing, not the masker's."""
    password = BaseHook.get_connection(SECRET_CONN_ID).password
    logging.getLogger(__name__).info("CONTROL[%s]CONTROL", password)


with DAG(dag_id="genius_docker_secret", schedule=None, catchup=False) as genius_docker_secret:
    echo = GeniusDockerOperator(
        task_id="echo",
        task_class=ECHO,
        method="say",
        method_args=["delivered"],
        state_conn_id=SECRET_CONN_ID,
        environment={"PLAIN_SETTING": "visible"},
        auto_remove="never",  # the test inspects the container, then removes it
        **DOCKER,
    )
    control = PythonOperator(task_id="control", python_callable=_control)
    echo >> control

with DAG(dag_id="genius_docker_leftovers", schedule=None, catchup=False) as genius_docker_leftovers:
    # keeps its container: a second try of the same task instance finds it ended and replaces it
    GeniusDockerOperator(
        task_id="kept", task_class=ECHO, method="say", method_args=["again"], auto_remove="never", **DOCKER
    )
    # a user-chosen name that someone else's container holds: never touched, the task fails
    GeniusDockerOperator(
        task_id="foreign",
        task_class=ECHO,
        method="say",
        method_args=["x"],
        container_name=os.environ.get("GENIUS_TEST_FOREIGN_NAME", "genius-test-foreign"),
        **DOCKER,
    )

with DAG(dag_id="genius_docker_stream", schedule="*/5 * * * *", catchup=False) as genius_docker_stream:
    stream_tasks(GeniusDockerOperator, **DOCKER)
