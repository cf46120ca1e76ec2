"""GeniusLocalServiceOperator and GeniusLocalServiceStopOperator in real ``dag.test()`` runs: a service on
the worker, two clients and the teardown; a service that fails before it is ready; a stop after the
process is already gone."""

from __future__ import annotations

import json
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import RunPython
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, RunRecord, Status, open_state
from airflow_genius.operators.local_service import LocalProcess, is_alive, service_folder

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_local_service_cases"
START = "start_echo"

#: One DAG file, three shapes chosen by GENIUS_TEST_CASE (the DAG id stays the same).
CASES_DAG = textwrap.dedent(
    """
    import os, signal, time
    from datetime import datetime
    from airflow.sdk import DAG, task
    from airflow_genius.operators.local import GeniusTaskOperator
    from airflow_genius.operators.local_service import (
        GeniusLocalServiceOperator, GeniusLocalServiceStopOperator,
    )

    CASE = os.environ["GENIUS_TEST_CASE"]
    PORT = int(os.environ["GENIUS_TEST_SERVICE_PORT"])

    with DAG("genius_local_service_cases", schedule=None, start_date=datetime(2024, 1, 1)) as genius_local_service_cases:
        start = GeniusLocalServiceOperator(
            task_id="start_echo", task_class="airflow_genius.examples.tasks:EchoService", method="serve",
            method_kwargs={"delay": 0.3} if CASE != "fails" else {"no_such_argument": 1},
            service_port=PORT, ready_timeout=60, start_timeout=60,
        )
        stop = GeniusLocalServiceStopOperator(task_id="stop_echo", service="start_echo", stop_timeout=10)
        if CASE == "gone":
            @task
            def kill_service(ti=None):
                pid = ti.xcom_pull(task_ids="start_echo")["process"]["pid"]
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)  # dag.test runs the start task in this process: reap its child
                return pid
            start >> kill_service() >> stop.as_teardown(setups=start)
        else:
            ask = GeniusTaskOperator.partial(
                task_id="ask", service="start_echo",
                task_class="airflow_genius.examples.tasks:ServiceClient", method="call",
            ).expand(method_kwargs=[{"times": 5, "path": "/echo"}] * 2)
            start >> ask >> stop.as_teardown(setups=start)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def case_env(airflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / f"{DAG_ID}.py").write_text(CASES_DAG)
    return {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_TEST_SERVICE_PORT": str(free_port()),
    }


def run_case(
    run_python: RunPython, env: dict[str, str], case: str, tmp_path: Path
) -> tuple[dict[str, dict[str, Any]], str, str]:
    result, output = dag_test(run_python, {**env, "GENIUS_TEST_CASE": case}, tmp_path / "dags", DAG_ID)
    tis = {
        ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti
        for ti in result["tis"]
    }
    return tis, result["run_id"], output


def record_of(env: dict[str, str], task_id: str, run_id: str, map_index: int = -1) -> RunRecord:
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        return state.require_run(RunKey(DAG_ID, task_id, run_id, map_index))


def process_of(env: dict[str, str], run_id: str) -> LocalProcess:
    """The process the start task recorded beside its log (on every try, success or not)."""
    who = {"dag_id": DAG_ID, "task_id": START, "run_id": run_id, "map_index": -1}
    folder = service_folder(env["AIRFLOW__GENIUS__WORK_DIR"], who)
    return LocalProcess.from_dict(json.loads((folder / "process.json").read_text()))


def test_docstring_examples() -> None:
    import doctest

    from airflow_genius.operators import local_service

    result = doctest.testmod(local_service)
    assert result.failed == 0 and result.attempted > 0


def test_service_two_clients_and_the_teardown(
    run_python: RunPython, case_env: dict[str, str], tmp_path: Path
) -> None:
    tis, run_id, output = run_case(run_python, case_env, "serve", tmp_path)
    assert all(ti["state"] == "success" for ti in tis.values()), (tis, output[-4000:])
    published = tis[START]["xcom"]
    assert published["name"] == START and published["port"] == int(case_env["GENIUS_TEST_SERVICE_PORT"])
    assert published["process"]["host"] == socket.gethostname()
    for index in (0, 1):
        assert tis[f"ask[{index}]"]["xcom"] == {
            "url": f"{published['url']}/echo",
            "calls": 5,
            "service": START,
        }
        assert record_of(case_env, "ask", run_id, index).metrics["calls"] == 5
    assert tis["stop_echo"]["xcom"] == {
        "pid": published["process"]["pid"],
        "host": socket.gethostname(),
        "stopped": "terminated",
    }
    # SIGTERM is the service's normal end: its record is SUCCESS with the runtime's service result.
    record = record_of(case_env, START, run_id)
    assert record.status is Status.SUCCESS, record
    assert record.result["ready"] is True and "SIGTERM" in record.result["stopped"], record.result
    assert record.info["service"]["ready_at"]
    assert not is_alive(process_of(case_env, run_id))
    assert "serving /echo" in Path(published["process"]["log"]).read_text()


def test_a_service_that_fails_before_it_is_ready(
    run_python: RunPython, case_env: dict[str, str], tmp_path: Path
) -> None:
    tis, run_id, output = run_case(run_python, case_env, "fails", tmp_path)
    assert tis[START]["state"] == "failed", tis
    assert "the service failed before it was ready" in output and "no_such_argument" in output, output[-4000:]
    assert all(tis[f"ask[{i}]"]["state"] == "upstream_failed" for i in (0, 1)), tis
    record = record_of(case_env, START, run_id)
    assert (
        record.status is Status.FAILED and record.error["type"] == "airflow_genius.core.errors.TaskCallError"
    )
    deadline = time.monotonic() + 30
    while is_alive(process_of(case_env, run_id)) and time.monotonic() < deadline:
        time.sleep(0.1)  # the process exits on its own after recording the failure
    assert not is_alive(process_of(case_env, run_id))


def test_stop_when_the_process_is_already_gone(
    run_python: RunPython, case_env: dict[str, str], tmp_path: Path
) -> None:
    tis, run_id, output = run_case(run_python, case_env, "gone", tmp_path)
    assert tis["kill_service"]["state"] == "success", (tis, output[-4000:])
    assert tis["stop_echo"]["state"] == "success", (tis, output[-4000:])
    assert tis["stop_echo"]["xcom"]["stopped"] == "gone"
    assert "had already ended" in output
    # Killed with SIGKILL: the run never finished its record (RUNNING until its heartbeat goes stale).
    assert record_of(case_env, START, run_id).status is Status.RUNNING
