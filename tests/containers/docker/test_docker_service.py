"""GeniusDockerServiceOperator and GeniusDockerServiceStopOperator in real Airflow runs (``dag.test()``,
``airflow tasks test``) against podman's Docker API: a service, two clients and a teardown; a failing
client; a service that never answers; a kill; a worker crash and the retry that reattaches; a stop after a
start that died half-way; a user-defined network (the published address is the container's IP, or its
name)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import DAG_TEST, dag_test

from airflow_genius.core import RunKey, RunRecord, Status, open_state
from airflow_genius.operators.docker_request import container_name_for
from airflow_genius.operators.docker_service import container_address
from containers.docker.rig import containers_of, inspect_or_none, wait_for_new_container

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "dags_examples"
CASES = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CASES_DAG = "genius_docker_service_cases"
START = "start_echo"

#: What the scheduler does to the task instance of a worker that died (its heartbeat stopped): up for
#: retry, and the retry is the next try.
WORKER_DIED = """
import sys
from sqlalchemy import select
from airflow.models import TaskInstance
from airflow.utils.session import create_session
dag_id, task_id, run_id = sys.argv[1:4]
with create_session() as session:
    ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
        TaskInstance.task_id == task_id, TaskInstance.run_id == run_id)).one()
    ti.state = "up_for_retry"
    ti.try_number = max(ti.try_number, 1) + 1
    print(f"try {ti.try_number}")
"""


def on_the_rig(test: Any) -> Any:
    """Marks of a test that runs Airflow against the rig's engine."""
    return pytest.mark.containers(pytest.mark.airflow(pytest.mark.slow(test)))


# ---------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port free on this host now (services on the host network listen on the host's ports)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service_env(docker_env: dict[str, str]) -> dict[str, str]:
    """The Docker test environment with a port of its own for the service (host network)."""
    return {**docker_env, "GENIUS_TEST_SERVICE_PORT": str(free_port())}


def tis_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task instances by task id, mapped ones as ``task[i]``."""
    return {
        ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti
        for ti in result["tis"]
    }


def record_of(env: dict[str, str], dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> RunRecord:
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        return state.require_run(RunKey(dag_id, task_id, run_id, map_index))


def run_containers(client: Any, dag_id: str, run_id: str) -> set[str]:
    """Ids of every container (any state) the genius operators labelled with this DAG run."""
    labels = [f"airflow_genius.dag_id={dag_id}", f"airflow_genius.run_id={run_id}"]
    return {c["Id"] for c in client.containers(all=True, filters={"label": labels})}


def wait_for_service_record(env: dict[str, str], key: RunKey, timeout: float = 120) -> None:
    """Until the service's record is RUNNING with where it listens (its SIGTERM handler is installed)."""
    deadline = time.monotonic() + timeout
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        while time.monotonic() < deadline:
            record = state.get_run(key)
            if record is not None and record.status is Status.RUNNING and record.info.get("service"):
                return
            time.sleep(0.2)
    raise AssertionError(f"service {key} did not record where it listens within {timeout}s")


def check_served_and_stopped(
    env: dict[str, str], client: Any, dag_id: str, run_id: str, published: dict[str, Any]
) -> None:
    """The service answered its health path, the teardown stopped it with SIGTERM (the record ends
    SUCCESS with the runtime's service result) and removed its container: nothing is left of the run."""
    record = record_of(env, dag_id, START, run_id)
    assert record.status is Status.SUCCESS, record
    assert record.result["service"] == START and record.result["ready"] is True, record.result
    assert "SIGTERM" in record.result["stopped"], record.result
    service = record.info["service"]
    assert service["ready_at"] and service["port"] == published["port"] == int(
        published["url"].rsplit(":", 1)[1]
    )
    assert published["container"] == container_name_for(dag_id, START, run_id)
    assert inspect_or_none(client, published["container"]) is None
    assert run_containers(client, dag_id, run_id) == set()


