"""Genius tasks in Docker containers: a spout ingests quotes, a bolt counts their words.

Both run in the runtime image (docker/Dockerfile) through :class:`GeniusDockerOperator`; the bolt's
return value (from its run record) is its XCom, and the containers' output is in the task logs.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_DOCKER_URL`` — the Docker engine (default ``unix://var/run/docker.sock``);
* ``GENIUS_EXAMPLE_IMAGE`` — the runtime image (default ``airflow-genius-runtime:<version>``);
* ``GENIUS_EXAMPLE_DOCKER_NETWORK`` — network mode of the containers (default ``host``, so a state
  store on the Docker host's loopback is reachable);
* ``GENIUS_EXAMPLE_DATA`` — a folder on the Docker host, writable by uid 50000 (``chown 50000`` it),
  bind-mounted into the containers at the same path: the spout writes its partition there and the bolt
  reads it (an ``s3://`` output works as well: set the output URIs and drop the mount).

The run records go to ``[genius] state_conn_id``/``state_uri``, which the **containers** must reach:
a Redis or PostgreSQL connection (the password reaches the container as a private environment
variable), or a SQLite file inside ``GENIUS_EXAMPLE_DATA``
(``AIRFLOW__GENIUS__STATE_URI=sqlite:///<data>/state.db``), which the mount shares with the worker.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from docker.types import Mount

from airflow_genius.operators.docker import DEFAULT_IMAGE, GeniusDockerBoltOperator, GeniusDockerSpoutOperator

DOCKER_URL = os.environ.get("GENIUS_EXAMPLE_DOCKER_URL", "unix://var/run/docker.sock")
IMAGE = os.environ.get("GENIUS_EXAMPLE_IMAGE", DEFAULT_IMAGE)
NETWORK = os.environ.get("GENIUS_EXAMPLE_DOCKER_NETWORK", "host")
DATA_ROOT = os.path.abspath(
    os.environ.get("GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data"))
)
DOCKER = {
    "image": IMAGE,
    "docker_url": DOCKER_URL,
    "network_mode": NETWORK,
    # Same path inside and outside: the partition URI the spout publishes is valid for the bolt too.
    "mounts": [Mount(target=DATA_ROOT, source=DATA_ROOT, type="bind")],
}

with DAG(
    dag_id="genius_docker_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "docker"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "top": Param(5, type="integer", minimum=1, maximum=100, description="Top words to keep"),
    },
    doc_md=__doc__,
) as genius_docker_pipeline:
    fetch = GeniusDockerSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{DATA_ROOT}/docker/quotes",
        **DOCKER,
    )
    count = GeniusDockerBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        method_kwargs={"top": "{{ params.top }}"},
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{DATA_ROOT}/docker/counts",
        **DOCKER,
    )
    fetch >> count
