"""A pod whose process dies before its run record ends, or whose image cannot start ``genius``: the task's
error carries how the container ended and the last lines of its log, read before KPO deletes the pod
(real ``dag.test()`` against the test-side Pod API server, pods run by podman)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_k8s_failure_causes"
#: The rig's base image (scripts/rig/podman.sh): Debian with python3 and no `genius`.
BASE_IMAGE = os.environ.get("GENIUS_BASE_IMAGE", "localhost/genius-base:bookworm")
DAG_FILE = textwrap.dedent(
    f"""
    import os

    from airflow.sdk import DAG

    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    POD = {{
        "kubernetes_conn_id": os.environ["GENIUS_TEST_K8S_CONN_ID"],
        "namespace": "genius-tests",
        "poll_interval": 1,
        "startup_check_interval_seconds": 1,
        "retries": 0,
        "task_class": "airflow_genius.examples.tasks:Echo",
    }}
    CRASH = {{"image": os.environ["GENIUS_TEST_IMAGE"], "method": "exit", "method_kwargs": {{"code": 3}}}}

    with DAG(dag_id={DAG_ID!r}, schedule=None, catchup=False) as {DAG_ID}:
        GeniusKubernetesOperator(task_id="crash", **CRASH, **POD)
        GeniusKubernetesOperator(task_id="crash_deferred", deferrable=True, **CRASH, **POD)
        # an image without genius: its ENTRYPOINT-less command `run …` cannot start
        GeniusKubernetesOperator(
            task_id="no_genius", image={BASE_IMAGE!r}, method="say", method_args=["x"], **POD
        )
    """
)


def failure_of(output: str, task_id: str) -> str:
    """The task's error as the task log shows it: the exception line and the lines it quotes (KPO names
    the pod ``<task id with dashes>-<8 random characters>``)."""
    found = re.search(rf"GeniusTaskFailed: Pod {task_id.replace('_', '-')}-[a-z0-9]{{8}} ", output)
    assert found, output[-6000:]
    return output[found.start() : found.start() + 3000]


def test_the_error_says_how_the_pod_ended(run_python: Any, k8s_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / f"{DAG_ID}.py").write_text(DAG_FILE)
    result, output = dag_test(run_python, k8s_env, tmp_path, DAG_ID)
    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert states == dict.fromkeys(("crash", "crash_deferred", "no_genius"), "failed"), output[-6000:]
    for task_id in ("crash", "crash_deferred"):
        head, _, quoted = failure_of(output, task_id).partition("\n")
        # KPO's verdict with the container's exit code, the record's state, then the container's last
        # log line: the runtime saying it started the run (the process died right after)
        assert "returned a failure. (exit code 3) (run record: RUNNING)" in head, head
        assert head.endswith("; last log lines:"), head
        # (the run id is left out: the Pod API stand-in takes the timestamp inside it for a log record's)
        line = quoted.splitlines()[0]
        assert f"run {DAG_ID}.{task_id}@" in line and "try 1 started" in line, quoted
    # the container never started: Kubernetes' reason and message say why (there is no log to quote)
    head = failure_of(output, "no_genius").partition("\n")[0]
    assert "returned a failure. (exit code 128, StartError: " in head, head
    assert 'exec: "run": executable file not found' in head and head.endswith("(run record: missing)"), head
