"""A genius service on ECS and two clients calling it: start, call, stop (setup / teardown).

``start_echo`` runs ``EchoService.serve`` as a long-running ECS task of the runtime image and succeeds
once the service answers ``/health`` (the runtime beside it records that in the run record); its XCom is
where clients reach it. The two ``ask`` tasks are ECS tasks too: ``service="start_echo"`` puts
``SERVICE_URL`` (and ``SERVICE_NAME``/``HOSTNAME``/``PORT``) in their environment, and each records its
call latencies in its run record. ``stop_echo`` is the teardown: it stops the service's ECS task
whatever happened to the clients.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_AWS_CONN_ID`` — the amazon provider's connection (default ``aws_default``);
* ``GENIUS_EXAMPLE_ECS_CLUSTER`` / ``GENIUS_EXAMPLE_ECS_TASK_DEFINITION`` — a cluster and a task
  definition whose container ``GENIUS_EXAMPLE_ECS_CONTAINER`` (default ``genius``) runs the genius
  runtime image with the ``awslogs`` log driver, with ``awsvpc`` (clients use the task's private IP) or
  ``host`` networking;
* ``GENIUS_EXAMPLE_ECS_LAUNCH_TYPE`` (default ``FARGATE``), ``GENIUS_EXAMPLE_ECS_SUBNETS`` and
  ``GENIUS_EXAMPLE_ECS_SECURITY_GROUPS`` (comma-separated; the group must let the clients in on the
  service port);
* ``GENIUS_EXAMPLE_ECS_LOG_GROUP`` / ``GENIUS_EXAMPLE_ECS_LOG_PREFIX`` — the task definition's
  ``awslogs-group`` and ``awslogs-stream-prefix`` (defaults ``/ecs/genius`` / ``genius``);
* ``GENIUS_EXAMPLE_SERVICE_PORT`` — the port the service listens on (default 8000);
* ``GENIUS_EXAMPLE_CONTAINER_ENV`` — optional JSON object of plain environment; never secrets.

The run records go to ``[genius] state_conn_id``/``state_uri``, which the tasks and the worker must
reach.
"""

from __future__ import annotations

import json
import os

from airflow.sdk import DAG

from airflow_genius.operators.ecs import GeniusEcsOperator
from airflow_genius.operators.ecs_service import GeniusEcsServiceOperator, GeniusEcsServiceStopOperator

ENV = os.environ.get
SUBNETS = [s for s in ENV("GENIUS_EXAMPLE_ECS_SUBNETS", "").split(",") if s]
GROUPS = [g for g in ENV("GENIUS_EXAMPLE_ECS_SECURITY_GROUPS", "").split(",") if g]
AWS_CONN_ID = ENV("GENIUS_EXAMPLE_AWS_CONN_ID", "aws_default")
CLUSTER = ENV("GENIUS_EXAMPLE_ECS_CLUSTER", "genius")
ECS = {
    "aws_conn_id": AWS_CONN_ID,
    "cluster": CLUSTER,
    "task_definition": ENV("GENIUS_EXAMPLE_ECS_TASK_DEFINITION", "genius-runtime"),
    "container_name": ENV("GENIUS_EXAMPLE_ECS_CONTAINER", "genius"),
    "launch_type": ENV("GENIUS_EXAMPLE_ECS_LAUNCH_TYPE", "FARGATE"),
    "network_configuration": (
        {"awsvpcConfiguration": {"subnets": SUBNETS, "securityGroups": GROUPS}} if SUBNETS else None
    ),
    "awslogs_group": ENV("GENIUS_EXAMPLE_ECS_LOG_GROUP", "/ecs/genius"),
    "awslogs_stream_prefix": ENV("GENIUS_EXAMPLE_ECS_LOG_PREFIX", "genius"),
    "environment": json.loads(ENV("GENIUS_EXAMPLE_CONTAINER_ENV") or "{}"),
    "waiter_delay": 10,
}

with DAG(
    dag_id="genius_ecs_service",
    schedule=None,
    catchup=False,
    tags=["genius", "example", "aws", "ecs", "service"],
    doc_md=__doc__,
) as genius_ecs_service:
    start = GeniusEcsServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=int(ENV("GENIUS_EXAMPLE_SERVICE_PORT", "8000")),
        health_path="/health",
        ready_timeout=120,
        **ECS,
    )
    ask = GeniusEcsOperator.partial(
        task_id="ask",
        service="start_echo",
        task_class="airflow_genius.examples.tasks:ServiceClient",
        method="call",
        **ECS,
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusEcsServiceStopOperator(
        task_id="stop_echo", service="start_echo", cluster=CLUSTER, aws_conn_id=AWS_CONN_ID
    )
    start >> ask >> stop.as_teardown(setups=start)