def check_clients(
    env: dict[str, str], tis: dict[str, dict[str, Any]], dag_id: str, run_id: str, calls: int
) -> None:
    """Both mapped clients called the published URL and recorded their latencies in their run records."""
    published = tis[START]["xcom"]
    for index in (0, 1):
        ti = tis[f"ask[{index}]"]
        assert ti["state"] == "success", ti
        assert ti["xcom"] == {"url": f"{published['url']}/echo", "calls": calls, "service": START}
        metrics = record_of(env, dag_id, "ask", run_id, index).metrics
        assert metrics["calls"] == calls and 0 < metrics["latency_ms_median"] <= metrics["latency_ms_max"]


def start_dag_test(env: dict[str, str]) -> subprocess.Popen[str]:
    """``dag.test()`` of the cases DAG in a child process of its own session (to kill it)."""
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}
    args = [str(CASES / f"{CASES_DAG}.py"), CASES_DAG, "{}"]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def airflow_ok(env: dict[str, str], *args: str) -> str:
    proc = airflow_cli(env, *args)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Task failed with exception" not in output, output[-4000:]
    return output


def remove_leftovers(client: Any, dag_id: str, run_id: str | None) -> None:
    """A failed test must not leave its containers running on the shared engine."""
    if run_id:
        for container_id in run_containers(client, dag_id, run_id):
            client.remove_container(container_id, force=True)


# ---------------------------------------------------------------------- no engine
def test_container_address_prefers_the_named_network() -> None:
    networks = {"podman": {"IPAddress": "10.88.0.4"}, "genius": {"IPAddress": "10.89.0.7"}}
    inspect = {"NetworkSettings": {"Networks": networks, "IPAddress": ""}}
    assert container_address(inspect, "genius") == "10.89.0.7"
    assert container_address(inspect, None) == "10.89.0.7"  # the first network by name
    # podman names its default bridge "podman", not "bridge": its only network then
    assert (
        container_address({"NetworkSettings": {"Networks": {"podman": networks["podman"]}}}, "bridge")
        == "10.88.0.4"
    )
    for no_address_of_its_own in ("host", "none", "container:abc"):
        assert container_address(inspect, no_address_of_its_own) is None
    assert (
        container_address({"NetworkSettings": {"Networks": {}, "IPAddress": "172.17.0.2"}}, None)
        == "172.17.0.2"
    )
    assert container_address({"NetworkSettings": {"Networks": {"x": {"IPAddress": ""}}}}, "x") is None


def test_docstring_examples() -> None:
    import doctest

    from airflow_genius.operators import docker_service

    result = doctest.testmod(docker_service)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.airflow
