"""A genius service in a Docker container, two clients calling it, and a teardown that stops it.

``start_echo`` starts ``EchoService.serve`` (``POST/GET /echo``, ``GET /health``) in the runtime image and
succeeds once the service answers its health path; its XCom is where it listens. The two ``ask`` clients
(``ServiceClient.call``, one mapped task) get ``SERVICE_URL`` and friends in their environment from that
XCom (``service="start_echo"``), call ``/echo`` and record their latencies in their run records.
``stop_echo`` is the teardown: it stops the service's container whatever happened to the clients, and
the service's run record ends SUCCESS.

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_DOCKER_URL`` — the Docker engine (default ``unix://var/run/docker.sock``);
* ``GENIUS_EXAMPLE_IMAGE`` — the runtime image (default ``airflow-genius-runtime:<version>``);
* ``GENIUS_EXAMPLE_DOCKER_NETWORK`` — the containers' network (default ``host``: a state store on the
  Docker host's loopback is reachable, and clients call the service at the host's address). On a
  user-defined network (``docker network create genius``) clients call the service's container at its
  IP address on that network, and the state store must be reachable from it;
* ``GENIUS_EXAMPLE_SERVICE_PORT`` — the port the service listens on (default 8000; with the host
  network it must be free on the Docker host).

The run records go to ``[genius] state_conn_id``/``state_uri``, which the **containers** must reach (a
Redis or PostgreSQL connection; see ``genius_docker.py``).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG, Param

from airflow_genius.operators.docker import DEFAULT_IMAGE, GeniusDockerOperator
from airflow_genius.operators.docker_service import (
    GeniusDockerServiceOperator,
    GeniusDockerServiceStopOperator,
)

# The same engine arguments for the service, its clients and its teardown.
DOCKER: dict[str, Any] = {
    "image": os.environ.get("GENIUS_EXAMPLE_IMAGE", DEFAULT_IMAGE),
    "docker_url": os.environ.get("GENIUS_EXAMPLE_DOCKER_URL", "unix://var/run/docker.sock"),
    "network_mode": os.environ.get("GENIUS_EXAMPLE_DOCKER_NETWORK", "host"),
}

with DAG(
    dag_id="genius_docker_service",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "docker", "service"],
    params={"calls": Param(20, type="integer", minimum=1, maximum=10_000, description="Calls per client")},
    doc_md=__doc__,
) as genius_docker_service:
    start = GeniusDockerServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=int(os.environ.get("GENIUS_EXAMPLE_SERVICE_PORT", "8000")),
        health_path="/health",
        ready_timeout=120,
        **DOCKER,
    )
    ask = GeniusDockerOperator.partial(
        task_id="ask",
        service="start_echo",  # SERVICE_NAME/HOSTNAME/PORT/URL in each client's environment
        task_class="airflow_genius.examples.tasks:ServiceClient",
        method="call",
        **DOCKER,
    ).expand(method_kwargs=[{"times": "{{ params.calls }}", "path": "/echo"}] * 2)
    stop = GeniusDockerServiceStopOperator(task_id="stop_echo", service="start_echo", **DOCKER)
    start >> ask >> stop.as_teardown(setups=start)
