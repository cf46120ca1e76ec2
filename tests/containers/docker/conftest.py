"""Fixtures of the Docker runner tests: the rig's engine, and an Airflow environment whose genius
tasks keep their run records in a Redis key space of their own (the containers use the host network).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from containers.docker.rig import DOCKER_URL, IMAGE, require_engine


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """``docker.APIClient`` on podman's Docker API (fails with the rig hint if it does not answer)."""
    return require_engine()


@pytest.fixture
def redis_state_uri(redis_url: str) -> Iterator[str]:
    """A Redis state URI with a prefix unique to this test; its keys are deleted afterwards."""
    import redis

    prefix = f"tdocker{uuid.uuid4().hex[:10]}"
    yield f"{redis_url}?prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def docker_env(airflow_env: dict[str, str], docker_client: Any, redis_state_uri: str) -> dict[str, str]:
    """Airflow env + the rig's Docker engine and image + a private Redis state store."""
    return {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": redis_state_uri,
        "GENIUS_TEST_DOCKER_URL": DOCKER_URL,
        "GENIUS_TEST_IMAGE": IMAGE,
        "GENIUS_EXAMPLE_DOCKER_URL": DOCKER_URL,
        "GENIUS_EXAMPLE_IMAGE": IMAGE,
        "GENIUS_EXAMPLE_DOCKER_NETWORK": "host",
    }
