"""GeniusSlurmOperator in real Airflow ``dag.test()`` runs against the real Slurm + sshd rig."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from genius_dagtest import dag_test
from stream_windows import check_windows, run_twice, stream_env, stream_prefix

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.slurm_protocol import job_name
from slurm.rig import (
    EXAMPLES,
    ROOT,
    TEST_DAGS,
    airflow_cli,
    sacct_rows,
    start_dag_test,
    tis_by_id,
    wait_for_running,
)

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]


def test_pipeline_on_slurm_worker_and_deferred(run_python, slurm_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(
        run_python, slurm_env, EXAMPLES, "genius_slurm_pipeline", {"count": 12}, file="genius_slurm"
    )
    assert result["state"] == "success", output[-4000:]
    tis = tis_by_id(result)
    assert tis["fetch"]["xcom"]["records"] == 12  # spout: waited in the worker
    assert tis["count"]["xcom"]["records"] == 12  # bolt: deferred, waited in the (inline) triggerer
    # the bolt read the partition the spout wrote on the node, and wrote its own
    (counts,) = (tmp_path / "data" / "slurm" / "counts").rglob("_SUCCESS")
    assert json.loads((counts.parent / "top_words.json").read_text())
    with open_state(slurm_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        for task_id in ("fetch", "count"):
            record = state.require_run(RunKey("genius_slurm_pipeline", task_id, result["run_id"]))
            assert record.status is Status.SUCCESS and record.result == tis[task_id]["xcom"]
    # job output reached the Airflow task log in both modes (the runtime logs the task it runs)
    for name in ("fetch", "count"):
        jobs = sacct_rows(
            name=job_name("genius_slurm_pipeline", name, result["run_id"]), wait_for="COMPLETED"
        )
        assert [row["state"] for row in jobs] == ["COMPLETED"], jobs
        assert f"[slurm {jobs[0]['id']}]" in output


def test_failures_fail_the_task_with_slurms_reason(run_python, slurm_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(
        run_python, slurm_env, TEST_DAGS, "genius_slurm_failures", file="genius_slurm_cases", timeout=600
    )
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == dict.fromkeys(
        ("exits_3", "raises", "times_out", "over_memory", "never_starts"), "failed"
    ), output[-4000:]

    def state_of(task_id: str, expected: str) -> dict[str, str]:
        (row,) = sacct_rows(
            name=job_name("genius_slurm_failures", task_id, result["run_id"]), wait_for=expected
        )
        return row

    assert state_of("exits_3", "FAILED")["exit"] == "3:0"
    assert "FAILED (exit code 3)" in output
    # a task that raised: the remote error type, message and traceback, from the run record
    assert "RuntimeError: the remote task broke" in output
    assert "Traceback (most recent call last)" in output and "in fail" in output
    state_of("times_out", "TIMEOUT")
    assert "TIMEOUT" in output and "ran past its --time limit" in output
    state_of("over_memory", "OUT_OF_MEMORY")
    assert "used more memory than --mem allows" in output
    # pending longer than pending_timeout: given up and cancelled
    assert "was still PENDING after 3 s (BeginTime); it was cancelled" in output
    state_of("never_starts", "CANCELLED")


def test_hostile_values_never_execute(run_python, slurm_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(TEST_DAGS))
    os.environ["GENIUS_TEST_CANARY"] = slurm_env["GENIUS_TEST_CANARY"]
    try:
        import genius_slurm_cases as cases
    finally:
        sys.path.remove(str(TEST_DAGS))
    result, output = dag_test(
        run_python, slurm_env, TEST_DAGS, "genius_slurm_hostile", file="genius_slurm_cases"
    )
    tis = tis_by_id(result)
    assert tis["env"]["state"] == "success", output[-4000:]
    assert tis["env"]["xcom"] == cases.HOSTILE_ENV  # every value arrived verbatim
    assert tis["args"]["state"] == "success" and tis["args"]["xcom"] == cases.HOSTILE
    # an option that would smuggle a line into the script is refused before anything is submitted
    assert tis["bad_option"]["state"] == "failed"
    assert "must be one word without spaces or control characters" in output
    assert sacct_rows(name=job_name("genius_slurm_hostile", "bad_option", result["run_id"])) == []
    assert not (tmp_path / "canary").exists()


def test_killing_the_task_cancels_the_job(slurm_env: dict[str, str]) -> None:
    env = {**slurm_env, "GENIUS_TEST_SLEEP": "120"}
    logical_date = "2031-01-01T00:00:00+00:00"
    child = start_dag_test(env, "genius_slurm_sleeper", logical_date)
    try:
        job_id, name = wait_for_running("genius-genius_slurm_sleeper-sleep-")
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        rows = sacct_rows(name=name, wait_for="CANCELLED")  # the name reaches accounting a moment later
        assert [(row["id"], row["state"].split()[0]) for row in rows] == [(job_id, "CANCELLED")]
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert f"cancelled Slurm job {job_id}" in output


def test_retry_after_a_worker_crash_reattaches(slurm_env: dict[str, str]) -> None:
    """One DAG run, two tries of its task through the real task runner (``airflow tasks test <run id>``):
    the first is SIGKILLed while its job runs (a worker crash); the second finds the job and waits for it."""
    env = {**slurm_env, "GENIUS_TEST_SLEEP": "60"}  # outlives the second try's start-up under load
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_slurm_sleeper", "--run-id", run_id]):
        output, _ = airflow_cli(env, *args).communicate(timeout=120)
    name = job_name("genius_slurm_sleeper", "sleep", run_id)
    first = airflow_cli(env, "tasks", "test", "genius_slurm_sleeper", "sleep", run_id)
    try:
        job_id, _ = wait_for_running(name)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the job keeps running
        first.communicate(timeout=30)
    second = airflow_cli(env, "tasks", "test", "genius_slurm_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-4000:]
    assert f"reattaching to Slurm job {job_id}" in output
    assert "Pushing xcom" in output and "60.0" in output
    rows = sacct_rows(name=name, wait_for="COMPLETED")
    assert [row["id"] for row in rows] == [job_id], rows  # exactly one job ran for this task instance


def all_command_lines() -> str:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # the process ended meanwhile
    return "\n".join(lines)


def test_the_state_password_reaches_the_job_only_through_its_secret_file(slurm_env: dict[str, str]) -> None:
    password = f"pw-{uuid.uuid4().hex}-'$(touch /tmp/never)'"
    conn = {
        "conn_type": "genius_postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
        "password": password, "schema": "genius_test", "extra": {"table_prefix": f"slurm_{uuid.uuid4().hex[:8]}"},
    }  # fmt: skip
    env = {
        **slurm_env,
        "AIRFLOW_CONN_GENIUS_PG_SECRET": json.dumps(conn),
        "GENIUS_TEST_PYTHONPATH": str(ROOT / "tests"),
    }
    child = start_dag_test(env, "genius_slurm_secret", "2031-04-01T00:00:00+00:00")
    try:
        job_id, _ = wait_for_running("genius-genius_slurm_secret-probe-")
        script = subprocess.run(
            ["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "secret.env" in script and password not in script
        assert password not in all_command_lines()
        output, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    lines = [line for line in output.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert lines, output[-4000:]
    result = json.loads(lines[-1].removeprefix("DAG_TEST_RESULT "))
    assert tis_by_id(result)["probe"]["xcom"] == {"present": True, "length": len(password)}, output[-4000:]
    assert password not in output


def test_genius_in_a_podman_container_on_the_node(
    run_python, slurm_env: dict[str, str], redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    state_uri = f"{redis_url}?prefix=slurm_{uuid.uuid4().hex[:8]}"
    env = {**slurm_env, "GENIUS_TEST_REDIS_STATE": state_uri}
    result, output = dag_test(run_python, env, TEST_DAGS, "genius_slurm_container", file="genius_slurm_cases")
    assert result["state"] == "success", output[-4000:]
    assert tis_by_id(result)["echo"]["xcom"] == "hello from a container on Slurm"
    with open_state(state_uri) as state:
        record = state.require_run(RunKey("genius_slurm_container", "echo", result["run_id"]))
    # the runtime in the image recorded the run (its host is the container's, its python the image's)
    assert record.status is Status.SUCCESS and record.result == "hello from a container on Slurm"
    # only the image has genius on this job's PATH (no setup line): the job really ran podman
    (row,) = sacct_rows(
        name=job_name("genius_slurm_container", "echo", result["run_id"]), wait_for="COMPLETED"
    )
    script = subprocess.run(
        ["scontrol", "write", "batch_script", row["id"], "-"], capture_output=True, text=True, check=True
    ).stdout
    assert 'podman run --rm --network=host --user "$(id -u):$(id -g)"' in script


def test_an_external_scancel_fails_the_task_with_the_reason(slurm_env: dict[str, str]) -> None:
    env = {**slurm_env, "GENIUS_TEST_SLEEP": "120"}
    child = start_dag_test(env, "genius_slurm_sleeper", "2031-05-01T00:00:00+00:00")
    try:
        job_id, _ = wait_for_running("genius-genius_slurm_sleeper-sleep-")
        subprocess.run(["scancel", job_id], check=True)  # an administrator, not Airflow
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    lines = [line for line in output.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert lines, output[-4000:]
    assert tis_by_id(json.loads(lines[-1].removeprefix("DAG_TEST_RESULT ")))["sleep"]["state"] == "failed"
    assert f"Slurm job {job_id} CANCELLED" in output and "scancel" in output


def test_a_bounded_stream_window_runs_on_slurm(run_python, slurm_env: dict[str, str], redis_url: str) -> None:  # type: ignore[no-untyped-def]
    with stream_prefix(redis_url, "slurm") as prefix:
        env = {**slurm_env, **stream_env(redis_url, prefix)}
        runs = run_twice(run_python, env, TEST_DAGS, "genius_slurm_cases", "genius_slurm_stream", timeout=300)
        check_windows(runs, state_uri=env["AIRFLOW__GENIUS__STATE_URI"], dag_id="genius_slurm_stream",
                      redis_url=redis_url, prefix=prefix)  # fmt: skip
