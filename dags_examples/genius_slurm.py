"""Genius tasks on a Slurm cluster over SSH: a spout → bolt pipeline, and a service with two clients.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_SSH_CONN_ID`` — an ``ssh`` connection to the login node (default ``genius_slurm``);
* ``GENIUS_EXAMPLE_SLURM_SETUP`` — shell line that puts ``genius`` on PATH on the compute node
  (e.g. ``source /opt/genius/bin/activate``); ``GENIUS_EXAMPLE_SLURM_PARTITION`` — the partition;
* ``GENIUS_EXAMPLE_DATA`` — a folder the compute nodes share (output roots);
* ``GENIUS_EXAMPLE_SERVICE_PORT`` — the service's port (default 8765).
The run records go to ``[genius] state_uri``/``state_conn_id``, which the compute nodes must reach.

``genius_slurm_service``: a setup task starts a genius service (``EchoService.serve``) as a Slurm job and
waits until it answers its health path, two genius clients on Slurm call it (``SERVICE_URL`` in their
environment) and record latency metrics in their run records, and a teardown stops the service with
SIGTERM (its run record ends SUCCESS) — also when a client fails (try ``path="/missing"``).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG, Param

from airflow_genius.operators.slurm import (
    GeniusSlurmBoltOperator,
    GeniusSlurmOperator,
    GeniusSlurmSpoutOperator,
)
from airflow_genius.operators.slurm_service import GeniusSlurmServiceOperator, GeniusSlurmServiceStopOperator

SSH_CONN_ID = os.environ.get("GENIUS_EXAMPLE_SSH_CONN_ID", "genius_slurm")
SETUP = [line for line in [os.environ.get("GENIUS_EXAMPLE_SLURM_SETUP", "")] if line]
PARTITION = os.environ.get("GENIUS_EXAMPLE_SLURM_PARTITION") or None
DATA_ROOT = os.environ.get(
    "GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data")
)
SERVICE_PORT = int(os.environ.get("GENIUS_EXAMPLE_SERVICE_PORT", "8765"))
SLURM: dict[str, Any] = {
    "ssh_conn_id": SSH_CONN_ID,
    "setup": SETUP,
    "partition": PARTITION,
    "poll_interval": 2.0,
}

with DAG(
    dag_id="genius_slurm_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "slurm"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "deferrable": Param(
            True, type="boolean", description="(informational) the bolt waits in the triggerer"
        ),
    },
    doc_md=__doc__,
) as genius_slurm_pipeline:
    fetch = GeniusSlurmSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{DATA_ROOT}/slurm/quotes",
        time="00:10:00",
        **SLURM,
    )
    count = GeniusSlurmBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{DATA_ROOT}/slurm/counts",
        time="00:10:00",
        deferrable=True,
        **SLURM,
    )
    fetch >> count

with DAG(
    dag_id="genius_slurm_service",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "slurm"],
    params={
        "calls": Param(5, type="integer", minimum=1, maximum=1000, description="Calls per client"),
        "path": Param("/echo", type="string", description="Path the clients request"),
    },
    doc_md=__doc__,
) as genius_slurm_service:
    start = GeniusSlurmServiceOperator(
        task_id="start_service",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=SERVICE_PORT,
        service_name="echo",
        health_path="/health",
        ready_timeout=120,  # to answer /health once running
        start_timeout=300,  # to leave the queue and start
        time="00:30:00",  # the job's limit bounds how long it serves
        **SLURM,
    )
    clients = GeniusSlurmOperator.partial(
        task_id="client",
        task_class="airflow_genius.examples.tasks:ServiceClient",
        method="call",
        service="start_service",  # SERVICE_NAME/HOSTNAME/PORT/URL in the client's environment
        time="00:05:00",
        **SLURM,
    ).expand(method_kwargs=[{"times": "{{ params.calls }}", "path": "{{ params.path }}"}] * 2)
    stop = GeniusSlurmServiceStopOperator(
        task_id="stop_service", ssh_conn_id=SSH_CONN_ID, service="start_service"
    )
    start >> clients >> stop.as_teardown(setups=start)
