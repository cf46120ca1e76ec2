"""A Batch job or ECS task whose process dies before its run record ends (the record stays RUNNING):
the task's error quotes the last lines of its CloudWatch stream (real ``dag.test()`` on moto, whose
Batch and the test-side ECS agent run the containers through podman)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

pytestmark = [pytest.mark.containers, pytest.mark.aws, pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_aws_crash"
CASES = Path(__file__).resolve().parent / "dags"
DAG_FILE = textwrap.dedent(
    f"""
    import sys

    sys.path.insert(0, {str(CASES)!r})  # the rig's operator arguments, as the other AWS test DAGs use them

    from airflow.sdk import DAG
    from genius_aws_cases import BATCH, ECHO, ECS

    from airflow_genius.operators.batch import GeniusBatchOperator
    from airflow_genius.operators.ecs import GeniusEcsOperator

    CRASH = {{"task_class": ECHO, "method": "exit", "method_kwargs": {{"code": 3}}}}

    with DAG(dag_id={DAG_ID!r}, schedule=None, catchup=False) as {DAG_ID}:
        GeniusBatchOperator(task_id="batch", **CRASH, **BATCH)
        GeniusEcsOperator(task_id="ecs", **CRASH, **ECS)
    """
)


@pytest.fixture
def crash_env(aws_env: dict[str, str], batch_rig: dict[str, str], ecs_rig: dict[str, Any]) -> dict[str, str]:
    return {
        **aws_env,
        "GENIUS_TEST_BATCH_QUEUE": batch_rig["queue"],
        "GENIUS_TEST_BATCH_JOBDEF": batch_rig["jobdef"],
        "GENIUS_TEST_ECS_CLUSTER": ecs_rig["cluster"],
        "GENIUS_TEST_ECS_TASKDEF": ecs_rig["taskdef"],
        "GENIUS_TEST_ECS_LOG_GROUP": ecs_rig["log_group"],
        "GENIUS_TEST_ECS_LOG_PREFIX": ecs_rig["log_prefix"],
    }


def failures(output: str) -> list[str]:
    """Each task error as the task log shows it: the exception line and the lines it quotes."""
    marker = "GeniusTaskFailed: "
    return [part[:3000] for part in output.split(marker)[1:]]


def test_a_crash_quotes_the_cloudwatch_stream(
    run_python: Any, crash_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / f"{DAG_ID}.py").write_text(DAG_FILE)
    result, output = dag_test(run_python, crash_env, tmp_path, DAG_ID, timeout=600)
    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert states == {"batch": "failed", "ecs": "failed"}, output[-6000:]
    for task_id in ("batch", "ecs"):
        # the end of the container's log: the runtime's own line saying it started this run, the last
        # thing the process wrote before it died
        started = f"run {DAG_ID}.{task_id}@{result['run_id']} try 1 started"
        (error,) = {text for text in failures(output) if started in text}
        head = error.partition("\n")[0]
        # the platform's verdict and the record's state on the first line (moto's ECS reports every
        # container's exit code as 0: there the record's state alone says the run never ended)
        assert "(run record: RUNNING)" in head or "ended without a result (status RUNNING)" in head, head
        assert head.endswith("; last log lines:"), head
