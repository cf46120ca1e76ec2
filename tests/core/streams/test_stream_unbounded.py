"""Unbounded mode: one run processes successive windows until stopped; SIGTERM abandons the current
window (adopted by the next run), SIGKILL costs a replay; every input record is output exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.errors import SpecError
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.core.state import RunKey, Status, TaskScope, open_state
from airflow_genius.core.streams.crash import CRASH_ENV
from airflow_genius.core.streams.window import checkpoint_key

HERE = Path(__file__).resolve().parent
FANOUT = 2


def state_uri_for(place: StreamPlace, tmp_path: Path, unique_name: str) -> str:
    if place.backend == "redis":
        return f"{place.base}?prefix={unique_name}-state"
    return f"sqlite:///{tmp_path}/state.db"


def unbounded_spec(
    place: StreamPlace,
    state_uri: str,
    run_id: str,
    *,
    max_windows: int | None = None,
    pause: float = 0.0,
    **window: object,
) -> TaskSpec:
    return build_spec(
        "genius_stream_tasks:PassThrough",
        "process",
        kind="bolt",
        kwargs={"fanout": FANOUT, "pause": pause},
        input_uri=place.uri("in", "g"),
        output_uri=place.uri("out", flush_every=3),
        state_uri=state_uri,
        dag_id="unb",
        task_id="bolt",
        run_id=run_id,
        unbounded=True,
        max_windows=max_windows,
        **window,  # type: ignore[arg-type]
    )


def assert_exactly_once(place: StreamPlace, total: int) -> None:
    produced = Counter((m.data["src"], m.data["k"]) for m in place.open("out").read_all())
    expected = {(n, k) for n in range(total) for k in range(FANOUT)}
    assert set(produced) == expected, f"missing {sorted(expected - set(produced))[:10]}"
    duplicated = {key: count for key, count in produced.items() if count != 1}
    assert not duplicated, f"duplicates {duplicated}"
    assert place.open("in").pending_ids("g") == []


def drain(place: StreamPlace, state_uri: str, run_id: str) -> None:
    """A final unbounded run that adopts any open window and reads until the stream is empty."""
    outcome = run_spec(unbounded_spec(place, state_uri, run_id, max_windows=3, max_records=1000))
    assert outcome.ok, outcome.error


def genius_popen(spec: TaskSpec, crash_at: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(spec.to_json())
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def wait_mid_window(state_uri: str, run_id: str, at_least: int, timeout: float = 15.0) -> None:
    """Until the run committed ``at_least`` windows and has its next window open (not committed)."""
    deadline = time.monotonic() + timeout
    with open_state(state_uri) as state:
        while time.monotonic() < deadline:
            record = state.get_run(RunKey("unb", "bolt", run_id))
            if (
                record is not None
                and record.metrics.get("windows", 0) >= at_least
                and record.window is not None
                and not record.window["committed"]
            ):
                return
            time.sleep(0.01)
    pytest.fail(f"run {run_id} did not commit {at_least} windows in {timeout}s")


def open_window(state_uri: str, place: StreamPlace) -> dict | None:
    with open_state(state_uri) as state:
        checkpoint = state.get_state(
            TaskScope("default", "unb", "bolt"), checkpoint_key(f"{place.prefix}in", "g", -1)
        )
    return (checkpoint or {}).get("open")


def test_unbounded_spec_is_validated() -> None:
    ids = {"dag_id": "d", "task_id": "t", "run_id": "r"}
    stream = "redis://h:6379/0?stream=s&group=g"
    with pytest.raises(SpecError, match=r"window\.max_windows"):
        build_spec("m:C", "f", input_uri=stream, max_records=1, max_windows=2, **ids)
    with pytest.raises(SpecError, match="stream input"):
        build_spec("m:C", "f", input_uri="/data/in", max_records=1, unbounded=True, **ids)
    with pytest.raises(SpecError, match=r"window\.unbounded"):
        TaskSpec.from_dict(
            {
                **build_spec("m:C", "f", input_uri=stream, **ids).to_dict(),
                "window": {"max_records": 1, "unbounded": "yes"},
            }
        )
    spec = build_spec("m:C", "f", input_uri=stream, max_records=5, unbounded=True, **ids)
    assert spec.window is not None and spec.window.unbounded
    assert TaskSpec.from_json(spec.to_json()) == spec


def test_unbounded_run_processes_all_input_in_several_windows(
    place: StreamPlace, tmp_path: Path, unique_name: str
) -> None:
    state_uri = state_uri_for(place, tmp_path, unique_name)
    fill(place.open("in"), 10)
    outcome = run_spec(unbounded_spec(place, state_uri, "r1", max_windows=5, max_records=4))
    assert outcome.ok, outcome.error
    assert outcome.result["windows"] == 3 and outcome.result["records"] == 10
    assert outcome.result["stopped"] == "max_windows"
    assert outcome.result["last_result"] == {"sources": [8, 9], "seen": 10}  # operator state carried
    assert outcome.record.metrics["windows"] == 3
    assert_exactly_once(place, 10)
    with open_state(state_uri) as state:
        checkpoint = state.get_state(
            TaskScope("default", "unb", "bolt"), checkpoint_key(f"{place.prefix}in", "g", -1)
        )
    assert checkpoint["open"] is None
    assert checkpoint["committed"]["windows"] == 3 and checkpoint["committed"]["records"] == 10
    origins = checkpoint["committed"]["recent"]
    assert len(set(origins)) == 3  # each window has its own origin


@pytest.mark.slow
def test_sigterm_while_records_arrive_then_restart(
    place: StreamPlace, tmp_path: Path, unique_name: str
) -> None:
    state_uri = state_uri_for(place, tmp_path, unique_name)
    total = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal total
        log = place.open("in")
        while not stop.is_set() and total < 400:
            fill(log, 5, start=total)
            total += 5
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    abandoned = 0
    try:
        for run in range(3):
            spec = unbounded_spec(place, state_uri, f"r{run}", max_records=7, max_seconds=0.2, pause=0.1)
            proc = genius_popen(spec)
            wait_mid_window(state_uri, f"r{run}", 2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            with open_state(state_uri) as state:
                record = state.require_run(RunKey("unb", "bolt", f"r{run}"))
            assert record.status is Status.SUCCESS
            assert record.result["stopped"] == "received SIGTERM"
            assert record.result["windows"] >= 2
            abandoned += open_window(state_uri, place) is not None  # the next run adopts it
    finally:
        stop.set()
        producer.join()
    assert abandoned >= 1  # SIGTERM did land mid-window at least once
    drain(place, state_uri, "final")
    assert open_window(state_uri, place) is None
    assert_exactly_once(place, total)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_read", "after_open", "mid_output", "after_ack", "after_checkpoint"])
def test_sigkill_mid_window_then_restart(
    place: StreamPlace, tmp_path: Path, unique_name: str, point: str
) -> None:
    state_uri = state_uri_for(place, tmp_path, unique_name)
    fill(place.open("in"), 20)
    proc = genius_popen(unbounded_spec(place, state_uri, "r1", max_records=4), crash_at=point)
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    # killed between marking the window open and its checkpoint: the next run adopts it
    assert (open_window(state_uri, place) is not None) == (point not in ("after_read", "after_checkpoint"))
    drain(place, state_uri, "r2")
    assert_exactly_once(place, 20)
