"""A genius Slurm job requeued with ``scontrol requeue`` while its method runs: the task waits for the
job's next run, which takes the try over, and ends SUCCESS with both attempts in the run record — in
the worker and deferred, in a real Airflow ``dag.test()`` against the real Slurm + sshd rig."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.slurm_protocol import job_name
from slurm.rig import live_jobs, sacct_rows, tis_by_id

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]

DAGS = Path(__file__).with_name("dags")
DAG_ID = "genius_slurm_requeue"
SLEEP = 20.0


class Requeuer(threading.Thread):
    """Requeues each task's job once, as soon as its run record says the method runs (so the first
    attempt is stopped mid-method); ``release`` tasks then skip the wait Slurm imposes on a requeued job
    (its credential lifetime: 30 s on the rig, AuthInfo=cred_expire) with ``scontrol update StartTime=now``;
    the others wait it out."""

    def __init__(self, state_uri: str, tasks: tuple[str, ...], release: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.state_uri, self.tasks, self.release = state_uri, tasks, release
        self.requeued: dict[str, str] = {}  # task id -> job id
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with open_state(self.state_uri) as state:
                while not self.stop.is_set() and len(self.requeued) < len(self.tasks):
                    for record in state.list_runs(dag_id=DAG_ID, status=Status.RUNNING):
                        task = record.key.task_id
                        if task in self.requeued or record.info.get("attempt"):
                            continue
                        jobs = live_jobs(job_name(DAG_ID, task, record.key.run_id))
                        if [state for _, state in jobs] != ["RUNNING"]:
                            continue
                        job_id = jobs[0][0]
                        subprocess.run(["scontrol", "requeue", job_id], check=True)
                        self.requeued[task] = job_id
                        if task in self.release:
                            self._start_now(job_id)
                    self.stop.wait(0.2)
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))

    def _start_now(self, job_id: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # StartTime can be set once the job is pending again
            state = subprocess.run(
                ["squeue", "--noheader", "-j", job_id, "--format=%T"], capture_output=True, text=True
            ).stdout.strip()
            if state == "PENDING":
                subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True)
                return
            time.sleep(0.2)
        self.errors.append(f"job {job_id} never went back to PENDING")


def test_a_job_requeued_while_it_runs_ends_success_with_both_attempts(
    run_python, slurm_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    env = {**slurm_env, "GENIUS_TEST_SLEEP": str(SLEEP)}
    requeuer = Requeuer(env["AIRFLOW__GENIUS__STATE_URI"], ("worker", "deferred"), release=("deferred",))
    requeuer.start()
    try:
        result, output = dag_test(
            run_python, env, DAGS, DAG_ID, logical_date="2031-06-01T00:00:00+00:00", timeout=600
        )
    finally:
        requeuer.stop.set()
        requeuer.join(timeout=30)
    assert not requeuer.errors, requeuer.errors
    assert sorted(requeuer.requeued) == ["deferred", "worker"], output[-4000:]
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == {"worker": "success", "deferred": "success"}, (
        output[-6000:]
    )
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        for task, job_id in requeuer.requeued.items():
            record = state.require_run(RunKey(DAG_ID, task, result["run_id"]))
            assert record.status is Status.SUCCESS and record.try_number == 1
            # the result is the second attempt's: it ran the method to its end after taking the try over
            assert record.result == SLEEP == tis[task]["xcom"]
            first, second = record.info["attempts"]
            assert (first["attempt"], first["status"], first["reason"]) == (
                0,
                "CANCELLED",
                "received SIGTERM",
            )
            assert (second["attempt"], second["status"]) == (1, "SUCCESS")
            assert [entry.status for entry in record.history[-3:]] == [
                Status.CANCELLED, Status.RUNNING, Status.SUCCESS,
            ]  # fmt: skip
            assert record.history[-2].message == "attempt 1 takes over from attempt 0 (CANCELLED)"
            # one Slurm job ran both attempts, and both reached the task log from its one output file
            rows = sacct_rows(name=job_name(DAG_ID, task, result["run_id"]), wait_for="COMPLETED")
            assert [(row["id"], row["state"]) for row in rows] == [(job_id, "COMPLETED")], rows
            assert f"[slurm {job_id}] genius: Slurm restarted job {job_id} (restart 1)" in output
            logged = [line for line in output.splitlines() if f"[slurm {job_id}]" in line]
            assert sum(" try 1 started:" in line for line in logged) == 1, logged
            assert sum(" try 1 attempt 1 started:" in line for line in logged) == 1, logged
            assert any("cancelled: received SIGTERM" in line for line in logged), logged
