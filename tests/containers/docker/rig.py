"""The Docker engine of the test rig: podman's Docker API (scripts/rig/podman.sh) and its runtime image.

An engine that does not answer FAILS the tests with the command that starts it (never a skip).

    client = require_engine()          # docker.APIClient on the rig's socket
    wait_for_container(client, name)   # inspect dict once it runs
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

DOCKER_URL = os.environ.get("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock")
IMAGE = os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev")
HINT = "start the test rig with `scripts/services` (it starts podman's Docker API and builds the image)"


def require_engine() -> Any:
    """A ``docker.APIClient`` on the rig's engine, after checking it answers and has the image."""
    import docker

    try:
        client = docker.APIClient(base_url=DOCKER_URL, timeout=30)
        client.ping()
    except Exception as exc:  # any failure to talk to the socket means the same thing here
        pytest.fail(f"podman's Docker API does not answer at {DOCKER_URL} ({exc}); {HINT}", pytrace=False)
    if not client.images(name=IMAGE):
        pytest.fail(f"the runtime image {IMAGE} is missing on {DOCKER_URL}; {HINT}", pytrace=False)
    return client


def inspect_or_none(client: Any, name: str) -> dict[str, Any] | None:
    """The container's inspect dict, or None when no container has that name."""
    import docker.errors

    try:
        found: dict[str, Any] = client.inspect_container(name)
    except docker.errors.NotFound:
        return None
    return found


def wait_for_container(
    client: Any, name: str, *, timeout: float = 120, running: bool = True
) -> dict[str, Any]:
    """Wait until the container ``name`` exists (and runs, unless ``running=False``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = inspect_or_none(client, name)
        if found is not None and (found["State"].get("Running") or not running):
            return found
        time.sleep(0.2)
    raise AssertionError(f"container {name} did not {'start' if running else 'appear'} within {timeout}s")


def containers_of(client: Any, dag_id: str, task_id: str) -> set[str]:
    """Ids of the containers (any state) the genius operator labelled with this dag and task."""
    labels = [f"airflow_genius.dag_id={dag_id}", f"airflow_genius.task_id={task_id}"]
    return {c["Id"] for c in client.containers(all=True, filters={"label": labels})}


def wait_for_new_container(
    client: Any, dag_id: str, task_id: str, *, known: set[str], timeout: float = 120
) -> dict[str, Any]:
    """Wait until a container of this dag and task that is not in ``known`` runs; its inspect dict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for container_id in containers_of(client, dag_id, task_id) - known:
            found = inspect_or_none(client, container_id)
            if found is not None and found["State"].get("Running"):
                return found
        time.sleep(0.2)
    raise AssertionError(f"no new container of {dag_id}.{task_id} started within {timeout}s")


def wait_until_stopped(client: Any, name: str, *, timeout: float = 60) -> dict[str, Any] | None:
    """Wait until the container ``name`` is gone (None) or has ended (its inspect dict)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = inspect_or_none(client, name)
        # podman reports "stopping" (Running false) while its stop timeout runs: not stopped yet
        if found is None or found["State"].get("Status") in ("exited", "stopped", "dead"):
            return found
        time.sleep(0.2)
    raise AssertionError(f"container {name} still runs {timeout}s later")