def test_example_imports_without_an_engine(airflow_env: dict[str, str], tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "genius_docker_service.py", tmp_path / "genius_docker_service.py")
    env = {k: v for k, v in airflow_env.items() if not k.startswith("GENIUS_EXAMPLE_")}
    env.update(AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path), GENIUS_EXAMPLE_DOCKER_URL="unix:///nonexistent.sock")
    done = subprocess.run([AIRFLOW, "dags", "list-import-errors", "--local", "-o", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == [], done.stdout + done.stderr
    listed = subprocess.run([AIRFLOW, "dags", "list", "--local", "-o", "plain"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False).stdout  # fmt: skip
    assert "genius_docker_service" in listed


# ---------------------------------------------------------------------- on podman
@on_the_rig
def test_example_service_two_clients_and_teardown(
    run_python, service_env: dict[str, str], docker_client: Any
) -> None:  # type: ignore[no-untyped-def]
    """The example DAG: the service starts and answers its health path, two mapped clients call it with
    the environment its XCom gives them, and the teardown stops it."""
    port = int(service_env["GENIUS_TEST_SERVICE_PORT"])
    env = {**service_env, "GENIUS_EXAMPLE_SERVICE_PORT": str(port)}
    result, output = dag_test(
        run_python, env, EXAMPLES, "genius_docker_service", {"calls": 7}, file="genius_docker_service"
    )
    run_id = result["run_id"]
    try:
        assert result["state"] == "success", output[-6000:]
        tis = tis_by_id(result)
        published = tis[START]["xcom"]
        # host network: no address of its own, so the runtime's (the Docker host's primary address)
        record = record_of(env, "genius_docker_service", START, run_id)
        assert published["hostname"] == record.info["service"]["hostname"]
        assert published["name"] == START and published["port"] == port
        assert (
            published["url"] == f"http://{published['hostname']}:{port}"
            and published["health_path"] == "/health"
        )
        check_clients(env, tis, "genius_docker_service", run_id, calls=7)
        assert tis["stop_echo"]["state"] == "success"
        assert tis["stop_echo"]["xcom"] == {
            "container": published["container"],
            "stopped": True,
            "exit_code": 0,
        }
        check_served_and_stopped(env, docker_client, "genius_docker_service", run_id, published)
        # the service's own output reached the start task's log (when ready) and the stop's (before removal)
        assert output.count(f"serving /echo on 0.0.0.0:{port}") >= 2, output[-6000:]
    finally:
        remove_leftovers(docker_client, "genius_docker_service", run_id)


@on_the_rig
def test_the_teardown_stops_the_service_when_a_client_fails(
    run_python, service_env: dict[str, str], docker_client: Any
) -> None:  # type: ignore[no-untyped-def]
    env = {**service_env, "GENIUS_TEST_CLIENT_PATH": "/missing"}
    result, output = dag_test(run_python, env, CASES, CASES_DAG)
    run_id = result["run_id"]
    try:
        states = {task: ti["state"] for task, ti in tis_by_id(result).items()}
        assert states == {START: "success", "ask[0]": "failed", "ask[1]": "failed", "stop_echo": "success"}, (
            output[-6000:]
        )
        assert result["state"] == "failed"
        assert "HTTPError: HTTP Error 404" in output  # the clients' own error, from their run records
        check_served_and_stopped(env, docker_client, CASES_DAG, run_id, tis_by_id(result)[START]["xcom"])
    finally:
        remove_leftovers(docker_client, CASES_DAG, run_id)


@on_the_rig
def test_a_service_that_never_answers_fails_with_its_log_and_leaves_nothing(
    run_python, service_env: dict[str, str], docker_client: Any
) -> None:  # type: ignore[no-untyped-def]
    port = service_env["GENIUS_TEST_SERVICE_PORT"]
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "3600", "GENIUS_TEST_READY_TIMEOUT": "4"}
    result, output = dag_test(run_python, env, CASES, CASES_DAG)
    run_id = result["run_id"]
    try:
        states = {task: ti["state"] for task, ti in tis_by_id(result).items()}
        # the teardown's setup failed: Airflow does not run it (the failed start cleaned up itself)
        assert states == {
            START: "failed",
            "ask[0]": "upstream_failed",
            "ask[1]": "upstream_failed",
            "stop_echo": "upstream_failed",
        }, output[-6000:]
        # the runtime's verdict from beside the service, then the container's last lines
        assert (
            f"the service is not ready: http://127.0.0.1:{port}/health did not answer 2xx within 4s" in output
        )
        assert f"serving /echo on 0.0.0.0:{port}" in output.split("last log lines:", 1)[1]
        # stopped (SIGTERM: the record ends as a service that never was ready) and removed
        record = record_of(env, CASES_DAG, START, run_id)
        assert record.status is Status.SUCCESS and record.result["ready"] is False, record
        assert record.info["service"]["ready"] is False
        assert run_containers(docker_client, CASES_DAG, run_id) == set()
    finally:
        remove_leftovers(docker_client, CASES_DAG, run_id)


@on_the_rig
def test_killing_the_start_task_stops_the_service(service_env: dict[str, str], docker_client: Any) -> None:
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "3600", "GENIUS_TEST_READY_TIMEOUT": "600"}
    known = containers_of(docker_client, CASES_DAG, START)
    child = start_dag_test(env)
    run_id = None
    try:
        started = wait_for_new_container(docker_client, CASES_DAG, START, known=known)
        name = started["Name"].lstrip("/")
        run_id = started["Config"]["Labels"]["airflow_genius.run_id"]
        wait_for_service_record(env, RunKey(CASES_DAG, START, run_id))
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        # the engine is checked once the run ended: polling it while the operator removes the container
        # can meet podman mid-removal
        output, _ = child.communicate(timeout=180)
        assert f"Stopping docker container {started['Id'][:12]}" in output, output[-6000:]
        assert f"stopping service container {name}" in output
        errors = [line for line in output.splitlines() if "ServiceNotReady:" in line]
        assert errors and "before it was ready" in errors[0], errors or output[-6000:]
        assert run_containers(docker_client, CASES_DAG, run_id) == set()  # stopped, then removed
        record = record_of(env, CASES_DAG, START, run_id)
        assert record.status is Status.SUCCESS and "SIGTERM" in record.result["stopped"], record
        assert record.result["ready"] is False
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate(timeout=30)
        remove_leftovers(docker_client, CASES_DAG, run_id)


@on_the_rig
def test_a_retry_after_a_worker_crash_reattaches_to_the_running_service(
    run_python, service_env: dict[str, str], docker_client: Any
) -> None:  # type: ignore[no-untyped-def]
    """Two tries of the start task through the real task runner (``airflow tasks test <run id>``). The
    worker of try 1 dies (SIGKILL) while it waits for the service; the engine keeps the container; the
    scheduler's part — the dead worker's task instance fails and its retry is try 2 — is done on the
    metadata DB. Try 2 finds the container by its deterministic name, takes readiness from the run
    record of try 1, which started it, and publishes it: one service container in all. The teardown
    then stops it."""
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "15"}
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    airflow_ok(env, "dags", "reserialize")
    airflow_ok(env, "dags", "trigger", CASES_DAG, "--run-id", run_id)
    name = container_name_for(CASES_DAG, START, run_id)
    first = airflow_cli(env, "tasks", "test", CASES_DAG, START, run_id)
    try:
        wait_for_service_record(env, RunKey(CASES_DAG, START, run_id))
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the container keeps running
        first.communicate(timeout=30)
        started = docker_client.inspect_container(name)
        assert started["State"]["Running"] and started["Config"]["Labels"]["airflow_genius.try_number"] == "1"
        died = run_python(WORKER_DIED, env, args=[CASES_DAG, START, run_id])
        assert died.returncode == 0 and died.stdout.strip() == "try 2", (
            died.stdout[-2000:] + died.stderr[-3000:]
        )

        output = airflow_ok(env, "tasks", "test", CASES_DAG, START, run_id)
        assert f"reattaching to container {started['Id'][:12]} ({name}) started by try 1" in output
        assert "starting service" not in output  # no second container
        assert "service start_echo is ready at http://" in output
        assert run_containers(docker_client, CASES_DAG, run_id) == {started["Id"]}
        assert record_of(env, CASES_DAG, START, run_id).try_number == 1

        output = airflow_ok(env, "tasks", "test", CASES_DAG, "stop_echo", run_id)
        assert f"stopping service container {name}" in output
        record = record_of(env, CASES_DAG, START, run_id)
        assert record.status is Status.SUCCESS and record.result["ready"] is True, record
        assert run_containers(docker_client, CASES_DAG, run_id) == set()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        remove_leftovers(docker_client, CASES_DAG, run_id)


