"""A container that dies before ``genius run`` leaves no run record: the task's error carries the exit
code and quotes the container's last output lines, where the cause is (real ``dag.test()`` on podman's
Docker API). The image's ENTRYPOINT is replaced the way a broken derived image would have it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, open_state
from airflow_genius.operators.docker_request import container_name_for
from containers.docker.rig import inspect_or_none

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_docker_failure_causes"
DAG_FILE = textwrap.dedent(
    f"""
    import os

    from airflow.sdk import DAG

    from airflow_genius.operators.docker import GeniusDockerOperator

    DOCKER = {{
        "image": os.environ["GENIUS_TEST_IMAGE"],
        "docker_url": os.environ["GENIUS_TEST_DOCKER_URL"],
        "network_mode": "host",
        "retries": 0,
        "task_class": "airflow_genius.examples.tasks:Echo",
        "method": "say",
        "method_args": ["never"],
    }}

    with DAG(dag_id={DAG_ID!r}, schedule=None, catchup=False) as {DAG_ID}:
        # an entrypoint script whose PATH lacks genius: the shell's "not found", exit 127
        GeniusDockerOperator(
            task_id="no_genius", entrypoint=["/bin/sh", "-c", 'PATH=/usr/bin:/bin; genius "$@"', "genius"],
            **DOCKER,
        )
        # an entrypoint that gives up before genius runs, with its own message, exit 1
        GeniusDockerOperator(
            task_id="entrypoint_fails",
            entrypoint=["python3", "-c", "import sys; sys.exit('entrypoint: /models is not mounted')"],
            **DOCKER,
        )
        # an entrypoint that is not in the image: the engine cannot start the container
        GeniusDockerOperator(task_id="no_entrypoint", entrypoint=["genius-not-installed"], **DOCKER)
    """
)


def failure_of(output: str, container: str) -> str:
    """The task's error as the task log shows it: the exception line and the lines it quotes."""
    start = output.index(f"GeniusTaskFailed: container {container} ")
    return output[start : start + 2000]


def test_the_error_names_the_cause_from_the_container_output(
    run_python: Any, docker_env: dict[str, str], docker_client: Any, tmp_path: Path
) -> None:
    (tmp_path / f"{DAG_ID}.py").write_text(DAG_FILE)
    result, output = dag_test(run_python, docker_env, tmp_path, DAG_ID)
    run_id = result["run_id"]
    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert states == dict.fromkeys(("no_genius", "entrypoint_fails", "no_entrypoint"), "failed"), output[
        -4000:
    ]

    for task_id, code, cause in (
        ("no_genius", 127, "genius: not found"),
        ("entrypoint_fails", 1, "entrypoint: /models is not mounted"),
    ):
        name = container_name_for(DAG_ID, task_id, run_id)
        head, _, quoted = failure_of(output, name).partition("\n")
        # the exit code and the record's absence on the first line, the container's last words below
        assert (
            head == f"GeniusTaskFailed: container {name} exited {code} (run record: missing); last log lines:"
        )
        assert cause in quoted.splitlines()[0], quoted
    # the engine could not start it: its explanation is the cause (no output to quote)
    name = container_name_for(DAG_ID, "no_entrypoint", run_id)
    head = failure_of(output, name).partition("\n")[0]
    assert head.startswith(f"GeniusTaskFailed: container {name} did not start: "), head
    assert 'exec: "genius-not-installed": executable file not found' in head
    assert head.endswith("(run record: missing)"), head

    with open_state(docker_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        for task_id in states:
            assert state.get_run(RunKey(DAG_ID, task_id, run_id)) is None
            # removed once read (auto_remove="force"), the one that never started too
            assert inspect_or_none(docker_client, container_name_for(DAG_ID, task_id, run_id)) is None
