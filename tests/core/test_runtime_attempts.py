"""Attempts: a platform that starts the same try again (a Slurm requeue, a node failure) runs the spec
with ``GENIUS_ATTEMPT``; that attempt takes the try over from the one it replaces, and the run record
lists every attempt. Real `genius run` processes are stopped the way Slurm stops them (SIGTERM on a
requeue, SIGKILL for a dead node), against real SQLite and Redis stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_genius.core import Status, build_spec, open_state, run_spec
from airflow_genius.core.errors import SpecError, TransitionConflict
from airflow_genius.core.runtime import ATTEMPT_ENV, run_key
from airflow_genius.core.spec import TaskSpec
from airflow_genius.core.state import StateManager

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "redis"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    redis_url: str = request.getfixturevalue("redis_url")
    return f"{redis_url}?prefix=attempts_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def state(state_uri: str) -> Iterator[StateManager]:
    with open_state(state_uri) as manager:
        yield manager


def ledger_spec(state_uri: str, ledger: Path, seconds: float = 2.0, try_number: int = 1) -> TaskSpec:
    return build_spec(
        "genius_samples.tasks:Ledger",
        "work",
        kwargs={"ledger": str(ledger), "seconds": seconds, "value": 7},
        dag_id="attempts",
        task_id="work",
        run_id="run1",
        try_number=try_number,
        state_uri=state_uri,
    )


def stopped_run(spec: TaskSpec, ledger: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """``genius run`` of ``spec`` in a process of its own, stopped with ``sig`` once the method runs."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", str(spec_file),
         "--work-dir", str(tmp_path / "work")],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (ledger.exists() and "start" in ledger.read_text()):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the method never started"
            time.sleep(0.05)
        process.send_signal(sig)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_requeued_run_takes_the_try_over_and_lists_both_attempts(
    state: StateManager, state_uri: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    spec = ledger_spec(state_uri, ledger, seconds=30.0)
    stopped_run(spec, ledger, tmp_path, signal.SIGTERM)  # what Slurm sends the batch step on a requeue
    cancelled = state.require_run(run_key(spec))
    assert cancelled.status is Status.CANCELLED and "attempts" not in cancelled.info
    # without an attempt number the same try cannot run again, as before
    with pytest.raises(TransitionConflict):
        run_spec(spec, state=state, env={}, work_dir=tmp_path / "work")

    restarted = ledger_spec(state_uri, ledger, seconds=0.2)  # the same run identity, a shorter wait
    outcome = run_spec(restarted, state=state, env={ATTEMPT_ENV: "1"}, work_dir=tmp_path / "work")
    assert outcome.ok and outcome.result == {"value": 7, "squared": 49}
    record = state.require_run(run_key(spec))
    assert (record.status, record.try_number, record.info["attempt"]) == (Status.SUCCESS, 1, 1)
    first, second = record.info["attempts"]
    assert (first["attempt"], first["status"], first["reason"]) == (0, "CANCELLED", "received SIGTERM")
    assert (second["attempt"], second["status"]) == (1, "SUCCESS")
    for entry in (first, second):
        assert entry["host"] and entry["started_at"] <= entry["ended_at"]
    assert first["ended_at"] <= second["started_at"]
    assert [(h.status, h.try_number) for h in record.history] == [
        (Status.QUEUED, 1), (Status.RUNNING, 1), (Status.CANCELLED, 1), (Status.RUNNING, 1), (Status.SUCCESS, 1),
    ]  # fmt: skip
    assert record.history[3].message == "attempt 1 takes over from attempt 0 (CANCELLED)"
    assert ledger.read_text().splitlines() == ["start", "start", "done"]  # the method ran twice


def test_an_attempt_whose_node_died_is_taken_over_from_running(
    state: StateManager, state_uri: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    spec = ledger_spec(state_uri, ledger, seconds=30.0)
    stopped_run(spec, ledger, tmp_path, signal.SIGKILL)  # no chance to write its end
    assert state.require_run(run_key(spec)).status is Status.RUNNING
    outcome = run_spec(
        ledger_spec(state_uri, ledger, seconds=0.1),
        state=state,
        env={ATTEMPT_ENV: "1"},
        work_dir=tmp_path / "w",
    )
    assert outcome.ok
    first, second = state.require_run(run_key(spec)).info["attempts"]
    assert (first["attempt"], first["status"], second["status"]) == (0, "INTERRUPTED", "SUCCESS")
    assert first["ended_at"] is not None  # its last heartbeat


def test_an_attempt_runs_once_and_a_superseded_one_cannot_write(state: StateManager, tmp_path: Path) -> None:
    spec = ledger_spec("memory://", tmp_path / "ledger", seconds=0.0)
    key = run_key(spec)
    state.start_run(key, try_number=1)
    state.finish_run(key, Status.CANCELLED, try_number=1, message="received SIGTERM")
    state.start_attempt(key, try_number=1, attempt=2)
    # the same attempt again, or an older one, does not start a second run of the try
    for attempt in (2, 1):
        with pytest.raises(TransitionConflict, match=f"attempt {attempt} of try 1 cannot start"):
            state.start_attempt(key, try_number=1, attempt=attempt)
    # an attempt that was taken over (a node that came back) cannot end the try
    with pytest.raises(TransitionConflict, match="attempt 2 took the try over"):
        state.finish_run(key, Status.CANCELLED, try_number=1, attempt=0)
    record = state.finish_run(
        key, Status.FAILED, try_number=1, attempt=2, error={"type": "E", "message": "m"}
    )
    assert [entry["status"] for entry in record.info["attempts"]] == ["CANCELLED", "FAILED"]
    # an ended FAILED try is not run again by a restart: a new Airflow try is
    with pytest.raises(TransitionConflict, match="record is FAILED"):
        state.start_attempt(key, try_number=1, attempt=3)
    # a new try starts without the attempts of the last one
    fresh = state.start_run(key, try_number=2)
    assert "attempt" not in fresh.info and "attempts" not in fresh.info
    assert state.finish_run(key, Status.SUCCESS, try_number=2, attempt=0).status is Status.SUCCESS


def test_a_restart_of_a_try_that_succeeded_does_not_run_it_again(state: StateManager, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    spec = ledger_spec("memory://", ledger, seconds=0.0)
    first = run_spec(spec, state=state, env={}, work_dir=tmp_path / "work")
    again = run_spec(spec, state=state, env={ATTEMPT_ENV: "1"}, work_dir=tmp_path / "work")
    assert first.ok and again.ok and again.record.version == first.record.version
    assert ledger.read_text().splitlines() == ["start", "done"]


def test_attempt_zero_is_a_plain_run_and_a_bad_number_is_refused(state: StateManager, tmp_path: Path) -> None:
    spec = ledger_spec("memory://", tmp_path / "ledger", seconds=0.0)
    outcome = run_spec(spec, state=state, env={ATTEMPT_ENV: "0"}, work_dir=tmp_path / "work")
    assert outcome.ok and "attempts" not in outcome.record.info and "attempt" not in outcome.record.info
    for bad in ("-1", "one", "1.5"):
        with pytest.raises(SpecError, match=ATTEMPT_ENV):
            run_spec(spec, state=state, env={ATTEMPT_ENV: bad}, work_dir=tmp_path / "work")
