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
from collections.abc import Generator, Iterator
from typing import Any
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadfile`` (scripts/test) each test module runs whole, in order, on one
    worker: its module fixtures are built once, and the names it reuses between its tests (DAG ids,
    logical dates, ports of its services) never meet themselves on another worker. Modules that
    contain a ``slow`` test are handed out first: the run ends when its last module does, so a long
    module must not start last."""
    if not hasattr(config, "workerinput"):  # only pytest-xdist's workers (they all sort alike)
        return
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    # a stable sort: the order inside a module (and among the slow, or the other, modules) is kept
    items.sort(key=lambda item: item.path not in slow)


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: pytest.TestReport) -> Generator[None, Any, Any]:
    """pytest-xdist sends each report from its worker as UTF-8: hostile text that a test logs (a lone
    surrogate, which no encoding accepts) would kill the worker. Such characters travel escaped."""
    data = yield
    return _escape_surrogates(data)


def _escape_surrogates(value: Any) -> Any:
    """``value`` with every string that UTF-8 cannot encode backslash-escaped (dicts and lists walked)."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, dict):
        return {key: _escape_surrogates(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_escape_surrogates(item) for item in value)
    return value


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
