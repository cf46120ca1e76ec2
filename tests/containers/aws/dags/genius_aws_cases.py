"""Test DAGs for the AWS Batch and ECS runners (tests/containers/aws/test_batch.py, test_ecs.py): a bolt over S3, a failing task,
a sleeper (kill / crash + retry), the two secret cases and a bounded stream window — one DAG per case and
runner.

Configured by the tests through the environment (names made by tests/containers/aws/rig.py):
``GENIUS_TEST_AWS_CONN_ID``, ``GENIUS_TEST_BUCKET``, ``GENIUS_TEST_CONTAINER_ENV`` (JSON: the plain
environment that lets the container reach moto), ``GENIUS_TEST_SLEEP``, ``GENIUS_TEST_STATE_CONN_ID``;
Batch: ``GENIUS_TEST_BATCH_QUEUE``, ``GENIUS_TEST_BATCH_JOBDEF``, ``GENIUS_TEST_BATCH_JOBDEF_SECRET``;
ECS: ``GENIUS_TEST_ECS_CLUSTER``, ``GENIUS_TEST_ECS_TASKDEF``, ``GENIUS_TEST_ECS_TASKDEF_SECRET``,
``GENIUS_TEST_ECS_LOG_GROUP``, ``GENIUS_TEST_ECS_LOG_PREFIX``; the stream DAGs: ``GENIUS_TEST_STREAM_BASE``
(a Redis URL the containers reach), ``GENIUS_TEST_STREAM_PREFIX`` (the names of its streams).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import DAG
from stream_windows import stream_tasks

from airflow_genius.operators.batch import GeniusBatchBoltOperator, GeniusBatchOperator
from airflow_genius.operators.ecs import GeniusEcsBoltOperator, GeniusEcsOperator

ECHO = "airflow_genius.examples.tasks:Echo"
WORD_COUNT = "airflow_genius.examples.tasks:WordCount"
ENV = os.environ.get
BUCKET = ENV("GENIUS_TEST_BUCKET", "genius-test")
SLEEP = float(ENV("GENIUS_TEST_SLEEP", "30"))
COMMON: dict[str, Any] = {
    "aws_conn_id": ENV("GENIUS_TEST_AWS_CONN_ID", "aws_default"),
    "environment": json.loads(ENV("GENIUS_TEST_CONTAINER_ENV", "{}")),
    "retries": 0,
}
BATCH: dict[str, Any] = {
    **COMMON,
    "job_queue": ENV("GENIUS_TEST_BATCH_QUEUE", "genius-queue"),
    "job_definition": ENV("GENIUS_TEST_BATCH_JOBDEF", "genius-runtime"),
    "poll_interval": 1,
}
ECS: dict[str, Any] = {
    **COMMON,
    "cluster": ENV("GENIUS_TEST_ECS_CLUSTER", "genius"),
    "task_definition": ENV("GENIUS_TEST_ECS_TASKDEF", "genius-runtime"),
    "container_name": "genius",
    "launch_type": "FARGATE",
    "awslogs_group": ENV("GENIUS_TEST_ECS_LOG_GROUP", "/ecs/genius"),
    "awslogs_stream_prefix": ENV("GENIUS_TEST_ECS_LOG_PREFIX", "genius"),
    "awslogs_fetch_interval": __import__("datetime").timedelta(seconds=1),
    "waiter_delay": 1,
}
RUNNERS: dict[str, tuple[type, type, dict[str, Any], dict[str, Any]]] = {
    # runner: (operator, bolt operator, arguments, the definition that declares the state secret)
    "batch": (GeniusBatchOperator, GeniusBatchBoltOperator, BATCH,
              {"job_definition": ENV("GENIUS_TEST_BATCH_JOBDEF_SECRET", "genius-runtime-secret")}),
    "ecs": (GeniusEcsOperator, GeniusEcsBoltOperator, ECS,
            {"task_definition": ENV("GENIUS_TEST_ECS_TASKDEF_SECRET", "genius-runtime-secret")}),
}  # fmt: skip


def _dags(runner: str) -> dict[str, DAG]:
    operator, bolt, args, secret_definition = RUNNERS[runner]
    dags: dict[str, DAG] = {}
    with DAG(dag_id=f"genius_{runner}_bolt", schedule=None, catchup=False) as dag:
        bolt(
            task_id="count", task_class=WORD_COUNT, method="count", method_kwargs={"top": 3},
            input_uri=f"s3://{BUCKET}/quotes/", output_uri=f"s3://{BUCKET}/counts/", **args,
        )  # fmt: skip
        bolt(
            task_id="count_deferred", task_class=WORD_COUNT, method="count", method_kwargs={"top": 3},
            input_uri=f"s3://{BUCKET}/quotes/", output_uri=f"s3://{BUCKET}/counts_deferred/",
            deferrable=True, **args,
        )  # fmt: skip
    dags[dag.dag_id] = dag
    with DAG(dag_id=f"genius_{runner}_fail", schedule=None, catchup=False) as dag:
        operator(
            task_id="raises", task_class=ECHO, method="fail",
            method_kwargs={"message": f"the {runner} task broke"}, **args,
        )  # fmt: skip
    dags[dag.dag_id] = dag
    with DAG(dag_id=f"genius_{runner}_sleeper", schedule=None, catchup=False) as dag:
        operator(task_id="sleep", task_class=ECHO, method="sleep", method_kwargs={"seconds": SLEEP}, **args)
    dags[dag.dag_id] = dag
    with DAG(dag_id=f"genius_{runner}_secrets", schedule=None, catchup=False) as dag:
        state = {"state_conn_id": ENV("GENIUS_TEST_STATE_CONN_ID", "genius_state_pw")}
        operator(task_id="refused", task_class=ECHO, method="say", method_args=["hi"], **state, **args)
        operator(
            task_id="platform", task_class=ECHO, method="environment", method_args=[["GENIUS_STATE_PASSWORD"]],
            **state, **{**args, **secret_definition},
        )  # fmt: skip
    dags[dag.dag_id] = dag
    with DAG(dag_id=f"genius_{runner}_stream", schedule="*/5 * * * *", catchup=False) as dag:
        stream_tasks(operator, bolt_args={"deferrable": True}, **args)
    dags[dag.dag_id] = dag
    return dags


for _runner in RUNNERS:
    globals().update(_dags(_runner))
