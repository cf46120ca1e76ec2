"""A Slurm job that dies before ``genius run`` leaves no run record: the task's error quotes the cause
from the job's output, in the worker and deferred (real ``dag.test()`` on the Slurm + sshd rig)."""

from __future__ import annotations

from typing import Any

import pytest
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, open_state
from airflow_genius.core.slurm_protocol import job_name
from slurm.rig import TEST_DAGS, sacct_rows, tis_by_id

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_slurm_no_genius"


def failure_of(output: str, job_id: str) -> str:
    """The task's error message as the task log shows it: the exception line and the lines it quotes."""
    start = output.index(f"GeniusTaskFailed: Slurm job {job_id} ")
    return output[start : start + 2000]


def test_a_job_without_genius_fails_with_the_cause_from_its_output(
    run_python: Any, slurm_env: dict[str, str]
) -> None:
    result, output = dag_test(run_python, slurm_env, TEST_DAGS, DAG_ID, file="genius_slurm_cases")
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == {
        "missing": "failed",
        "missing_deferred": "failed",
    }, output[-4000:]
    with open_state(slurm_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        for task_id in ("missing", "missing_deferred"):
            (row,) = sacct_rows(name=job_name(DAG_ID, task_id, result["run_id"]), wait_for="FAILED")
            assert row["exit"] == "127:0", row  # bash: command not found
            message = failure_of(output, row["id"])
            head, _, quoted = message.partition("\n")
            # the exit code and the record's absence on the first line, the cause quoted below it
            expected = f"Slurm job {row['id']} FAILED (exit code 127) (run record: missing); last log lines:"
            assert head == f"GeniusTaskFailed: {expected}", message
            assert "genius: command not found" in quoted.splitlines()[0], message
            assert state.get_run(RunKey(DAG_ID, task_id, result["run_id"])) is None
