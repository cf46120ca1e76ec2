"""Fixtures of the Kubernetes runner tests: the Pod API server (tests/support/pod_api) on podman, a
``kubernetes`` connection to it, a host folder shared with the pods, and a PostgreSQL state connection
WITH a password (Postgres trusts 127.0.0.1, so any password works — and it must stay secret).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.pod_api import PodApiServer

DOCKER_HOST = os.environ.get("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock")
IMAGE = os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev")
HINT = "start the test rig with `scripts/services` (it starts podman's Docker API and builds the image)"
K8S_CONN_ID = "genius_k8s"
STATE_CONN_ID = "genius_pg_secret"


@pytest.fixture(scope="session")
def pod_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodApiServer]:
    """The Pod API server on a free loopback port, its pods run by the rig's podman; kubeconfig at
    ``pod_api.kubeconfig_path``. Fails (never skips) when podman or the image is missing."""
    import docker

    try:
        client = docker.DockerClient(base_url=DOCKER_HOST, timeout=30)
        client.ping()
    except Exception as exc:  # any failure to talk to the socket means the same thing here
        pytest.fail(f"podman's Docker API does not answer at {DOCKER_HOST} ({exc}); {HINT}", pytrace=False)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the runtime image {IMAGE} is missing on {DOCKER_HOST}; {HINT}", pytrace=False)
    finally:
        client.close()
    server = PodApiServer(docker_host=DOCKER_HOST).start()
    server.kubeconfig_path = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A host folder for pod data (hostPath): outside pytest's 0700 tmp so uid 50000 can reach it."""
    path = Path(tempfile.mkdtemp(prefix="genius-k8s-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_state(postgres_url: str) -> Iterator[dict[str, str]]:
    """A genius_postgres connection with a password and its own tables (dropped afterwards)."""
    import psycopg

    parts = urlsplit(postgres_url)
    prefix = f"tk8s{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    conn = {
        "conn_type": "genius_postgres",
        "host": parts.hostname,
        "port": parts.port or 5432,
        "login": parts.username,
        "password": password,
        "schema": parts.path.lstrip("/"),
        "extra": {"table_prefix": prefix},
    }
    yield {"conn": json.dumps(conn), "password": password, "uri": f"{postgres_url}?table_prefix={prefix}"}
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"DROP TABLE IF EXISTS {prefix}_runs, {prefix}_task_state")


@pytest.fixture
def k8s_env(
    airflow_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str], shared_dir: Path
) -> dict[str, str]:
    """Airflow env: the `kubernetes` connection, the password-protected state connection, the image."""
    k8s_conn = {
        "conn_type": "kubernetes",
        "extra": {"kube_config_path": str(pod_api.kubeconfig_path), "in_cluster": False},  # type: ignore[attr-defined]
    }
    return {
        **airflow_env,
        f"AIRFLOW_CONN_{K8S_CONN_ID.upper()}": json.dumps(k8s_conn),
        f"AIRFLOW_CONN_{STATE_CONN_ID.upper()}": pg_state["conn"],
        "AIRFLOW__GENIUS__STATE_CONN_ID": STATE_CONN_ID,
        "GENIUS_TEST_K8S_CONN_ID": K8S_CONN_ID,
        "GENIUS_TEST_IMAGE": IMAGE,
        "GENIUS_EXAMPLE_K8S_CONN_ID": K8S_CONN_ID,
        "GENIUS_EXAMPLE_K8S_NAMESPACE": "genius-examples",
        "GENIUS_EXAMPLE_RUNTIME_IMAGE": IMAGE,
        "GENIUS_EXAMPLE_DATA": str(shared_dir),
        "GENIUS_TEST_SHARED": str(shared_dir),
    }
