"""Fixtures of the AWS Batch / ECS runner tests: the moto resources (created once per session under
unique names), a bucket with quotes, and the Airflow environment that points the test DAGs
(tests/containers/aws/dags/genius_aws_cases.py) at them.

The run records live in the rig's Redis (db 15, a prefix per test): the worker and the containers both
reach it on 127.0.0.1 (host networking). The secret cases use a PostgreSQL state connection with a
password; the rig's PostgreSQL trusts loopback, so a container that never receives the password (the
platform's secret delivery is not emulated by moto) still reaches it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containers.aws import rig

QUOTES = [
    {"id": 0, "text": "the quick brown fox jumps over the lazy dog"},
    {"id": 1, "text": "the only thing we have to fear is fear itself"},
    {"id": 2, "text": "all that glitters is not gold"},
]


@pytest.fixture(scope="session")
def secret_value() -> str:
    """The state store password: it must never show up in a request, a describe answer or a log."""
    return f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def aws_secret_arn(secret_value: str) -> str:
    rig.require_engines()
    return rig.secret_arn(rig.unique("genius-state-password"), secret_value)


@pytest.fixture(scope="session")
def batch_rig(aws_secret_arn: str) -> dict[str, str]:
    """Queue and job definitions on moto (moto runs their containers through podman)."""
    rig.require_engines(batch=True)
    return rig.batch_setup(aws_secret_arn)


@pytest.fixture(scope="session")
def quotes_bucket() -> Iterator[str]:
    """A bucket on moto with three quotes as JSON lines under ``quotes/``."""
    rig.require_engines()
    s3 = rig.client("s3")
    name = rig.unique("genius-aws")
    s3.create_bucket(Bucket=name)
    body = "".join(json.dumps(q) + "\n" for q in QUOTES)
    s3.put_object(Bucket=name, Key="quotes/part-0000.jsonl", Body=body.encode())
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def aws_env(
    airflow_env: dict[str, str],
    quotes_bucket: str,
    secret_value: str,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
) -> dict[str, Any]:
    """Airflow env for the test DAGs (the runner-specific names are added by each test module)."""
    prefix = f"g{uuid.uuid4().hex[:10]}"
    state_conn = {
        "conn_type": "genius_postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
        "password": secret_value, "schema": "genius_test", "extra": {"table_prefix": prefix},
    }  # fmt: skip
    return {
        **airflow_env,
        "AIRFLOW_CONN_GENIUS_AWS": rig.CONN_JSON,
        "AIRFLOW_CONN_GENIUS_STATE_PW": json.dumps(state_conn),
        "AIRFLOW__GENIUS__STATE_URI": f"{redis_url}?prefix={prefix}",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_TEST_AWS_CONN_ID": rig.CONN_ID,
        "GENIUS_TEST_BUCKET": quotes_bucket,
        "GENIUS_TEST_CONTAINER_ENV": json.dumps(rig.CONTAINER_ENV),
        "GENIUS_TEST_STATE_CONN_ID": "genius_state_pw",
    }


@pytest.fixture(scope="session")
def ecs_rig(aws_secret_arn: str) -> Iterator[dict[str, Any]]:
    """Cluster and task definitions on moto, and the test-side agent that runs their tasks."""
    from support.ecs_agent import EcsAgent

    names = rig.ecs_setup(aws_secret_arn)
    agent = EcsAgent(cluster=names["cluster"], endpoint=rig.ENDPOINT, docker_host=rig.DOCKER_HOST).start()
    yield {**names, "agent": agent}
    agent.stop()


@pytest.fixture
def ecs_env(aws_env: dict[str, str], ecs_rig: dict[str, Any]) -> dict[str, str]:
    """``aws_env`` plus the names of the ECS rig (what the ECS test DAGs read)."""
    return {
        **aws_env,
        "GENIUS_TEST_ECS_CLUSTER": ecs_rig["cluster"],
        "GENIUS_TEST_ECS_TASKDEF": ecs_rig["taskdef"],
        "GENIUS_TEST_ECS_TASKDEF_SECRET": ecs_rig["taskdef_secret"],
        "GENIUS_TEST_ECS_LOG_GROUP": ecs_rig["log_group"],
        "GENIUS_TEST_ECS_LOG_PREFIX": ecs_rig["log_prefix"],
    }
