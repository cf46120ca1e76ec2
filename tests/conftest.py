"""Shared fixtures: where the real engines of the test rig listen.

`scripts/services` starts them (Redis, PostgreSQL, moto_server). A test that needs an engine which is
not reachable FAILS with the command to start it: a missing engine never turns into a skipped test.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

# Tests that import the task SDK in this process (hooks, triggers, request builders, the XCom backend)
# get a throwaway AIRFLOW_HOME, set before anything imports airflow: importing it creates
# $AIRFLOW_HOME/logs and reads $AIRFLOW_HOME/airflow.cfg, and the developer's ~/airflow or [genius]
# settings must not take part. Child processes get their own home (tests/airflow_fixtures.py).
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="genius-tests-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
atexit.register(shutil.rmtree, _AIRFLOW_HOME, True)

# airflow_env / run_python: real Airflow in child processes, for tests/airflow, tests/slurm, tests/xcom …
pytest_plugins = ["airflow_fixtures"]

REDIS_URL = os.environ.get("GENIUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("GENIUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/genius_test")
AWS_ENDPOINT = os.environ.get("GENIUS_TEST_AWS_ENDPOINT", "http://127.0.0.1:5055")

# boto3 reads these natively: every client in tests (and in `genius run` subprocesses) talks to moto_server.
os.environ.setdefault("AWS_ENDPOINT_URL", AWS_ENDPOINT)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _require_tcp(url: str, what: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        pytest.fail(
            f"{what} is not reachable at {host}:{port} ({exc}); start the test rig with `scripts/services`",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis database reserved for tests (db 15 by default)."""
    _require_tcp(REDIS_URL, "Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a real PostgreSQL database reserved for tests (no password: trust auth on loopback)."""
    _require_tcp(POSTGRES_URL, "PostgreSQL")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def aws_endpoint() -> str:
    """moto_server endpoint; boto3 clients already point at it through AWS_ENDPOINT_URL."""
    _require_tcp(AWS_ENDPOINT, "moto_server")
    return AWS_ENDPOINT


@pytest.fixture
def unique_name() -> str:
    """A short name unique to this test (bucket, table, stream, key prefix)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_bucket(aws_endpoint: str, unique_name: str) -> Iterator[str]:
    """A fresh bucket on moto_server, emptied and removed after the test."""
    import boto3

    s3 = boto3.resource("s3")
    bucket = s3.create_bucket(Bucket=unique_name)
    yield unique_name
    bucket.objects.all().delete()
    bucket.delete()