@on_the_rig
def test_the_stop_works_after_a_start_that_died_half_way_and_is_idempotent(
    service_env: dict[str, str], docker_client: Any
) -> None:
    """The start task dies (SIGKILL) before its service was ready: no XCom, task not successful. The stop
    operator (``airflow tasks test``) still finds the container by its name and stops it — SIGTERM, so
    the service's record ends SUCCESS — and a second stop has nothing left to do."""
    env = {**service_env, "GENIUS_TEST_SERVICE_DELAY": "3600", "GENIUS_TEST_READY_TIMEOUT": "600"}
    run_id = f"halfway_{uuid.uuid4().hex[:8]}"
    airflow_ok(env, "dags", "reserialize")
    airflow_ok(env, "dags", "trigger", CASES_DAG, "--run-id", run_id)
    name = container_name_for(CASES_DAG, START, run_id)
    start = airflow_cli(env, "tasks", "test", CASES_DAG, START, run_id)
    try:
        wait_for_service_record(env, RunKey(CASES_DAG, START, run_id))
        os.killpg(start.pid, signal.SIGKILL)
        start.communicate(timeout=30)
        assert docker_client.inspect_container(name)["State"]["Running"]

        output = airflow_ok(env, "tasks", "test", CASES_DAG, "stop_echo", run_id)
        assert f"stopping service container {name}" in output and f"removed container {name}" in output
        assert inspect_or_none(docker_client, name) is None
        record = record_of(env, CASES_DAG, START, run_id)
        assert record.status is Status.SUCCESS and "SIGTERM" in record.result["stopped"], record

        again = airflow_ok(env, "tasks", "test", CASES_DAG, "stop_echo", run_id)
        assert f"no container {name} of service '{START}' in this run: nothing to stop" in again
    finally:
        if start.poll() is None:
            os.killpg(start.pid, signal.SIGKILL)
        remove_leftovers(docker_client, CASES_DAG, run_id)


