"""The AWS side of the test rig as the Batch/ECS tests see it: moto_server (which runs Batch job
containers through podman), podman's Docker API and the runtime image; helpers that read moto and
podman directly (not through the code under test).

moto is shared with other tests running at the same time: everything here is created under names unique
to the session, nothing is ever reset.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RIG_DIR = Path(os.environ.get("GENIUS_RIG_DIR", "/tmp/genius-rig"))
DOCKER_HOST = os.environ.get("GENIUS_TEST_DOCKER_HOST", f"unix://{RIG_DIR}/podman.sock")
IMAGE = os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev")
ENDPOINT = os.environ.get("GENIUS_TEST_AWS_ENDPOINT", "http://127.0.0.1:5055")
REGION = "us-east-1"
CONN_ID = "genius_aws"
CONN_JSON = json.dumps(
    {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": ENDPOINT, "region_name": REGION},
    }
)
#: Plain environment that lets the runtime in a container reach moto (S3) like the worker does; the
#: containers share the host network (moto runs Batch jobs with MOTO_DOCKER_NETWORK_MODE=host, the ECS
#: agent uses network_mode=host), so 127.0.0.1 is the same machine.
CONTAINER_ENV = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
HINT = "start the test rig with `scripts/services` (it restarts a moto_server lacking DOCKER_HOST)"


def client(service: str) -> Any:
    import boto3

    return boto3.client(
        service, endpoint_url=ENDPOINT, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def docker() -> Any:
    import docker as docker_sdk

    return docker_sdk.DockerClient(base_url=DOCKER_HOST, timeout=60)


def moto_environment() -> dict[str, str] | None:
    """The environment of the process listening on moto's port (None if it cannot be read)."""
    port = ENDPOINT.rsplit(":", 1)[-1].strip("/")
    done = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False)
    found = re.search(r"pid=(\d+)", done.stdout)
    if found is None:
        return None
    pid = found.group(1)
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def require_engines(*, batch: bool = False) -> None:
    """Fail (never skip) with a hint when moto, podman or the image is missing."""
    host, port = ENDPOINT.split("//")[1].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"moto_server is not reachable at {ENDPOINT} ({exc}): {HINT}", pytrace=False)
    try:
        engine = docker()
        engine.ping()
        engine.images.get(IMAGE)
    except Exception as exc:
        pytest.fail(
            f"podman's Docker API at {DOCKER_HOST} or image {IMAGE} is missing ({exc}): {HINT}", pytrace=False
        )
    if batch:
        env = moto_environment()
        if env is not None and env.get("DOCKER_HOST") != DOCKER_HOST:
            pytest.fail(f"moto_server runs without DOCKER_HOST={DOCKER_HOST}, so it cannot run Batch jobs: {HINT}",
                        pytrace=False)  # fmt: skip
        if env is not None and env.get("MOTO_DOCKER_NETWORK_MODE") != "host":
            pytest.fail(f"moto_server runs without MOTO_DOCKER_NETWORK_MODE=host: {HINT}", pytrace=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def secret_arn(name: str, value: str) -> str:
    """A Secrets Manager secret on moto holding ``value`` (what a job/task definition references)."""
    return client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]


def batch_setup(secret_ref: str) -> dict[str, str]:
    """An UNMANAGED compute environment, a queue and two job definitions (one declaring the state
    password as a secret) on moto; returns their names."""
    batch, iam = client("batch"), client("iam")
    name = unique("genius-aws")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env_arn = batch.create_compute_environment(
        computeEnvironmentName=name, type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    batch.create_job_queue(
        jobQueueName=name, state="ENABLED", priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env_arn}],
    )  # fmt: skip
    props = {"image": IMAGE, "vcpus": 1, "memory": 512, "command": ["--help"]}
    batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=props)
    batch.register_job_definition(
        jobDefinitionName=f"{name}-secret", type="container",
        containerProperties={**props, "secrets": [{"name": "GENIUS_STATE_PASSWORD", "valueFrom": secret_ref}]},
    )  # fmt: skip
    return {"queue": name, "jobdef": name, "jobdef_secret": f"{name}-secret"}


def batch_jobs(queue: str, name: str) -> list[dict[str, Any]]:
    """Every job of ``queue`` named ``name`` (all states), oldest first."""
    found = client("batch").list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}])
    return sorted((j for j in found["jobSummaryList"] if j["jobName"] == name), key=lambda j: j["createdAt"])


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 120, interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(interval)


def containers_named(prefix: str, *, running_only: bool = True) -> list[Any]:
    """podman containers whose name starts with ``prefix``."""
    found = docker().containers.list(all=not running_only)
    return [c for c in found if c.name.startswith(prefix)]


def ecs_setup(secret_ref: str) -> dict[str, str]:
    """A cluster and two task definitions (one declaring the state password as a secret) on moto.

    ``networkMode: host`` because the agent runs containers on the host network (and moto's FARGATE
    ``awsvpc`` path crashes on its own ENI model); ``launch_type="FARGATE"`` then needs no container
    instance in moto."""
    ecs = client("ecs")
    name = unique("genius-ecs")
    ecs.create_cluster(clusterName=name)
    container = {
        "name": "genius", "image": IMAGE, "essential": True, "memory": 512, "cpu": 256,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/ecs/{name}", "awslogs-stream-prefix": "genius", "awslogs-region": REGION}},
    }  # fmt: skip
    ecs.register_task_definition(family=name, networkMode="host", containerDefinitions=[container])
    ecs.register_task_definition(
        family=f"{name}-secret", networkMode="host",
        containerDefinitions=[{**container, "secrets": [{"name": "GENIUS_STATE_PASSWORD", "valueFrom": secret_ref}]}],
    )  # fmt: skip
    return {"cluster": name, "taskdef": name, "taskdef_secret": f"{name}-secret",
            "log_group": f"/ecs/{name}", "log_prefix": "genius"}  # fmt: skip


def ecs_tasks(cluster: str, started_by: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """Tasks of ``cluster`` (all states unless ``status``), optionally only those ``started_by``."""
    ecs = client("ecs")
    args: dict[str, Any] = {"cluster": cluster}
    if started_by:
        args["startedBy"] = started_by
    if status:
        args["desiredStatus"] = status
    arns = ecs.list_tasks(**args)["taskArns"]
    return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
