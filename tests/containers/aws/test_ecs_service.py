"""GeniusEcsServiceOperator / GeniusEcsServiceStopOperator in real Airflow runs against moto's ECS, whose
tasks the test-side agent (tests/support/ecs_agent.py) runs as podman containers on the host network.

Everything is asserted on the engine (moto's task states, podman's containers) and in the run records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from genius_dagtest import DAG_TEST, dag_test
from support.private_stores import free_port

from airflow_genius.core import Status, open_state
from airflow_genius.core.state import RunKey
from airflow_genius.operators.ecs_service import (
    NOT_READY_REASON,
    TEARDOWN_REASON,
    ecs_started_by,
    launched_spec,
)
from containers.aws import rig

pytestmark = [pytest.mark.containers, pytest.mark.aws, pytest.mark.airflow, pytest.mark.slow]

TEST_DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FILE = "genius_ecs_services"


@pytest.fixture
def service_env(ecs_env: dict[str, str]) -> dict[str, str]:
    # The tasks share the host network: each test's service gets a port of its own.
    return {**ecs_env, "GENIUS_TEST_SERVICE_PORT": str(free_port())}


def tis_by_id(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(ti["task_id"], ti["map_index"]): ti for ti in result["tis"]}


def service_tasks(cluster: str, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every ECS task (any state) the start task of ``run_id`` ever started."""
    return rig.ecs_tasks(cluster, ecs_started_by(dag_id, "start", run_id))


def task_container(cluster: str, task: dict[str, Any]) -> str:
    return f"ecs-{cluster}-{task['taskArn'].rsplit('/', 1)[-1]}"  # the agent's container name


def container_gone(cluster: str, task: dict[str, Any]) -> None:
    name = task_container(cluster, task)
    rig.wait_until(f"podman to drop {name}", lambda: not rig.containers_named(name, running_only=False))