@pytest.fixture
def user_network(docker_client: Any) -> Iterator[str]:
    """A user-defined bridge network (with the engine's DNS), removed afterwards."""
    name = f"genius-test-{uuid.uuid4().hex[:8]}"
    docker_client.create_network(name, driver="bridge")
    yield name
    docker_client.remove_network(name)


@pytest.fixture
def shared_sqlite(tmp_path: Path) -> Path:
    """A SQLite state file in a folder that the worker and the containers (uid 50000) share through a
    bind mount at the same path: the rig's servers listen on the host's loopback only, which a bridged
    container cannot reach. The file belongs to uid 50000; SQLite gives its -wal/-shm files, when root
    creates them, the file's owner."""
    folder = tmp_path / "shared"
    folder.mkdir()
    db = folder / "state.db"
    with open_state(f"sqlite:///{db}"):
        pass
    for path in (folder, *folder.iterdir()):
        os.chown(path, 50000, 0)
        path.chmod(0o775 if path.is_dir() else 0o664)
    return db


@on_the_rig
@pytest.mark.parametrize("advertise", ["ip", "name"])
def test_on_a_user_network_clients_reach_the_published_address(
    run_python,
    docker_env: dict[str, str],
    docker_client: Any,
    user_network: str,
    shared_sqlite: Path,
    advertise: str,
) -> None:  # type: ignore[no-untyped-def]
    """On a user-defined network the clients (containers on that network) reach the service at its IP
    address on it (the default) or at its container name (the engine's DNS)."""
    env = {
        **docker_env,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{shared_sqlite}",
        "GENIUS_TEST_NETWORK": user_network,
        "GENIUS_TEST_MOUNT": str(shared_sqlite.parent),
        "GENIUS_TEST_ADVERTISE": advertise,
        "GENIUS_TEST_SERVICE_PORT": "8000",  # an address of its own: no clash with the host's ports
    }
    result, output = dag_test(run_python, env, CASES, CASES_DAG)
    run_id = result["run_id"]
    try:
        assert result["state"] == "success", output[-6000:]
        tis = tis_by_id(result)
        published = tis[START]["xcom"]
        if advertise == "name":
            assert published["hostname"] == published["container"]
        else:
            # the address the runtime saw inside the container is the one the engine reports
            assert (
                published["hostname"] == record_of(env, CASES_DAG, START, run_id).info["service"]["hostname"]
            )
            assert published["hostname"].count(".") == 3
        assert published["url"] == f"http://{published['hostname']}:8000"
        check_clients(env, tis, CASES_DAG, run_id, calls=5)
        check_served_and_stopped(env, docker_client, CASES_DAG, run_id, published)
    finally:
        remove_leftovers(docker_client, CASES_DAG, run_id)
