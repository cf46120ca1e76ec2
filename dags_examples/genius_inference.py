"""The inference pattern on Docker: a predictor service, three stream workers, clients, and the stops.

``start_predictor`` starts ``Predictor.serve`` (``airflow_genius.core.inference``) as a genius service
and succeeds once it answers ``/health``; ``POST /predict`` appends each query to the request stream
and waits for its reply. ``worker_0`` … ``worker_2`` run ``SentimentWorker.answer``
(``airflow_genius.examples.inference``) as unbounded stream bolts: one consumer group, so the queries
are spread over them, and ``claim_idle`` lets the others take over the queries of a worker that died.
Each query is answered once. The ``ask`` clients (``PredictClient.ask``, mapped) get the predictor's
``SERVICE_URL`` from ``service="start_predictor"`` and record latencies and labels in their run
records. Once they are done, ``stop_worker_*`` stop the workers (SIGTERM: the unbounded run ends
SUCCESS, the window in progress is left for the next run) and the ``stop_predictor`` teardown stops the
predictor, also when a client failed.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_REDIS`` — the Redis of the streams, reachable from the containers (default
  ``redis://127.0.0.1:6379/0``; its password, if any, in ``GENIUS_STATE_PASSWORD``);
* ``GENIUS_EXAMPLE_DOCKER_URL``, ``GENIUS_EXAMPLE_IMAGE``, ``GENIUS_EXAMPLE_DOCKER_NETWORK`` (default
  ``host``) and ``GENIUS_EXAMPLE_SERVICE_PORT`` (default 8000), as in ``genius_docker_service.py``.

The run records go to ``[genius] state_conn_id``/``state_uri``, which the containers must reach. See
docs/inference.md.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG, Param

from airflow_genius.operators.docker import DEFAULT_IMAGE, GeniusDockerBoltOperator, GeniusDockerOperator
from airflow_genius.operators.docker_service import (
    GeniusDockerServiceOperator,
    GeniusDockerServiceStopOperator,
)

DOCKER: dict[str, Any] = {
    "image": os.environ.get("GENIUS_EXAMPLE_IMAGE", DEFAULT_IMAGE),
    "docker_url": os.environ.get("GENIUS_EXAMPLE_DOCKER_URL", "unix://var/run/docker.sock"),
    "network_mode": os.environ.get("GENIUS_EXAMPLE_DOCKER_NETWORK", "host"),
}
REDIS = os.environ.get("GENIUS_EXAMPLE_REDIS", "redis://127.0.0.1:6379/0")
# One pair of streams per DAG run: its workers answer only its predictor's queries.
STREAMS = "genius-inference-{{ run_id | replace(':', '') | replace('+', '_') }}"
REQUESTS = f"{REDIS}?stream={STREAMS}:queries"
# A reply can be duplicated only while its query is pending, and an expired query is never answered:
# the dedup sets need to outlive the predictor's timeout, not the default week.
REPLIES = f"{REDIS}?stream={STREAMS}:replies&dedup_ttl=3600"
WORKERS = 3

with DAG(
    dag_id="genius_inference",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "docker", "service", "streams"],
    params={
        "queries": Param(50, type="integer", minimum=1, maximum=100_000, description="Queries per client")
    },
    doc_md=__doc__,
) as genius_inference:
    start_predictor = GeniusDockerServiceOperator(
        task_id="start_predictor",
        task_class="airflow_genius.core.inference:Predictor",
        method="serve",
        method_kwargs={"requests": REQUESTS, "replies": REPLIES, "timeout": 30},
        service_port=int(os.environ.get("GENIUS_EXAMPLE_SERVICE_PORT", "8000")),
        ready_timeout=120,
        **DOCKER,
    )
    workers = [
        GeniusDockerBoltOperator(
            task_id=f"worker_{index}",
            task_class="airflow_genius.examples.inference:SentimentWorker",
            method="answer",
            # Every worker reads the group "sentiment" (one ensemble member); claim_idle: take over the
            # queries a dead worker held for more than 10 s.
            input_uri=f"{REQUESTS}&group=sentiment&claim_idle=10",
            output_uri=REPLIES,
            unbounded=True,
            max_records=32,  # at most 32 queries per batch (= per checkpoint)
            max_seconds=1.0,  # wait up to 1 s for a first query, then answer what is queued
            **DOCKER,
        )
        for index in range(WORKERS)
    ]
    ask = GeniusDockerOperator.partial(
        task_id="ask",
        service="start_predictor",  # SERVICE_URL etc. in each client's environment
        task_class="airflow_genius.examples.inference:PredictClient",
        method="ask",
        **DOCKER,
    ).expand(method_kwargs=[{"count": "{{ params.queries }}"}] * 2)
    stop_workers = [
        # A worker runs until stopped, so it cannot be a setup (a setup ends before its teardown): its stop
        # runs once the clients are done, whatever they did. The worker's own task removes its container.
        GeniusDockerServiceStopOperator(
            task_id=f"stop_{worker.task_id}",
            service=worker.task_id,
            trigger_rule="all_done",
            auto_remove="never",
            **DOCKER,
        )
        for worker in workers
    ]
    stop_predictor = GeniusDockerServiceStopOperator(
        task_id="stop_predictor", service="start_predictor", **DOCKER
    )
    start_predictor >> ask >> stop_workers
    ask >> stop_predictor.as_teardown(setups=start_predictor)
