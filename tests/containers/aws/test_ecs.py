"""GeniusEcsOperator in real Airflow ``dag.test()`` runs against moto's ECS, whose tasks the test-side
agent (tests/support/ecs_agent.py) runs as podman containers, copying their output to CloudWatch Logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from genius_dagtest import DAG_TEST, dag_test
from stream_windows import check_windows, run_twice, stream_env, stream_prefix
from support.aio import run_coroutine

from containers.aws import rig
from containers.aws.conftest import QUOTES

pytestmark = [pytest.mark.containers, pytest.mark.aws, pytest.mark.airflow, pytest.mark.slow]

TEST_DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FILE = "genius_aws_cases"


def started_by(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The provider's deterministic startedBy of one task instance (what reattach looks for)."""
    return generate_uuid(dag_id, task_id, run_id, str(map_index))


def tis_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in result["tis"]}


def only_task(cluster: str, dag_id: str, task_id: str, run_id: str) -> dict[str, Any]:
    tasks = rig.ecs_tasks(cluster, started_by(dag_id, task_id, run_id))
    assert len(tasks) == 1, tasks
    return tasks[0]


def test_bolt_reads_and_writes_s3_in_worker_and_deferred(
    run_python, ecs_env: dict[str, str], ecs_rig
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, ecs_env, TEST_DAGS, "genius_ecs_bolt", file=FILE)
    assert result["state"] == "success", output[-6000:] + str(ecs_rig["agent"].errors)
    tis = tis_by_id(result)
    for task_id, folder in (("count", "counts"), ("count_deferred", "counts_deferred")):
        xcom = tis[task_id]["xcom"]  # the run record's result, read back by the operator
        assert xcom["records"] == len(QUOTES) and xcom["top"]["the"] == 3, xcom
        keys = [o["Key"] for o in rig.client("s3").list_objects_v2(
            Bucket=ecs_env["GENIUS_TEST_BUCKET"], Prefix=f"{folder}/")["Contents"]]  # fmt: skip
        assert any(k.endswith("/_SUCCESS") for k in keys) and any(k.endswith("/top_words.json") for k in keys)
        task = only_task(ecs_env["GENIUS_TEST_ECS_CLUSTER"], "genius_ecs_bolt", task_id, result["run_id"])
        assert task["lastStatus"] == "STOPPED" and "exit code 0" in task["stoppedReason"]
        # the container's own log line, via CloudWatch Logs, in the Airflow task log
        assert (
            f"airflow_genius.runtime: run genius_ecs_bolt.{task_id}@{result['run_id']} try 1 started"
            in output
        )


def test_a_failing_task_fails_with_the_remote_traceback(run_python, ecs_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, ecs_env, TEST_DAGS, "genius_ecs_fail", file=FILE)
    assert tis_by_id(result)["raises"]["state"] == "failed", output[-6000:]
    assert "RuntimeError: the ecs task broke" in output
    assert "Traceback (most recent call last)" in output and "in fail" in output
    task = only_task(ecs_env["GENIUS_TEST_ECS_CLUSTER"], "genius_ecs_fail", "raises", result["run_id"])
    assert "exit code 1" in task["stoppedReason"]  # moto's exitCode stays 0: the run record decided


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}
    args = [str(TEST_DAGS / f"{FILE}.py"), dag_id, "{}", logical_date]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def agent_container(agent: Any, arn: str) -> Any:
    run = agent.running.get(arn)
    return run.container if run is not None else None


def test_killing_the_task_stops_the_ecs_task(ecs_env: dict[str, str], ecs_rig: dict[str, Any]) -> None:
    env = {**ecs_env, "GENIUS_TEST_SLEEP": "300"}
    cluster, agent = ecs_rig["cluster"], ecs_rig["agent"]

    def sleeper() -> list[dict[str, Any]]:
        return [t for t in rig.ecs_tasks(cluster, status="RUNNING") if agent_container(agent, t["taskArn"])
                and "Echo" in json.dumps(t["overrides"]) and '\\"sleep\\"' in json.dumps(t["overrides"])]  # fmt: skip

    child = start_dag_test(env, "genius_ecs_sleeper", "2031-01-01T00:00:00+00:00")
    try:
        (task,) = rig.wait_until("the sleeper's ECS task to run", sleeper, timeout=120)
        container_name = agent_container(agent, task["taskArn"]).name
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    (stopped,) = rig.client("ecs").describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"]
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", "Task killed by the user")
    rig.wait_until(
        "podman to drop the container", lambda: not rig.containers_named(container_name, running_only=False)
    )
    assert "Task killed by the user" in output


