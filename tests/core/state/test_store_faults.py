"""Run records survive their store: outages at every moment of a run, a frozen server, a silent endpoint.

Each test starts and kills its **own** Redis or PostgreSQL server (tests/support/private_stores.py) and
runs ``genius run`` as a real subprocess, the way every runner launches it. Whatever the moment of the
fault, the record ends true: no record left RUNNING, no false FAILED, no false SUCCESS, no result lost,
and a method that succeeded is never run twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.private_stores import PrivatePostgres, PrivateRedis, silent_endpoint

from airflow_genius.core import Status, build_spec, open_state
from airflow_genius.core.runtime import run_key
from airflow_genius.core.spool import Spool
from airflow_genius.core.state.faults import StoreUnavailable

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

TESTS_DIR = Path(__file__).resolve().parents[2]
EXIT_STORE_UNAVAILABLE = 4


@pytest.fixture(params=["redis", "postgres"])
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    store = PrivateRedis() if request.param == "redis" else PrivatePostgres()
    store.start()
    try:
        yield store
    finally:
        store.close()


def _spec(server: Any, ledger: Path, *, seconds: float, value: int, fail: bool, try_number: int = 1) -> str:
    return build_spec(
        "genius_samples.tasks:Ledger",
        "work",
        kwargs={"ledger": str(ledger), "seconds": seconds, "value": value, "fail": fail},
        state_uri=server.uri,
        dag_id="faults",
        task_id="work",
        run_id=f"r{value}",
        try_number=try_number,
    ).to_json()


def _launch(spec: str, work_dir: Path, **env: str) -> subprocess.Popen[str]:
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_file = work_dir.parent / f"spec-{time.monotonic_ns()}.json"
    spec_file.write_text(spec)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_genius.core.cli",
            "run",
            "--spec",
            str(spec_file),
            "--work-dir",
            str(work_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "GENIUS_HEARTBEAT_SECONDS": "0.5", **env},
    )


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def _ledger(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


# When the store goes down (relative to the run) and for how long it stays down.
MOMENTS = {
    # down when `genius run` starts; back before the fault budget is spent
    "before start": dict(seconds=0.5, down=2.5),
    # down while the method runs (heartbeats fail meanwhile)
    "during the method": dict(seconds=3.0, down=1.5),
    # down before the method returns, back 4 s later: the final write waits for it
    "across the return": dict(seconds=1.5, down=5.0),
    # killed the instant the method returns: the final write is in flight
    "during the final write": dict(seconds=0.5, down=3.0),
}


def _inject(server: Any, moment: str, ledger: Path, down: float) -> None:
    if moment == "during the method":
        _wait_for(lambda: "start" in _ledger(ledger))
        time.sleep(0.3)
    elif moment == "across the return":
        _wait_for(lambda: "start" in _ledger(ledger))
        time.sleep(1.0)
    elif moment == "during the final write":
        _wait_for(lambda: Path(str(ledger) + ".returning").exists())
    if moment != "before start":
        server.kill()
    time.sleep(down)
    server.start()


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_an_outage_at_any_moment_loses_nothing(server: Any, moment: str, tmp_path: Path) -> None:
    seconds, down = MOMENTS[moment]["seconds"], MOMENTS[moment]["down"]
    tally = {"running": 0, "false_failed": 0, "false_success": 0, "lost": 0, "ran_twice": 0}
    for attempt in range(3):
        fail = attempt == 2  # two runs that succeed, one whose method raises its own error
        ledger = tmp_path / f"ledger-{attempt}"
        spec = _spec(server, ledger, seconds=seconds, value=attempt + 10, fail=fail)
        if moment == "before start":
            server.kill()
        process = _launch(spec, tmp_path / "work")
        fault = threading.Thread(target=_inject, args=(server, moment, ledger, down))
        fault.start()
        _, stderr = process.communicate(timeout=120)
        fault.join()
        with open_state(server.uri) as state:
            record = state.get_run(run_key(_spec_obj(spec)))
        assert record is not None, stderr
        tally["running"] += record.status is Status.RUNNING
        if fail:
            tally["false_success"] += record.status is Status.SUCCESS
            assert record.error is not None and record.error["type"] == "ValueError", stderr
            assert record.error["message"] == f"bad value {attempt + 10}"
            assert process.returncode == 1, stderr
        else:
            tally["false_failed"] += record.status is not Status.SUCCESS
            tally["lost"] += record.result != {"value": attempt + 10, "squared": (attempt + 10) ** 2}
            assert process.returncode == 0, stderr
        tally["ran_twice"] += _ledger(ledger).count("done") != 1
        assert record.try_number == 1 and [h.status for h in record.history][-1] is record.status
    assert tally == {"running": 0, "false_failed": 0, "false_success": 0, "lost": 0, "ran_twice": 0}


def _spec_obj(text: str) -> Any:
    from airflow_genius.core.spec import TaskSpec

    return TaskSpec.from_json(text)


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "raises"])
def test_an_outage_longer_than_the_budget_spools_the_outcome_and_the_retry_applies_it(
    server: Any, fail: bool, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    spec = _spec(server, ledger, seconds=1.0, value=7, fail=fail)
    process = _launch(spec, tmp_path / "work", GENIUS_STATE_FAULT_BUDGET="2")
    _wait_for(lambda: "start" in _ledger(ledger))
    server.kill()
    _, stderr = process.communicate(timeout=60)
    # The store failed, not the task: its own exit code and one line naming the store and the spool.
    assert process.returncode == EXIT_STORE_UNAVAILABLE, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("genius:")]
    assert len(lines) == 1 and "unavailable" in lines[0] and "spool" in lines[0], stderr
    assert "Traceback" not in stderr
    spool = Spool.in_work_dir(tmp_path / "work")
    assert [o.status for o in spool.pending()] == [Status.FAILED if fail else Status.SUCCESS]

    server.start()
    retry = _launch(_spec(server, ledger, seconds=1.0, value=7, fail=fail, try_number=2), tmp_path / "work")
    _, stderr = retry.communicate(timeout=60)
    with open_state(server.uri) as state:
        record = state.require_run(run_key(_spec_obj(spec)))
    assert spool.pending() == []
    if fail:
        # The spooled failure is recorded for try 1; try 2 runs the method again (and fails again).
        assert retry.returncode == 1, stderr
        assert [(h.status, h.try_number) for h in record.history][-3:] == [
            (Status.FAILED, 1), (Status.RUNNING, 2), (Status.FAILED, 2),
        ]  # fmt: skip
        assert _ledger(ledger).count("done") == 2
    else:
        # The spooled success completes try 1; the method does not run again.
        assert retry.returncode == 0, stderr
        assert record.status is Status.SUCCESS and record.try_number == 1
        assert record.result == {"value": 7, "squared": 49} and record.metrics["spooled"] is True
        assert _ledger(ledger).count("done") == 1


def test_apply_spool_command_completes_the_record(tmp_path: Path) -> None:
    server = PrivateRedis()
    server.start()
    try:
        ledger = tmp_path / "ledger"
        spec = _spec(server, ledger, seconds=0.5, value=3, fail=False)
        process = _launch(spec, tmp_path / "work", GENIUS_STATE_FAULT_BUDGET="1")
        _wait_for(lambda: "start" in _ledger(ledger))
        server.kill()
        process.communicate(timeout=60)
        assert process.returncode == EXIT_STORE_UNAVAILABLE
        server.start()
        applied = subprocess.run(
            [sys.executable, "-m", "airflow_genius.core.cli", "state", "apply-spool", "--work-dir",
             str(tmp_path / "work")],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(TESTS_DIR)}, timeout=60,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "faults.work@r3 try 1 SUCCESS: applied: record is SUCCESS"
        with open_state(server.uri) as state:
            assert state.require_run(run_key(_spec_obj(spec))).result == {"value": 3, "squared": 9}
    finally:
        server.close()


def test_a_frozen_server_bounds_the_run_and_the_outcome_is_kept(server: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    spec = _spec(server, ledger, seconds=0.5, value=5, fail=False)
    process = _launch(spec, tmp_path / "work", GENIUS_STATE_CALL_TIMEOUT="2", GENIUS_STATE_FAULT_BUDGET="30")
    _wait_for(lambda: "start" in _ledger(ledger))
    server.freeze()
    try:
        started = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        server.thaw()
    # Two bounded attempts of 2 s each (a timeout is retried once), not the server's 150 s freeze.
    assert process.returncode == EXIT_STORE_UNAVAILABLE, stderr
    assert took < 15, took
    assert len(Spool.in_work_dir(tmp_path / "work").pending()) == 1


def test_sigterm_while_the_store_is_opened_ends_cancelled(tmp_path: Path) -> None:
    server = PrivateRedis()
    try:
        ledger = tmp_path / "ledger"
        spec = _spec(server, ledger, seconds=5, value=1, fail=False)
        process = _launch(spec, tmp_path / "work")  # the store is not up yet: the open is retried
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        server.start()
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr
        assert process.returncode == 1, stderr
        with open_state(server.uri) as state:
            record = state.require_run(run_key(_spec_obj(spec)))
        assert record.status is Status.CANCELLED and record.history[-1].message == "received SIGTERM"
        assert _ledger(ledger) == []  # the method never started
    finally:
        server.close()


def test_a_silent_endpoint_fails_within_30s_naming_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Accepts connections, never answers: the DynamoDB client must not wait forever (default call
    # timeout, 10 s).
    with silent_endpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3 reads it from the environment
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            open_state("dynamodb://silent_table?region=us-east-1")
        took = time.monotonic() - started
    assert took <= 30, took
    message = str(caught.value)
    assert "dynamodb table 'silent_table' unavailable" in message and "\n" not in message
