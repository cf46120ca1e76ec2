"""GeniusDockerOperator in real Airflow runs (``dag.test()``, ``airflow tasks test``) against podman's
Docker API, with run records in the rig's Redis or PostgreSQL (the containers use the host network)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import DAG_TEST, dag_test
from stream_windows import check_windows, run_twice, stream_env, stream_prefix, xcom_of

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.operators.docker_request import container_name_for
from containers.docker.rig import (
    containers_of,
    inspect_or_none,
    wait_for_container,
    wait_for_new_container,
    wait_until_stopped,
)

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "dags_examples"
CASES = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def tis_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in result["tis"]}


def writable_by_the_image(path: Path) -> Path:
    """A host folder the image's user (uid 50000, gid 0) can write through a bind mount."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 50000, 0)
    path.chmod(0o775)
    return path


def test_pipeline_in_containers(run_python, docker_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Spout → bolt of the example DAG: the bolt reads the spout's partition from a bind-mounted folder
    and writes its own; each return value (from the run record) is the XCom; container output is in
    the task log."""
    data = writable_by_the_image(tmp_path / "data")
    env = {**docker_env, "GENIUS_EXAMPLE_DATA": str(data)}
    result, output = dag_test(
        run_python, env, EXAMPLES, "genius_docker_pipeline", {"count": 12, "top": 3}, file="genius_docker"
    )
    assert result["state"] == "success", output[-4000:]
    tis = tis_by_id(result)
    assert tis["fetch"]["xcom"] == {"records": 12, "files": 3, "produced_total": 12}
    assert tis["count"]["xcom"]["records"] == 12 and len(tis["count"]["xcom"]["top"]) == 3
    # the bolt's output partition, committed in the mounted folder
    (marker,) = (data / "docker" / "counts").rglob("_SUCCESS")
    assert json.loads((marker.parent / "top_words.json").read_text()) == tis["count"]["xcom"]["top"]
    # the XCom is the run record's result, not a log line of the container
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        for task_id in ("fetch", "count"):
            record = state.require_run(RunKey("genius_docker_pipeline", task_id, result["run_id"]))
            assert record.status is Status.SUCCESS and record.result == tis[task_id]["xcom"]
    # the runtime's own log lines, printed inside the containers, reached the Airflow task log
    for task_id in ("fetch", "count"):
        assert f"airflow_genius.runtime: run genius_docker_pipeline.{task_id}@{result['run_id']}" in output
        assert f"genius_docker_pipeline.{task_id}@{result['run_id']} try 1 succeeded" in output


def test_failures_fail_the_task_with_the_remote_error(
    run_python, docker_env: dict[str, str], docker_client: Any
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(
        run_python, docker_env, CASES, "genius_docker_failures", file="genius_docker_cases"
    )
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == {"raises": "failed", "exits_3": "failed"}, (
        output[-4000:]
    )
    # the task's own error type, message and traceback, from the run record
    assert "RuntimeError: the remote task broke (container genius-genius_docker_failures-raises-" in output
    assert "Traceback (most recent call last)" in output and "in fail\n" in output
    # a crash before any result: the exit code and the record's status say it
    assert "exited 3 (run record: RUNNING)" in output
    # both containers were removed once their exit code was read (auto_remove="force")
    for task_id in ("raises", "exits_3"):
        assert (
            inspect_or_none(
                docker_client, container_name_for("genius_docker_failures", task_id, result["run_id"])
            )
            is None
        )


def start_dag_test(env: dict[str, str], dag_id: str) -> subprocess.Popen[str]:
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}
    args = [str(CASES / "genius_docker_cases.py"), dag_id, "{}"]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def wait_for_status(
    state_uri: str, key: RunKey, status: Status = Status.RUNNING, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    with open_state(state_uri) as state:
        while time.monotonic() < deadline:
            record = state.get_run(key)
            if record is not None and record.status is status:
                return
            time.sleep(0.2)
    raise AssertionError(f"run {key} did not reach {status.value} within {timeout}s")


def test_killing_the_task_stops_the_container(docker_env: dict[str, str], docker_client: Any) -> None:
    env = {**docker_env, "GENIUS_TEST_SLEEP": "300"}
    known = containers_of(docker_client, "genius_docker_sleeper", "sleep")
    child = start_dag_test(env, "genius_docker_sleeper")
    name = None
    try:
        started = wait_for_new_container(docker_client, "genius_docker_sleeper", "sleep", known=known)
        name = started["Name"].lstrip("/")
        run_id = started["Config"]["Labels"]["airflow_genius.run_id"]
        assert name == container_name_for("genius_docker_sleeper", "sleep", run_id)
        # the runtime is PID 1 in the container: SIGTERM reaches it once its handler is installed,
        # which is before the record turns RUNNING (earlier, `docker stop` falls back to SIGKILL)
        wait_for_status(env["AIRFLOW__GENIUS__STATE_URI"], RunKey("genius_docker_sleeper", "sleep", run_id))
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        ended = wait_until_stopped(docker_client, name, timeout=60)
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        if name and inspect_or_none(docker_client, name) is not None:
            docker_client.remove_container(name, force=True)
    # on the engine: stopped (exited), then removed by the operator once it read the exit code
    assert ended is None or ended["State"]["Status"] in ("exited", "stopped"), ended
    assert "Stopping docker container" in output, output[-4000:]
    assert f"container {name} exited" in output
    # the runtime saw the SIGTERM from `docker stop` and recorded the run as cancelled
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        record = state.require_run(RunKey("genius_docker_sleeper", "sleep", run_id))
    assert record.status is Status.CANCELLED, record


@pytest.fixture
def secret_conn(postgres_url: str) -> tuple[str, str]:
    """(AIRFLOW_CONN_ JSON, password) of a genius_postgres connection WITH a password (the rig's
    PostgreSQL trusts loopback, so any password is accepted: what matters is where it travels)."""
    password = f"pw-{uuid.uuid4().hex}-Zq"
    conn = {
        "conn_type": "genius_postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
        "password": password, "schema": "genius_test",
    }  # fmt: skip
    return json.dumps(conn), password


def test_no_secret_in_argv_or_task_log(
    run_python, docker_env: dict[str, str], docker_client: Any, secret_conn: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    conn_json, password = secret_conn
    env = {
        **docker_env,
        "AIRFLOW_CONN_GENIUS_PG_SECRET": conn_json,
        # masking off for this password (longer secrets only): its absence below is not the masker's doing
        "AIRFLOW__LOGGING__MIN_LENGTH_MASKED_SECRET": "1000",
    }
    result, output = dag_test(run_python, env, CASES, "genius_docker_secret", file="genius_docker_cases")
    name = container_name_for("genius_docker_secret", "echo", result["run_id"])
    try:
        container = inspect_or_none(docker_client, name)
        assert container is not None, "the task kept its container (auto_remove='never')"
        tis = tis_by_id(result)
        assert tis["echo"]["state"] == "success" and tis["echo"]["xcom"] == "delivered", output[-4000:]
        # the control task logged it once: the masker is off, so any other occurrence would show
        assert output.count(password) == 1 and f"CONTROL[{password}]CONTROL" in output
        # never in argv: the command after the genius ENTRYPOINT is fixed and free of values
        config = container["Config"]
        assert container["Args"] == ["run", "--spec-env", "GENIUS_TASK_SPEC"] == config["Cmd"]
        assert config["Entrypoint"] in (["genius"], "genius")
        argv = json.dumps([container.get("Path"), container["Args"], config["Cmd"], config["Entrypoint"]])
        assert password not in argv
        # delivered through the environment, apart from the spec (which names the store without it)
        env_lines = config["Env"]
        assert f"GENIUS_STATE_PASSWORD={password}" in env_lines
        assert "PLAIN_SETTING=visible" in env_lines
        (spec_line,) = [line for line in env_lines if line.startswith("GENIUS_TASK_SPEC=")]
        spec = json.loads(spec_line.removeprefix("GENIUS_TASK_SPEC="))
        assert (
            spec["state"]["uri"] == "postgresql://postgres@127.0.0.1:5432/genius_test"
            and password not in spec_line
        )
        # and the runtime used it: the run record is in PostgreSQL
        with open_state(spec["state"]["uri"], {"GENIUS_STATE_PASSWORD": password}) as state:
            record = state.require_run(RunKey("genius_docker_secret", "echo", result["run_id"]))
        assert record.status is Status.SUCCESS and record.result == "delivered"
    finally:
        if inspect_or_none(docker_client, name) is not None:
            docker_client.remove_container(name, force=True)


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_retry_after_a_worker_crash_reattaches(docker_env: dict[str, str], docker_client: Any) -> None:
    """Two tries of one task instance through the real task runner (``airflow tasks test <run id>``):
    the first is SIGKILLed while its container runs (a worker crash; the container survives); the second
    finds that container by its deterministic name, follows it and takes its result — no second container."""
    # long enough that the second try's CLI (slow to start on a loaded machine) finds it still running
    env = {**docker_env, "GENIUS_TEST_SLEEP": "60"}
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_docker_sleeper", "--run-id", run_id]):
        proc = airflow_cli(env, *args)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:]
    name = container_name_for("genius_docker_sleeper", "sleep", run_id)
    first = airflow_cli(env, "tasks", "test", "genius_docker_sleeper", "sleep", run_id)
    try:
        container_id = wait_for_container(docker_client, name)["Id"]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the container keeps running
        first.communicate(timeout=30)
    try:
        assert docker_client.inspect_container(container_id)["State"]["Running"]
        second = airflow_cli(env, "tasks", "test", "genius_docker_sleeper", "sleep", run_id)
        output, _ = second.communicate(timeout=300)
        assert second.returncode == 0 and "Task failed with exception" not in output, output[-4000:]
        assert f"reattaching to container {container_id[:12]} ({name}) started by try" in output
        assert "Starting docker container" not in output  # no second container
        assert "try 1 succeeded" in output  # the first try's container output, followed from the start
        with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
            record = state.require_run(RunKey("genius_docker_sleeper", "sleep", run_id))
        assert record.status is Status.SUCCESS and record.result == 60.0
        assert inspect_or_none(docker_client, name) is None  # removed once its exit code was read
    finally:
        if inspect_or_none(docker_client, name) is not None:
            docker_client.remove_container(name, force=True)


def test_leftovers_of_earlier_tries_and_foreign_names(docker_env: dict[str, str], docker_client: Any) -> None:
    """An ended container of an earlier try (as a crash between its exit and its removal, or
    ``auto_remove="never"``, leaves it) is removed and the task runs in a new one; a
    ``container_name`` held by a container that is not this task instance's is left alone and fails
    the task."""
    from containers.docker.rig import IMAGE

    foreign_name = f"genius-test-foreign-{uuid.uuid4().hex[:8]}"
    env = {**docker_env, "GENIUS_TEST_FOREIGN_NAME": foreign_name}
    run_id = f"leftover_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_docker_leftovers", "--run-id", run_id]):
        proc = airflow_cli(env, *args)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:]
    name = container_name_for("genius_docker_leftovers", "kept", run_id)
    # the earlier try's container: its name and identity labels, as the operator sets them; ended
    identity = {"dag_id": "genius_docker_leftovers", "task_id": "kept", "run_id": run_id, "map_index": "-1"}
    labels = {f"airflow_genius.{key}": value for key, value in identity.items()}
    earlier = docker_client.create_container(IMAGE, name=name, command=["--version"], labels=labels)
    docker_client.start(earlier["Id"])
    docker_client.wait(earlier["Id"])
    foreign = docker_client.create_container(IMAGE, name=foreign_name, command=["--version"])
    try:
        proc = airflow_cli(env, "tasks", "test", "genius_docker_leftovers", "kept", run_id)
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Task failed with exception" not in output, output[-4000:]
        assert f"removing the ended container {earlier['Id'][:12]} of an earlier try" in output
        assert inspect_or_none(docker_client, earlier["Id"]) is None
        assert docker_client.inspect_container(name)["Id"] != earlier["Id"]  # kept: auto_remove="never"
        with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
            record = state.require_run(RunKey("genius_docker_leftovers", "kept", run_id))
        assert record.status is Status.SUCCESS and record.result == "again"

        proc = airflow_cli(env, "tasks", "test", "genius_docker_leftovers", "foreign", run_id)
        output, _ = proc.communicate(timeout=300)
        assert "Task failed with exception" in output, output[-4000:]  # (`tasks test` exits 0 anyway)
        assert f"container name '{foreign_name}' is taken by container {foreign['Id'][:12]}" in output
        assert docker_client.inspect_container(foreign["Id"])["State"]["Status"] in ("created", "configured")
    finally:
        for container in (name, earlier["Id"], foreign["Id"]):
            if inspect_or_none(docker_client, container) is not None:
                docker_client.remove_container(container, force=True)


def test_a_bounded_stream_window_runs_in_containers(
    run_python, docker_env: dict[str, str], redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Spout → bolt over Redis streams (the containers reach the rig's Redis on the host network): two
    runs at consecutive logical dates, each bolt run reads one window of at most 15 records."""
    with stream_prefix(redis_url, "docker") as prefix:
        env = {**docker_env, **stream_env(redis_url, prefix)}
        runs = run_twice(run_python, env, CASES, "genius_docker_cases", "genius_docker_stream", timeout=300)
        assert [xcom_of(run, "publish") for run in runs] == [20, 20]
        check_windows(runs, state_uri=env["AIRFLOW__GENIUS__STATE_URI"], dag_id="genius_docker_stream",
                      redis_url=redis_url, prefix=prefix)  # fmt: skip
