"""Test DAGs of the ECS service operators (tests/containers/aws/test_ecs_service.py): an echo service as
a long-running ECS task, genius clients as ECS tasks calling it, and the stop operator as teardown.

* ``genius_ecs_service``: start → 2 clients (``/echo``) → stop (teardown);
* ``genius_ecs_service_client_fails``: the same, one client calls a path the service does not have;
* ``genius_ecs_service_slow``: start (``GENIUS_TEST_SERVICE_DELAY`` seconds before the service answers
  its health path, ``GENIUS_TEST_READY_TIMEOUT`` to do so) → stop (teardown).

Configured like genius_aws_cases.py (``GENIUS_TEST_AWS_CONN_ID``, ``GENIUS_TEST_CONTAINER_ENV``,
``GENIUS_TEST_ECS_*``) plus ``GENIUS_TEST_SERVICE_PORT``: the tasks share the host network, so each test
picks a free port.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_genius.operators.ecs import GeniusEcsOperator
from airflow_genius.operators.ecs_service import GeniusEcsServiceOperator, GeniusEcsServiceStopOperator

ENV = os.environ.get
ECS: dict[str, Any] = {
    "aws_conn_id": ENV("GENIUS_TEST_AWS_CONN_ID", "aws_default"),
    "cluster": ENV("GENIUS_TEST_ECS_CLUSTER", "genius"),
    "task_definition": ENV("GENIUS_TEST_ECS_TASKDEF", "genius-runtime"),
    "container_name": "genius",
    "launch_type": "FARGATE",
    "awslogs_group": ENV("GENIUS_TEST_ECS_LOG_GROUP", "/ecs/genius"),
    "awslogs_stream_prefix": ENV("GENIUS_TEST_ECS_LOG_PREFIX", "genius"),
    "awslogs_fetch_interval": timedelta(seconds=1),
    "environment": json.loads(ENV("GENIUS_TEST_CONTAINER_ENV", "{}")),
    "waiter_delay": 1,
    "retries": 0,
}
PORT = int(ENV("GENIUS_TEST_SERVICE_PORT", "8000"))


def _service(dag_id: str, paths: list[str], *, delay: float = 0.0, ready_timeout: float = 120.0) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        start = GeniusEcsServiceOperator(
            task_id="start", task_class="airflow_genius.examples.tasks:EchoService", method="serve",
            method_kwargs={"delay": delay}, service_port=PORT, service_name="echo",
            ready_timeout=ready_timeout, start_timeout=300, **ECS,
        )  # fmt: skip
        stop = GeniusEcsServiceStopOperator(
            task_id="stop", service="start", cluster=ECS["cluster"], aws_conn_id=ECS["aws_conn_id"],
            waiter_delay=1,
        )  # fmt: skip
        if paths:
            clients = GeniusEcsOperator.partial(
                task_id="ask", service="start", task_class="airflow_genius.examples.tasks:ServiceClient",
                method="call", **ECS,
            ).expand(method_kwargs=[{"times": 5, "path": path} for path in paths])  # fmt: skip
            start >> clients >> stop.as_teardown(setups=start)
        else:
            start >> stop.as_teardown(setups=start)
    return dag


genius_ecs_service = _service("genius_ecs_service", ["/echo", "/echo"])
genius_ecs_service_client_fails = _service("genius_ecs_service_client_fails", ["/echo", "/missing"])
genius_ecs_service_slow = _service(
    "genius_ecs_service_slow", [],
    delay=float(ENV("GENIUS_TEST_SERVICE_DELAY", "10")),
    ready_timeout=float(ENV("GENIUS_TEST_READY_TIMEOUT", "300")),
)  # fmt: skip
