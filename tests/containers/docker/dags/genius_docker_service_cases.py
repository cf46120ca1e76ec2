"""Test DAG of the Docker service runner (tests/containers/docker/test_docker_service.py): a service, two
mapped clients and a teardown, shaped by the environment of the run.

``GENIUS_TEST_DOCKER_URL`` / ``GENIUS_TEST_IMAGE``: the rig's engine and runtime image.
``GENIUS_TEST_NETWORK``: the containers' network (default ``host``; the rig's state stores on 127.0.0.1
are reachable then). ``GENIUS_TEST_MOUNT``: a folder bind-mounted at the same path (a SQLite state
store for containers on a user-defined network). ``GENIUS_TEST_SERVICE_PORT``, ``…_SERVICE_DELAY``
(seconds before the health path answers), ``…_READY_TIMEOUT``, ``…_ADVERTISE`` (ip or name) and
``…_CLIENT_PATH`` (a path the service does not serve makes the clients fail).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG
from docker.types import Mount

from airflow_genius.operators.docker import GeniusDockerOperator
from airflow_genius.operators.docker_service import (
    GeniusDockerServiceOperator,
    GeniusDockerServiceStopOperator,
)

ENV = os.environ.get
MOUNT = ENV("GENIUS_TEST_MOUNT")
DOCKER: dict[str, Any] = {
    "image": ENV("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev"),
    "docker_url": ENV("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock"),
    "network_mode": ENV("GENIUS_TEST_NETWORK", "host"),
    "mounts": [Mount(target=MOUNT, source=MOUNT, type="bind")] if MOUNT else [],
    "retries": 0,
}

with DAG(dag_id="genius_docker_service_cases", schedule=None, catchup=False) as genius_docker_service_cases:
    start = GeniusDockerServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        method_kwargs={"delay": float(ENV("GENIUS_TEST_SERVICE_DELAY", "0"))},
        service_port=int(ENV("GENIUS_TEST_SERVICE_PORT", "8000")),
        ready_timeout=float(ENV("GENIUS_TEST_READY_TIMEOUT", "120")),
        start_timeout=120,
        advertise=ENV("GENIUS_TEST_ADVERTISE", "ip"),  # type: ignore[arg-type]  # ip or name
        **DOCKER,
    )
    ask = GeniusDockerOperator.partial(
        task_id="ask",
        service="start_echo",
        task_class="airflow_genius.examples.tasks:ServiceClient",
        method="call",
        **DOCKER,
    ).expand(method_kwargs=[{"times": 5, "path": ENV("GENIUS_TEST_CLIENT_PATH", "/echo")}] * 2)
    stop = GeniusDockerServiceStopOperator(task_id="stop_echo", service="start_echo", **DOCKER)
    start >> ask >> stop.as_teardown(setups=start)
