"""Genius tasks as AWS Batch jobs: a spout ingests quotes into S3, a bolt counts their words.

Both run in the runtime image (docker/Dockerfile) through :class:`GeniusBatchOperator`; the bolt waits
in the triggerer (``deferrable=True``). Each task's result (from its run record) is its XCom, and the
job's CloudWatch log is in the task log.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_AWS_CONN_ID`` — the amazon provider's connection (default ``aws_default``);
* ``GENIUS_EXAMPLE_BATCH_QUEUE`` / ``GENIUS_EXAMPLE_BATCH_JOB_DEFINITION`` — a job queue and a job
  definition whose image is the genius runtime image (defaults ``genius-queue`` / ``genius-runtime``);
* ``GENIUS_EXAMPLE_S3_ROOT`` — where the data goes (default ``s3://genius-example``);
* ``GENIUS_EXAMPLE_CONTAINER_ENV`` — optional JSON object of plain environment for the jobs (for
  example ``{"AWS_DEFAULT_REGION": "eu-west-1"}``); never secrets.

The run records go to ``[genius] state_conn_id``/``state_uri``, which the **jobs** must reach (Redis,
PostgreSQL or DynamoDB). A password for it is declared in the job definition
(``containerProperties.secrets: [{"name": "GENIUS_STATE_PASSWORD", "valueFrom": <secret ARN>}]``); the
operator refuses to send it any other way.
"""

from __future__ import annotations

import json
import os

from airflow.sdk import DAG, Param

from airflow_genius.operators.batch import GeniusBatchBoltOperator, GeniusBatchSpoutOperator

S3_ROOT = os.environ.get("GENIUS_EXAMPLE_S3_ROOT", "s3://genius-example").rstrip("/")
BATCH = {
    "aws_conn_id": os.environ.get("GENIUS_EXAMPLE_AWS_CONN_ID", "aws_default"),
    "job_queue": os.environ.get("GENIUS_EXAMPLE_BATCH_QUEUE", "genius-queue"),
    "job_definition": os.environ.get("GENIUS_EXAMPLE_BATCH_JOB_DEFINITION", "genius-runtime"),
    "environment": json.loads(os.environ.get("GENIUS_EXAMPLE_CONTAINER_ENV") or "{}"),
    "poll_interval": 10,
}

with DAG(
    dag_id="genius_aws_batch_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "aws", "batch"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "top": Param(5, type="integer", minimum=1, maximum=100, description="Words to report"),
    },
    doc_md=__doc__,
) as genius_aws_batch_pipeline:
    fetch = GeniusBatchSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{S3_ROOT}/quotes",
        **BATCH,
    )
    count = GeniusBatchBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        method_kwargs={"top": "{{ params.top }}"},
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{S3_ROOT}/counts",
        deferrable=True,
        **BATCH,
    )
    fetch >> count