def test_deferred_kill_stops_the_task_from_the_trigger(ecs_rig: dict[str, Any]) -> None:
    """The trigger's on_kill (what the triggerer calls when a user kills a deferred task)."""
    from airflow_genius.core.spec import build_spec
    from airflow_genius.triggers.ecs import GeniusEcsTaskDoneTrigger

    spec = build_spec(
        "airflow_genius.examples.tasks:Echo", "sleep", kwargs={"seconds": 300},
        dag_id="trigger_kill", task_id="sleep", run_id=uuid.uuid4().hex, state_uri="memory://",
    )  # fmt: skip
    ecs, cluster = rig.client("ecs"), ecs_rig["cluster"]
    arn = ecs.run_task(
        cluster=cluster, taskDefinition=ecs_rig["taskdef"], launchType="FARGATE", startedBy=rig.unique("kill"),
        overrides={"containerOverrides": [{"name": "genius", "command": ["run", "--spec-env", "GENIUS_TASK_SPEC"],
                                           "environment": [{"name": "GENIUS_TASK_SPEC", "value": spec.to_json()}]}]},
    )["tasks"][0]["taskArn"]  # fmt: skip
    container = rig.wait_until(
        "the agent to run it", lambda: agent_container(ecs_rig["agent"], arn), timeout=60
    )
    trigger = GeniusEcsTaskDoneTrigger(
        cluster=cluster, task_arn=arn, waiter_delay=1, waiter_max_attempts=5, aws_conn_id=None,
        region_name=rig.REGION,
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_genius.triggers.ecs.GeniusEcsTaskDoneTrigger"
    run_coroutine(GeniusEcsTaskDoneTrigger(**kwargs).on_kill())
    (task,) = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["stoppedReason"]) == ("STOPPED", "Task killed by the user")
    rig.wait_until(
        "podman to drop the container", lambda: not rig.containers_named(container.name, running_only=False)
    )


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_retry_after_a_worker_crash_reattaches(ecs_env: dict[str, str], ecs_rig: dict[str, Any]) -> None:
    """One DAG run, two tries of its task through the real task runner: the first is SIGKILLed while its
    ECS task runs (a worker crash); the second finds the task by its startedBy and waits for it."""
    env = {**ecs_env, "GENIUS_TEST_SLEEP": "60"}  # outlives the second try's start-up under load
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_ecs_sleeper", "--run-id", run_id]):
        airflow_cli(env, *args).communicate(timeout=180)
    cluster, owner = ecs_rig["cluster"], started_by("genius_ecs_sleeper", "sleep", run_id)
    first = airflow_cli(env, "tasks", "test", "genius_ecs_sleeper", "sleep", run_id)
    try:
        (task,) = rig.wait_until(
            "the ECS task to run",
            lambda: [t for t in rig.ecs_tasks(cluster, owner, "RUNNING") if agent_container(ecs_rig["agent"], t["taskArn"])],
            timeout=180,
        )  # fmt: skip
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the ECS task keeps running
        first.communicate(timeout=30)
    second = airflow_cli(env, "tasks", "test", "genius_ecs_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-6000:]
    assert f"Reattaching previously launched task: {task['taskArn']}" in output
    assert "60.0" in output  # the sleeper's result, from the run record
    tasks = rig.ecs_tasks(cluster, owner)
    assert [(t["taskArn"], t["lastStatus"]) for t in tasks] == [(task["taskArn"], "STOPPED")]  # exactly one


def test_secrets_never_leave_the_platform(run_python, ecs_env: dict[str, str], secret_value: str) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, ecs_env, TEST_DAGS, "genius_ecs_secrets", file=FILE)
    tis = tis_by_id(result)
    cluster = ecs_env["GENIUS_TEST_ECS_CLUSTER"]
    assert tis["refused"]["state"] == "failed", output[-6000:]
    assert "GENIUS_STATE_PASSWORD, which task definition" in output and "does not declare" in output
    assert rig.ecs_tasks(cluster, started_by("genius_ecs_secrets", "refused", result["run_id"])) == []
    assert tis["platform"]["state"] == "success", output[-6000:]
    task = only_task(cluster, "genius_ecs_secrets", "platform", result["run_id"])
    assert secret_value not in json.dumps(task, default=str)
    assert tis["platform"]["xcom"] == {"GENIUS_STATE_PASSWORD": None}  # moto resolves no secrets
    assert secret_value not in output


def test_a_bounded_stream_window_runs_on_ecs(
    run_python, ecs_env: dict[str, str], redis_url: str, ecs_rig
) -> None:  # type: ignore[no-untyped-def]
    # the containers share the host network: the same Redis
    with stream_prefix(redis_url, "ecs") as prefix:
        env = {**ecs_env, **stream_env(redis_url, prefix)}
        runs = run_twice(run_python, env, TEST_DAGS, FILE, "genius_ecs_stream")
        check_windows(runs, state_uri=env["AIRFLOW__GENIUS__STATE_URI"], dag_id="genius_ecs_stream",
                      redis_url=redis_url, prefix=prefix)  # fmt: skip
        for run in runs:  # each task of each run ran as an ECS task of its own
            for task_id in ("publish", "enrich"):
                task = only_task(env["GENIUS_TEST_ECS_CLUSTER"], "genius_ecs_stream", task_id, run["run_id"])
                assert task["lastStatus"] == "STOPPED" and "exit code 0" in task["stoppedReason"], task
