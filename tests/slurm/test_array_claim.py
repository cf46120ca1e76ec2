"""The coordination of a mapped task's array through the state store's compare-and-set, against the
real Slurm + sshd rig: mapped instances starting **at the same moment** (``dag.test()`` runs them one
after the other, so it never races) agree on one held array — exactly one ``sbatch`` — and each
releases and runs only its own element; a claim whose submitter died is taken over."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.slurm_array import ArrayClaim, array_job_name, array_state_key
from airflow_genius.core.state.base import TaskScope
from airflow_genius.operators.slurm import GeniusSlurmOperator
from slurm.rig import CONN_ID, GENIUS

pytestmark = [pytest.mark.slurm]

DAG_ID, TASK_ID = "genius_array_claim", "echo"


class FakeTaskInstance(SimpleNamespace):
    """The task-instance attributes the operator reads (no Airflow run around it: the operator is
    called directly, as N workers would call it), and a sink for its XComs."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def operator(state_uri: str, size: int) -> GeniusSlurmOperator:
    return GeniusSlurmOperator(
        task_id=TASK_ID, ssh_conn_id=CONN_ID, task_class="airflow_genius.examples.tasks:Echo", method="say",
        method_args=["hi"], state_uri=state_uri, genius_command=GENIUS, array_size=size, poll_interval=0.5,
    )  # fmt: skip


def run_instance(state_uri: str, size: int, run_id: str, index: int) -> tuple[str, Any]:
    """One mapped instance, start to end: (the Slurm id it waited on, its result)."""
    task = operator(state_uri, size)
    ti = FakeTaskInstance(
        dag_id=DAG_ID, task_id=TASK_ID, run_id=run_id, map_index=index, try_number=1, pushed={}
    )
    context: Any = {"ti": ti, "logical_date": None, "dag_run": None}
    result = task.execute(context)
    assert task.job_id is not None
    return task.job_id, result


def sacct_names(name: str) -> list[str]:
    import subprocess

    out = subprocess.run(
        ["sacct", "--name", name, "-S", "now-1days", "-E", "now+2days", "-X", "--noheader", "--parsable2",
         "--format=JobID"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_instances_starting_together_submit_one_array(tmp_path: Path) -> None:
    state_uri, size, run_id = f"sqlite:///{tmp_path}/state.db", 4, f"claim_{uuid.uuid4().hex[:8]}"
    outcomes: dict[int, tuple[str, Any]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(size)

    def instance(index: int) -> None:
        try:
            start.wait()
            outcomes[index] = run_instance(state_uri, size, run_id, index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=instance, args=(index,)) for index in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    arrays = {job_id.split("_")[0] for job_id, _ in outcomes.values()}
    assert len(arrays) == 1, outcomes  # every instance got the same array
    (array_id,) = arrays
    assert {index: outcome for index, outcome in outcomes.items()} == {
        index: (f"{array_id}_{index}", "hi") for index in range(size)
    }
    # exactly one sbatch: accounting knows one array of four elements under the array's name
    deadline = time.monotonic() + 30
    while (
        len(jobs := sacct_names(array_job_name(DAG_ID, TASK_ID, run_id))) < size
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert sorted(jobs) == sorted(f"{array_id}_{index}" for index in range(size)), jobs
    with open_state(state_uri) as state:
        claim = ArrayClaim.from_dict(
            state.get_state(TaskScope("default", DAG_ID, TASK_ID), array_state_key(run_id))
        )
        records = [state.get_run(RunKey(DAG_ID, TASK_ID, run_id, index)) for index in range(size)]
    assert claim is not None and claim.job_id == array_id and claim.size == size
    assert all(record is not None and record.status is Status.SUCCESS for record in records)


def test_a_stale_claim_is_taken_over(tmp_path: Path) -> None:
    """A claim left without a job id (its submitter died before sbatch) past ``array_claim_timeout``: the
    next instance takes it over with a compare-and-set, submits the array and runs its element."""
    state_uri, run_id = f"sqlite:///{tmp_path}/state.db", f"stale_{uuid.uuid4().hex[:8]}"
    scope, key = TaskScope("default", DAG_ID, TASK_ID), array_state_key(run_id)
    stale = ArrayClaim.claimed(size=2, by=0, now=time.time() - 1000)
    with open_state(state_uri) as state:
        assert state.compare_and_set_state(scope, key, None, stale.to_dict())
    job_id, result = run_instance(state_uri, 2, run_id, 1)
    assert result == "hi" and job_id.endswith("_1"), job_id
    with open_state(state_uri) as state:
        claim = ArrayClaim.from_dict(state.get_state(scope, key))
    assert claim is not None and claim.claimed_by == 1 and claim.job_id == job_id.split("_")[0]
    # element 0 stays held (its instance never came): clean it up
    import subprocess

    subprocess.run(["scancel", claim.job_id], check=False)
