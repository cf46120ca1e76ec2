"""Genius tasks as ECS tasks: a spout ingests quotes into S3, a bolt counts their words.

Both run in the runtime image (docker/Dockerfile) through :class:`GeniusEcsOperator`; the bolt waits in
the triggerer (``deferrable=True``). Each task's result (from its run record) is its XCom, and the
container's CloudWatch log is in the task log.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_AWS_CONN_ID`` — the amazon provider's connection (default ``aws_default``);
* ``GENIUS_EXAMPLE_ECS_CLUSTER`` / ``GENIUS_EXAMPLE_ECS_TASK_DEFINITION`` — a cluster and a task
  definition whose container ``GENIUS_EXAMPLE_ECS_CONTAINER`` (default ``genius``) runs the genius
  runtime image with the ``awslogs`` log driver;
* ``GENIUS_EXAMPLE_ECS_LAUNCH_TYPE`` (default ``FARGATE``), ``GENIUS_EXAMPLE_ECS_SUBNETS`` and
  ``GENIUS_EXAMPLE_ECS_SECURITY_GROUPS`` (comma-separated; for ``awsvpc`` networking);
* ``GENIUS_EXAMPLE_ECS_LOG_GROUP`` / ``GENIUS_EXAMPLE_ECS_LOG_PREFIX`` — the task definition's
  ``awslogs-group`` and ``awslogs-stream-prefix`` (defaults ``/ecs/genius`` / ``genius``);
* ``GENIUS_EXAMPLE_S3_ROOT`` — where the data goes (default ``s3://genius-example``);
* ``GENIUS_EXAMPLE_CONTAINER_ENV`` — optional JSON object of plain environment; never secrets.

The run records go to ``[genius] state_conn_id``/``state_uri``, which the **tasks** must reach. A
password for it is declared in the task definition's container (``secrets: [{"name":
"GENIUS_STATE_PASSWORD", "valueFrom": <secret ARN>}]``); the operator refuses to send it any other way.
"""

from __future__ import annotations

import json
import os

from airflow.sdk import DAG, Param

from airflow_genius.operators.ecs import GeniusEcsBoltOperator, GeniusEcsSpoutOperator

ENV = os.environ.get
S3_ROOT = ENV("GENIUS_EXAMPLE_S3_ROOT", "s3://genius-example").rstrip("/")
SUBNETS = [s for s in ENV("GENIUS_EXAMPLE_ECS_SUBNETS", "").split(",") if s]
GROUPS = [g for g in ENV("GENIUS_EXAMPLE_ECS_SECURITY_GROUPS", "").split(",") if g]
ECS = {
    "aws_conn_id": ENV("GENIUS_EXAMPLE_AWS_CONN_ID", "aws_default"),
    "cluster": ENV("GENIUS_EXAMPLE_ECS_CLUSTER", "genius"),
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
    dag_id="genius_ecs_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "aws", "ecs"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "top": Param(5, type="integer", minimum=1, maximum=100, description="Words to report"),
    },
    doc_md=__doc__,
) as genius_ecs_pipeline:
    fetch = GeniusEcsSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{S3_ROOT}/quotes",
        **ECS,
    )
    count = GeniusEcsBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        method_kwargs={"top": "{{ params.top }}"},
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{S3_ROOT}/counts",
        deferrable=True,
        **ECS,
    )
    fetch >> count