def run_record(env: dict[str, str], dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> Any:
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        return state.get_run(RunKey(dag_id, task_id, run_id, map_index))


def stopped_record(env: dict[str, str], dag_id: str, run_id: str) -> Any:
    """The service's run record once SIGTERM ended it (the agent stops the container after stop_task)."""
    return rig.wait_until(
        "the service's run record to end",
        lambda: (r := run_record(env, dag_id, "start", run_id)) is not None and r.status.terminal and r,
    )


def test_clients_call_the_service_and_the_teardown_stops_it(
    run_python, service_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    dag_id, cluster = "genius_ecs_service", service_env["GENIUS_TEST_ECS_CLUSTER"]
    result, output = dag_test(run_python, service_env, TEST_DAGS, dag_id, file=FILE, timeout=600)
    assert result["state"] == "success", output[-6000:] + str(ecs_rig["agent"].errors)
    tis, run_id = tis_by_id(result), result["run_id"]
    port = int(service_env["GENIUS_TEST_SERVICE_PORT"])

    published = tis[("start", -1)]["xcom"]
    assert (published["name"], published["port"], published["ready"]) == ("echo", port, True)
    assert published["url"] == f"http://{published['hostname']}:{port}"
    assert published["hostname"] not in ("127.0.0.1", "localhost", "0.0.0.0")  # what clients elsewhere reach
    (task,) = service_tasks(cluster, dag_id, run_id)  # exactly one service task
    assert published["ecs_task_arn"] == task["taskArn"]

    for map_index in (0, 1):  # both clients called it through SERVICE_URL and recorded latencies
        assert tis[("ask", map_index)]["xcom"] == {
            "url": f"{published['url']}/echo", "calls": 5, "service": "echo"}  # fmt: skip
        record = run_record(service_env, dag_id, "ask", run_id, map_index)
        assert record.status is Status.SUCCESS and record.metrics["calls"] == 5
        assert record.metrics["latency_ms_median"] > 0 and record.metrics["latency_ms_max"] > 0

    # the teardown stopped it: on the engine, in podman, and in the service's own record (SIGTERM)
    assert tis[("stop", -1)]["xcom"] == {"service": "start", "stopped": [task["taskArn"]]}
    (stopped,) = service_tasks(cluster, dag_id, run_id)
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", TEARDOWN_REASON)
    container_gone(cluster, task)
    record = stopped_record(service_env, dag_id, run_id)
    assert record.status is Status.SUCCESS, record
    assert record.result["service"] == "echo" and record.result["ready"] is True
    assert record.info["service"]["ready_at"] and record.info["service"]["port"] == port


def test_the_teardown_stops_the_service_when_a_client_fails(
    run_python, service_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    dag_id, cluster = "genius_ecs_service_client_fails", service_env["GENIUS_TEST_ECS_CLUSTER"]
    result, output = dag_test(run_python, service_env, TEST_DAGS, dag_id, file=FILE, timeout=600)
    tis, run_id = tis_by_id(result), result["run_id"]
    assert result["state"] == "failed", output[-6000:]
    assert tis[("ask", 0)]["state"] == "success" and tis[("ask", 1)]["state"] == "failed", tis
    assert "HTTP Error 404" in output  # the failing client's own error, from its run record
    assert tis[("stop", -1)]["state"] == "success", output[-6000:]
    (task,) = service_tasks(cluster, dag_id, run_id)
    assert (task["lastStatus"], task["stoppedReason"]) == ("STOPPED", TEARDOWN_REASON)
    container_gone(cluster, task)
    assert stopped_record(service_env, dag_id, run_id).status is Status.SUCCESS


def test_a_service_that_never_gets_ready_fails_and_is_stopped(
    run_python, service_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "3600", "GENIUS_TEST_READY_TIMEOUT": "5"}
    dag_id, cluster = "genius_ecs_service_slow", env["GENIUS_TEST_ECS_CLUSTER"]
    result, output = dag_test(run_python, env, TEST_DAGS, dag_id, file=FILE, timeout=600)
    tis, run_id = tis_by_id(result), result["run_id"]
    assert tis[("start", -1)]["state"] == "failed", output[-6000:]
    # the runtime's verdict (ready_timeout), not the operator's deadline, with the remote log tail
    assert "the service is not ready: " in output and "did not answer 2xx within 5s" in output
    assert "last log lines:" in output  # the container's last line: where it listens (then it waits)
    port = env["GENIUS_TEST_SERVICE_PORT"]
    assert f"airflow_genius.service: serving /echo on 0.0.0.0:{port}" in output.split("last log lines:", 1)[1]
    (task,) = service_tasks(cluster, dag_id, run_id)  # nothing left running
    assert (task["lastStatus"], task["stoppedReason"]) == ("STOPPED", NOT_READY_REASON)
    container_gone(cluster, task)
    assert rig.ecs_tasks(cluster, ecs_started_by(dag_id, "start", run_id), "RUNNING") == []


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}
    args = [str(TEST_DAGS / f"{FILE}.py"), dag_id, "{}", logical_date]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def running_services(cluster: str, agent: Any, dag_id: str, port: int) -> list[dict[str, Any]]:
    """RUNNING tasks of ``dag_id``'s start task on ``port`` whose container the agent runs."""
    found = []
    for task in rig.ecs_tasks(cluster, status="RUNNING"):
        spec = launched_spec(task, "genius")
        if spec is None or spec.service is None or agent.address(task["taskArn"]) is None:
            continue
        if (spec.run.dag_id, spec.run.task_id, spec.service.port) == (dag_id, "start", port):
            found.append(task)
    return found


def test_sigterm_of_the_service_task_stops_it(service_env: dict[str, str], ecs_rig: dict[str, Any]) -> None:
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "3600", "GENIUS_TEST_READY_TIMEOUT": "600"}
    dag_id, cluster, agent = "genius_ecs_service_slow", ecs_rig["cluster"], ecs_rig["agent"]
    port = int(env["GENIUS_TEST_SERVICE_PORT"])
    child = start_dag_test(env, dag_id, "2031-02-01T00:00:00+00:00")
    try:
        (task,) = rig.wait_until(
            "the service's ECS task to run",
            lambda: running_services(cluster, agent, dag_id, port),
            timeout=180,
        )
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        output, _ = child.communicate(timeout=180)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    (stopped,) = rig.client("ecs").describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"]
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", "Task killed by the user")
    container_gone(cluster, task)
    assert "Task killed by the user" in output


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_a_retry_after_a_worker_crash_reattaches_to_the_running_service(
    service_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:
    """Two tries of the start task through the real task runner: the first is SIGKILLed while its service
    starts (a worker crash); the second finds the task by its startedBy and waits for that one. Then the
    stop operator stops it, and a second stop finds nothing to do."""
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "10", "GENIUS_TEST_READY_TIMEOUT": "300"}
    dag_id, cluster, agent = "genius_ecs_service_slow", ecs_rig["cluster"], ecs_rig["agent"]
    port = int(env["GENIUS_TEST_SERVICE_PORT"])
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", dag_id, "--run-id", run_id]):
        airflow_cli(env, *args).communicate(timeout=180)
    owner = generate_uuid(dag_id, "start", run_id, "-1")  # the provider's own startedBy rule
    assert owner == ecs_started_by(dag_id, "start", run_id)
    first = airflow_cli(env, "tasks", "test", dag_id, "start", run_id)
    try:
        (task,) = rig.wait_until(
            "the service's ECS task to run",
            lambda: [t for t in rig.ecs_tasks(cluster, owner, "RUNNING") if agent.address(t["taskArn"])],
            timeout=180,
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the ECS task keeps running
        first.communicate(timeout=30)
    second = airflow_cli(env, "tasks", "test", dag_id, "start", run_id)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-6000:]
    assert f"Reattaching previously launched task: {task['taskArn']}" in output
    assert "service echo is ready at" in output

    # exactly one service on the engine, up, and reachable where the record says
    live = rig.ecs_tasks(cluster, owner)
    assert [(t["taskArn"], t["lastStatus"]) for t in live] == [(task["taskArn"], "RUNNING")]
    assert len(rig.containers_named(task_container(cluster, task))) == 1
    service = run_record(env, dag_id, "start", run_id).info["service"]
    assert service["ready_at"] and service["hostname"] == agent.address(task["taskArn"])
    with urllib.request.urlopen(f"http://{service['hostname']}:{port}/health", timeout=10) as answer:
        assert answer.status == 200

    stop = airflow_cli(env, "tasks", "test", dag_id, "stop", run_id)
    output, _ = stop.communicate(timeout=300)
    assert stop.returncode == 0, output[-6000:]
    (stopped,) = rig.ecs_tasks(cluster, owner)
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", TEARDOWN_REASON)
    container_gone(cluster, task)
    again = airflow_cli(env, "tasks", "test", dag_id, "stop", run_id)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "nothing to stop" in output, output[-6000:]


class _Ti:
    """What the operators read from ``context["ti"]`` (a later try than the one that started the task)."""

    def __init__(self, dag_id: str, task_id: str, run_id: str, try_number: int) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = dag_id, task_id, run_id, -1
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_a_later_try_reattaches_and_reads_the_record_of_the_try_that_started_it(
    service_env: dict[str, str], ecs_rig: dict[str, Any]
) -> None:
    """A scheduler retry has a higher try number than the try whose worker died; the service's run record
    is the earlier try's. The operator reads that try from the running task's TaskSpec and waits for it."""
    from airflow_genius.operators.ecs_service import GeniusEcsServiceOperator, GeniusEcsServiceStopOperator

    dag_id, run_id, cluster = f"svc_retry_{uuid.uuid4().hex[:8]}", "manual__retry", ecs_rig["cluster"]
    port = int(service_env["GENIUS_TEST_SERVICE_PORT"])

    def operator(try_number: int) -> tuple[GeniusEcsServiceOperator, Any]:
        op = GeniusEcsServiceOperator(
            task_id="start", task_class="airflow_genius.examples.tasks:EchoService", method="serve",
            method_kwargs={"delay": 3}, service_port=port, ready_timeout=120, start_timeout=180,
            state_uri=service_env["AIRFLOW__GENIUS__STATE_URI"], aws_conn_id=None, region_name=rig.REGION,
            cluster=cluster, task_definition=ecs_rig["taskdef"], container_name="genius", launch_type="FARGATE",
            environment=rig.CONTAINER_ENV,
        )  # fmt: skip
        return op, {"ti": _Ti(dag_id, "start", run_id, try_number), "logical_date": None}

    # try 1 starts the ECS task and its worker dies before it saw the service ready
    first, context = operator(1)
    assert first.launch(context) == 1  # nothing to reattach to: it started the task
    # try 3 (the scheduler's retry) reattaches to it, and the record of try 1 says when it is ready
    second, context = operator(3)
    published = second.execute(context)
    assert published["ecs_task_arn"] == first.arn and published["port"] == port
    assert run_record(service_env, dag_id, "start", run_id).try_number == 1
    (task,) = rig.ecs_tasks(cluster, ecs_started_by(dag_id, "start", run_id))  # exactly one
    assert task["lastStatus"] == "RUNNING"

    stop = GeniusEcsServiceStopOperator(task_id="stop", service="start", cluster=cluster, aws_conn_id=None,
                                        region_name=rig.REGION, waiter_delay=1)  # fmt: skip
    stop_context: Any = {"ti": _Ti(dag_id, "stop", run_id, 1)}
    assert stop.execute(stop_context) == {"service": "start", "stopped": [first.arn]}
    assert stop.execute(stop_context) == {"service": "start", "stopped": []}  # idempotent
    container_gone(cluster, task)
