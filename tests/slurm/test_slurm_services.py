"""Services on Slurm in real Airflow runs against the real Slurm + sshd rig: a genius service with two
clients and a teardown (also when the clients fail), a kill, a retry after a worker crash, a service that
never becomes ready, and a shell-command service. What happened is read from the cluster itself (squeue,
sacct) and from the run records."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from typing import Any

import pytest
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.slurm_protocol import job_name
from airflow_genius.core.state.base import RunRecord
from slurm.rig import (
    EXAMPLES,
    TEST_DAGS,
    airflow_cli,
    free_port,
    live_jobs,
    node_address,
    sacct_rows,
    start_dag_test,
    wait_for_running,
    wait_until_gone,
)

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture
def service_env(slurm_env: dict[str, str]) -> dict[str, str]:
    """The Slurm test environment with a free port for the service (the node is this machine)."""
    port = str(free_port())
    return {**slurm_env, "GENIUS_EXAMPLE_SERVICE_PORT": port, "GENIUS_TEST_SERVICE_PORT": port}


def tis_of(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Task instances of a ``dag_test`` result by (task id, map index)."""
    return {(ti["task_id"], ti["map_index"]): ti for ti in result["tis"]}


def record_of(env: dict[str, str], dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> RunRecord:
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        return state.require_run(RunKey(dag_id, task_id, run_id, map_index))


def wait_for_service(
    env: dict[str, str], dag_id: str, task_id: str, *, ready: bool = False, timeout: float = 120
) -> RunRecord:
    """The run record of a service task once the runtime on the node recorded where it listens
    (``ready``: and that it answered its health path)."""
    deadline = time.monotonic() + timeout
    while True:
        with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
            records = state.list_runs(dag_id=dag_id, task_id=task_id)
        for record in records:
            service = record.info.get("service") or {}
            if service and (service.get("ready_at") or not ready):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no {'ready ' if ready else ''}service recorded for {dag_id}.{task_id}")
        time.sleep(0.3)


def result_line(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert lines, output[-4000:]
    return dict(json.loads(lines[-1].removeprefix("DAG_TEST_RESULT ")))


@pytest.mark.parametrize("path", ["/echo", "/missing"])
def test_genius_service_serves_two_clients_and_the_teardown_stops_it(  # type: ignore[no-untyped-def]
    run_python, service_env: dict[str, str], path: str
) -> None:
    """The example DAG: the service starts and passes its health check, two mapped clients call it and
    record latency metrics, the teardown stops it with SIGTERM (its record ends SUCCESS, the job
    COMPLETED) — also when the clients fail (``/missing`` answers 404)."""
    dag_id = "genius_slurm_service"
    result, output = dag_test(
        run_python, service_env, EXAMPLES, dag_id, {"calls": 3, "path": path}, file="genius_slurm"
    )
    tis, run_id = tis_of(result), result["run_id"]
    start = tis[("start_service", -1)]
    assert start["state"] == "success", output[-4000:]
    published = start["xcom"]
    port = int(service_env["GENIUS_TEST_SERVICE_PORT"])
    name = job_name(dag_id, "start_service", run_id)
    # where clients on the cluster reach it: the address of the node the job ran on
    assert (published["name"], published["port"], published["hostname"]) == ("echo", port, node_address())
    assert published["url"] == f"http://{node_address()}:{port}" and published["job_name"] == name
    assert published["ready_at"] and published["health_path"] == "/health"

    for index in (0, 1):
        client = record_of(service_env, dag_id, "client", run_id, index)
        if path == "/echo":
            assert tis[("client", index)]["state"] == "success", output[-4000:]
            assert client.result == {"url": published["url"] + "/echo", "calls": 3, "service": "echo"}
            assert client.metrics["calls"] == 3 and client.metrics["latency_ms_median"] > 0
        else:
            assert tis[("client", index)]["state"] == "failed"
            assert client.status is Status.FAILED and client.error and "404" in client.error["message"]

    # the teardown ran either way and stopped the one service job gracefully
    stop = tis[("stop_service", -1)]
    assert stop["state"] == "success", output[-4000:]
    assert stop["xcom"] == {"job_name": name, "job_id": published["job_id"], "cancelled": False}
    assert live_jobs(name) == []
    rows = sacct_rows(name=name, wait_for="COMPLETED")
    assert [(row["id"], row["state"], row["exit"]) for row in rows] == [
        (published["job_id"], "COMPLETED", "0:0")
    ]
    service = record_of(service_env, dag_id, "start_service", run_id)
    assert service.status is Status.SUCCESS, service
    assert service.result["stopped"] and service.result["ready"] is True
    assert service.result["service"] == "echo"
    assert result["state"] == ("success" if path == "/echo" else "failed")


def test_a_service_that_never_becomes_ready_fails_with_its_log_tail_and_is_cancelled(  # type: ignore[no-untyped-def]
    run_python, service_env: dict[str, str]
) -> None:
    dag_id = "genius_slurm_service_never_ready"
    result, output = dag_test(run_python, service_env, TEST_DAGS, dag_id, file="genius_slurm_cases")
    assert tis_of(result)[("start", -1)]["state"] == "failed", output[-4000:]
    name = job_name(dag_id, "start", result["run_id"])
    # the runtime beside the service gave up after ready_timeout; the error quotes the job's output
    assert "ServiceNotReady: the service is not ready" in output
    assert "/health did not answer 2xx within 5s; last log lines:" in output
    assert "airflow_genius.examples.tasks:EchoService.serve" in output.split("last log lines:", 1)[1]
    (row,) = sacct_rows(name=name, wait_for="CANCELLED")
    assert live_jobs(name) == []
    assert f"cancelled Slurm job {row['id']}" in output


def test_killing_the_start_task_cancels_the_service(service_env: dict[str, str]) -> None:
    dag_id = "genius_slurm_service_kill"
    child = start_dag_test(service_env, dag_id, "2031-06-01T00:00:00+00:00")
    try:
        job_id, name = wait_for_running(f"genius-{dag_id}-start-")
        wait_for_service(service_env, dag_id, "start")  # genius runs on the node; the task waits for it
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        rows = sacct_rows(name=name, wait_for="CANCELLED")
        assert [(row["id"], row["state"].split()[0]) for row in rows] == [(job_id, "CANCELLED")]
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    wait_until_gone(name)
    assert f"cancelled Slurm job {job_id}" in output
    assert result_line(output)["tis"][0]["state"] != "success"


def test_a_retry_after_a_worker_crash_reattaches_to_the_running_service(service_env: dict[str, str]) -> None:
    """Two tries of the start task through the real task runner (``airflow tasks test <run id>``): the first
    is SIGKILLed once the service is up (a worker crash); the second finds the job and publishes it. Then
    the stop task, twice: it stops the one job, then finds nothing to stop."""
    dag_id = "genius_slurm_service_retry"
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", dag_id, "--run-id", run_id]):
        airflow_cli(service_env, *args).communicate(timeout=120)
    name = job_name(dag_id, "start", run_id)
    first = airflow_cli(service_env, "tasks", "test", dag_id, "start", run_id)
    try:
        record = wait_for_service(service_env, dag_id, "start", ready=True)
        (job_id, _), *others = live_jobs(name)
        assert others == []
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the service keeps running
        first.communicate(timeout=30)
    assert live_jobs(name) == [(job_id, "RUNNING")]

    second = airflow_cli(service_env, "tasks", "test", dag_id, "start", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-4000:]
    assert f"reattaching to Slurm job {job_id}" in output
    assert (
        f"service echo is ready at http://{node_address()}:{service_env['GENIUS_TEST_SERVICE_PORT']}"
        in output
    )
    assert live_jobs(name) == [(job_id, "RUNNING")]  # exactly one instance, still serving

    stop = airflow_cli(service_env, "tasks", "test", dag_id, "stop", run_id)
    output, _ = stop.communicate(timeout=300)
    assert stop.returncode == 0, output[-4000:]
    assert f"service job {job_id} stopped" in output
    again = airflow_cli(service_env, "tasks", "test", dag_id, "stop", run_id)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "nothing to stop" in output, output[-4000:]
    rows = sacct_rows(name=name, wait_for="COMPLETED")
    assert [(row["id"], row["state"], row["exit"]) for row in rows] == [(job_id, "COMPLETED", "0:0")]
    final = record_of(service_env, dag_id, "start", run_id)
    assert final.status is Status.SUCCESS and final.try_number == record.try_number
    assert final.result["ready"] is True


def test_a_command_service_serves_genius_clients_and_the_teardown_stops_it(  # type: ignore[no-untyped-def]
    run_python, service_env: dict[str, str]
) -> None:
    """A service that is not a genius task (``python -m http.server``), with the same arguments."""
    dag_id = "genius_slurm_command_service"
    result, output = dag_test(run_python, service_env, TEST_DAGS, dag_id, file="genius_slurm_cases")
    assert result["state"] == "success", output[-4000:]
    tis, run_id = tis_of(result), result["run_id"]
    published = tis[("start", -1)]["xcom"]
    port = int(service_env["GENIUS_TEST_SERVICE_PORT"])
    assert published["url"] == f"http://{node_address()}:{port}" and published["name"] == "files"
    for index in (0, 1):
        client = record_of(service_env, dag_id, "client", run_id, index)
        assert client.result == {"url": published["url"] + "/", "calls": 3, "service": "files"}
    name = job_name(dag_id, "start", run_id)
    assert tis[("stop", -1)]["xcom"]["job_id"] == published["job_id"]
    assert live_jobs(name) == []
    # http.server does not handle SIGTERM: it dies of it (FAILED 0:15), a state the stop accepts
    (row,) = sacct_rows(name=name, wait_for="FAILED")
    assert row["exit"] == "0:15"


def test_a_reattached_service_is_read_at_the_try_that_submitted_it(slurm_hook: Any) -> None:
    """A retry that reattaches waits for the run record of the try whose spec the job runs."""
    from airflow_genius.operators.slurm import GeniusSlurmOperator, SlurmJob
    from airflow_genius.operators.slurm_script import SPEC_FILE

    job_dir = slurm_hook.resolve_path(f"~/.genius/slurm/test-{uuid.uuid4().hex[:8]}")
    job = SlurmJob(job_id="1", name="x", job_dir=job_dir, reattached=True)
    assert GeniusSlurmOperator.submitted_try(slurm_hook, job) is None  # no spec: this try's record counts
    slurm_hook.write_file(f"{job_dir}/{SPEC_FILE}", json.dumps({"run": {"try_number": 3}}).encode())
    try:
        assert GeniusSlurmOperator.submitted_try(slurm_hook, job) == 3
    finally:
        slurm_hook.run(f"rm -rf {job_dir}")
