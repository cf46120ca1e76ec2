"""The example DAGs of the AWS runners: they import without AWS, and they run on the rig."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

from containers.aws import rig

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "dags_examples"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FILES = ("genius_batch.py", "genius_ecs.py", "genius_ecs_service.py")


@pytest.mark.airflow
def test_examples_import_without_aws(airflow_env: dict[str, str], tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    env = {k: v for k, v in airflow_env.items() if not k.startswith(("AWS_", "GENIUS_EXAMPLE_"))}
    env.update(AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path), AWS_ENDPOINT_URL="http://127.0.0.1:9")  # unreachable
    done = subprocess.run([AIRFLOW, "dags", "list-import-errors", "--local", "-o", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == [], done.stdout + done.stderr
    listed = subprocess.run([AIRFLOW, "dags", "list", "--local", "-o", "plain"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False).stdout  # fmt: skip
    assert "genius_aws_batch_pipeline" in listed and "genius_ecs_pipeline" in listed
    assert "genius_ecs_service" in listed


def example_env(aws_env: dict[str, str]) -> dict[str, str]:
    return {
        **aws_env,
        "GENIUS_EXAMPLE_AWS_CONN_ID": rig.CONN_ID,
        "GENIUS_EXAMPLE_S3_ROOT": f"s3://{aws_env['GENIUS_TEST_BUCKET']}/example",
        "GENIUS_EXAMPLE_CONTAINER_ENV": json.dumps(rig.CONTAINER_ENV),
    }


def check_pipeline(result: dict[str, Any], output: str, count: int) -> None:
    assert result["state"] == "success", output[-6000:]
    tis = {ti["task_id"]: ti for ti in result["tis"]}
    assert tis["fetch"]["xcom"]["records"] == count
    assert tis["count"]["xcom"]["records"] == count  # the bolt read the spout's committed partition


@pytest.mark.containers
@pytest.mark.aws
@pytest.mark.airflow
@pytest.mark.slow
def test_batch_example_runs_on_the_rig(
    run_python, aws_env: dict[str, str], batch_rig: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    env = {**example_env(aws_env), "GENIUS_EXAMPLE_BATCH_QUEUE": batch_rig["queue"],
           "GENIUS_EXAMPLE_BATCH_JOB_DEFINITION": batch_rig["jobdef"]}  # fmt: skip
    result, output = dag_test(run_python, env, EXAMPLES, "genius_aws_batch_pipeline", {"count": 7},
                              file="genius_batch", timeout=600)  # fmt: skip
    check_pipeline(result, output, 7)


@pytest.mark.containers
@pytest.mark.aws
@pytest.mark.airflow
@pytest.mark.slow
def test_ecs_example_runs_on_the_rig(run_python, aws_env: dict[str, str], ecs_rig: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    env = {**example_env(aws_env), "GENIUS_EXAMPLE_ECS_CLUSTER": ecs_rig["cluster"],
           "GENIUS_EXAMPLE_ECS_TASK_DEFINITION": ecs_rig["taskdef"],
           "GENIUS_EXAMPLE_ECS_LOG_GROUP": ecs_rig["log_group"],
           "GENIUS_EXAMPLE_ECS_LOG_PREFIX": ecs_rig["log_prefix"]}  # fmt: skip
    result, output = dag_test(run_python, env, EXAMPLES, "genius_ecs_pipeline", {"count": 7},
                              file="genius_ecs", timeout=600)  # fmt: skip
    check_pipeline(result, output, 7)


@pytest.mark.containers
@pytest.mark.aws
@pytest.mark.airflow
@pytest.mark.slow
def test_ecs_service_example_runs_on_the_rig(
    run_python, aws_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    from support.private_stores import free_port

    from airflow_genius.operators.ecs_service import TEARDOWN_REASON, ecs_started_by

    env = {**example_env(aws_env), "GENIUS_EXAMPLE_ECS_CLUSTER": ecs_rig["cluster"],
           "GENIUS_EXAMPLE_ECS_TASK_DEFINITION": ecs_rig["taskdef"],
           "GENIUS_EXAMPLE_ECS_LOG_GROUP": ecs_rig["log_group"],
           "GENIUS_EXAMPLE_ECS_LOG_PREFIX": ecs_rig["log_prefix"],
           "GENIUS_EXAMPLE_SERVICE_PORT": str(free_port())}  # fmt: skip
    result, output = dag_test(run_python, env, EXAMPLES, "genius_ecs_service", file="genius_ecs_service",
                              timeout=600)  # fmt: skip
    assert result["state"] == "success", output[-6000:]
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in result["tis"]}
    url = tis[("start_echo", -1)]["xcom"]["url"]
    assert [tis[("ask", i)]["xcom"]["url"] for i in (0, 1)] == [f"{url}/echo"] * 2
    (task,) = rig.ecs_tasks(
        ecs_rig["cluster"], ecs_started_by("genius_ecs_service", "start_echo", result["run_id"])
    )
    assert (task["lastStatus"], task["stoppedReason"]) == ("STOPPED", TEARDOWN_REASON)
