"""A mapped genius Slurm task as one job array, in a real Airflow ``dag.test()`` against the real Slurm +
sshd rig: one array job for every map index (sacct), a run record and an XCom per index; one element
that fails fails only its task instance, and its retry runs alone in a job of its own; SIGTERM of one
instance cancels only its element."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from genius_dagtest import DAG_TEST, dag_test

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.slurm_array import array_job_name
from airflow_genius.core.slurm_protocol import job_name

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]

DAGS = Path(__file__).with_name("dags")
SIZE = int(os.environ.get("GENIUS_TEST_ARRAY_SIZE", "50"))
FAIL = min(7, SIZE - 1)


def array_rows(name: str | None = None, *, job_id: str | None = None) -> list[dict[str, str]]:
    """sacct rows (JobID as ``<array>_<index>`` or the held rest ``<array>_[…]``, State) of the jobs
    called ``name`` or of the job ``job_id`` (with ``--name`` sacct leaves out jobs never eligible, such
    as held elements), read from the cluster directly."""
    selector = ["-j", job_id] if job_id else ["--name", str(name), "-S", "now-1days", "-E", "now+2days"]
    done = subprocess.run(
        ["sacct", *selector, "-X", "--noheader", "--parsable2", "--format=JobID,JobIDRaw,State"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [line.split("|") for line in done.stdout.splitlines() if line.strip()]
    return [{"id": job, "raw": raw, "state": state.split()[0]} for job, raw, state in rows]


def test_mapped_task_runs_as_one_array(run_python, slurm_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    env = {**slurm_env, "GENIUS_TEST_ARRAY_SIZE": str(SIZE), "GENIUS_TEST_ARRAY_FAIL": str(FAIL)}
    started = time.monotonic()
    result, output = dag_test(
        run_python, env, DAGS, "genius_slurm_array", file="genius_slurm_array", timeout=600
    )
    took = time.monotonic() - started
    run_id = result["run_id"]
    tis = sorted((ti for ti in result["tis"] if ti["task_id"] == "echo"), key=lambda ti: ti["map_index"])
    assert [ti["map_index"] for ti in tis] == list(range(SIZE)), output[-4000:]
    # every instance succeeded with its own input; the failing one on its second try only
    assert [(ti["state"], ti["xcom"]) for ti in tis] == [("success", f"input-{i}") for i in range(SIZE)], (
        output[-4000:]
    )
    assert [ti["try"] for ti in tis] == [2 if i == FAIL else 1 for i in range(SIZE)]
    # one array job: every element under one id, element FAIL FAILED on its first try, the rest COMPLETED
    rows = array_rows(array_job_name("genius_slurm_array", "echo", run_id))
    arrays = {row["id"].split("_")[0] for row in rows}
    assert len(arrays) == 1, rows
    (array_id,) = arrays
    states = {row["id"]: row["state"] for row in rows}
    assert states == {f"{array_id}_{i}": "FAILED" if i == FAIL else "COMPLETED" for i in range(SIZE)}, rows
    # the retry: one job of its own for that map index, and no job for any other index
    retry = array_rows(job_name("genius_slurm_array", "echo", run_id, FAIL))
    deadline = time.monotonic() + 30
    while not retry and time.monotonic() < deadline:  # the name reaches accounting a moment later
        time.sleep(0.5)
        retry = array_rows(job_name("genius_slurm_array", "echo", run_id, FAIL))
    assert [row["state"] for row in retry] == ["COMPLETED"] and "_" not in retry[0]["id"], retry
    others = [array_rows(job_name("genius_slurm_array", "echo", run_id, i)) for i in range(SIZE) if i != FAIL]
    assert not any(others)
    # a run record per map index, SUCCESS (the retried one on try 2)
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        records = [state.get_run(RunKey("genius_slurm_array", "echo", run_id, i)) for i in range(SIZE)]
    assert all(record is not None and record.status is Status.SUCCESS for record in records)
    assert [record.try_number for record in records if record] == [2 if i == FAIL else 1 for i in range(SIZE)]
    # each instance logged its own element's lines, and the failure named its element
    assert "element fails on purpose" in output
    assert f"Slurm job {array_id}_{FAIL} FAILED" in output, output[-4000:]
    print(f"{SIZE} mapped instances as one array in dag.test(): {took:.1f} s")


def test_sigterm_of_one_instance_cancels_only_its_element(slurm_env: dict[str, str]) -> None:
    env = {**slurm_env, "GENIUS_TEST_SLEEP": "120", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    args = [str(DAGS / "genius_slurm_array.py"), "genius_slurm_array_kill", "{}", "2032-01-01T00:00:00+00:00"]
    child = subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    name = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True
            )
            running = [
                line.split("|") for line in out.stdout.split()
                if "|genius-array-genius_slurm_array_kill-sleep-" in line and line.endswith("|RUNNING")
            ]  # fmt: skip
            if running:
                element, name, _ = running[0]
                break
            time.sleep(0.3)
        else:
            raise AssertionError("no element of the array ran")
        array_id = element.partition("_")[0]
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        deadline = time.monotonic() + 60
        while {row["id"]: row["state"] for row in array_rows(name)}.get(element) != "CANCELLED":
            assert time.monotonic() < deadline, array_rows(name)
            time.sleep(0.5)
        # only that element: the others are still queued (held, or released), none cancelled
        others = [row for row in array_rows(job_id=array_id) if row["id"] != element]
        assert others and all(row["state"] in ("PENDING", "RUNNING") for row in others), others
        queued = subprocess.run(["squeue", "--noheader", "-j", array_id, "--format=%i|%T"],
                                capture_output=True, text=True, check=False).stdout  # fmt: skip
        assert element not in queued and f"{array_id}_" in queued, queued
        # dag.test() goes on with the next map index (it releases its element): stop it there
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate(timeout=60)
        assert f"cancelled Slurm job {element}" in output, output[-4000:]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        if name:
            subprocess.run(["scancel", f"--name={name}"], check=False)
