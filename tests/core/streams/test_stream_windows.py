"""Bounded windows through the runtime: bounds recorded before processing, retries replay them exactly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.runtime import RunOutcome, run_spec
from airflow_genius.core.spec import build_spec
from airflow_genius.core.state import RunKey, StateManager, Status, TaskScope, open_state
from airflow_genius.core.streams.window import StreamWindow, checkpoint_key


@pytest.fixture
def state(tmp_path: Path) -> StateManager:
    return open_state(f"sqlite:///{tmp_path}/state.db")


def run_bolt(
    place: StreamPlace, state: StateManager, run_id: str, *, try_number: int = 1, **kw: Any
) -> RunOutcome:
    max_records = kw.pop("max_records", 4)
    max_seconds = kw.pop("max_seconds", None)
    input_params = kw.pop("input_params", {})
    spec = build_spec(
        "genius_stream_tasks:PassThrough",
        "process",
        kind="bolt",
        kwargs=kw,
        input_uri=place.uri("in", "g", **input_params),
        output_uri=place.uri("out"),
        dag_id="d",
        task_id="t",
        run_id=run_id,
        try_number=try_number,
        max_records=max_records,
        max_seconds=max_seconds,
    )
    return run_spec(spec, state=state)


def test_windows_consume_the_stream_in_order_and_checkpoint(place: StreamPlace, state: StateManager) -> None:
    fill(place.open("in"), 10)
    results = [run_bolt(place, state, f"r{i}") for i in range(4)]
    assert all(r.ok for r in results)
    assert [r.result["sources"] for r in results] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], []]
    assert results[2].result["seen"] == 10  # operator state carried across windows
    out = place.open("out").read_all()
    assert [m.data["src"] for m in out] == list(range(10))
    checkpoint = state.get_state(TaskScope("default", "d", "t"), checkpoint_key(f"{place.prefix}in", "g", -1))
    assert checkpoint["open"] is None
    assert checkpoint["committed"]["records"] == 10
    assert place.open("in").pending_ids("g") == []
    window = results[1].record.window
    assert window is not None and window["committed"] is True and window["count"] == 4
    assert results[1].record.metrics["window_records"] == 4


def test_a_window_hands_out_inputs_that_name_it(place: StreamPlace, state: StateManager) -> None:
    """The input of a window points back at it, read-only: nothing outside re-points it."""
    fill(place.open("in"), 3)
    key = RunKey("d", "t", "r1")
    state.start_run(key, try_number=1)
    window = StreamWindow(
        state, TaskScope("default", "d", "t"), key, place.open("in", "g"), group="g", consumer="c"
    )
    empty = window.empty_input()
    assert (empty.window, len(empty)) == (window, 0)
    source = window.open()
    assert source.window is window and source.window.origin == str(key) and len(source) == 3
    with pytest.raises(AttributeError):
        source.window = None  # type: ignore[misc]
    assert window.commit(source, None) == {"window_records": 3, "window_replayed": False}


def test_retry_replays_exactly_the_recorded_window(place: StreamPlace, state: StateManager) -> None:
    ids = fill(place.open("in"), 6)
    first = run_bolt(place, state, "r1", fail_on_try=1, fanout=2)
    assert first.status is Status.FAILED
    bounds = first.record.window
    assert bounds is not None and bounds["ids"] == ids[:4] and bounds["committed"] is False
    fill(place.open("in"), 3, start=6)  # new records must not leak into the replayed window
    second = run_bolt(place, state, "r1", try_number=2, fail_on_try=1, fanout=2)
    assert second.ok, second.error
    assert second.record.window is not None
    assert second.record.window["ids"] == bounds["ids"]
    assert second.result == {"sources": [0, 1, 2, 3], "seen": 4}  # operator state as before the window
    out = [m.data for m in place.open("out").read_all()]
    assert sorted((d["src"], d["k"]) for d in out) == [(s, k) for s in range(4) for k in range(2)]
    assert run_bolt(place, state, "r2").result["sources"] == [4, 5, 6, 7]


def test_a_rerun_after_commit_writes_nothing_twice(place: StreamPlace, state: StateManager) -> None:
    fill(place.open("in"), 3)
    assert run_bolt(place, state, "r1").ok
    again = run_bolt(place, state, "r1", try_number=2)  # e.g. Airflow cleared a successful task
    assert again.ok and again.result == {"sources": [0, 1, 2], "seen": 3}
    assert again.record.metrics["output_skipped"] == 3
    assert len(place.open("out").read_all()) == 3


def test_an_abandoned_window_is_adopted_by_the_next_run(place: StreamPlace, state: StateManager) -> None:
    fill(place.open("in"), 5)
    assert run_bolt(place, state, "r1", fail_on_try=1).status is Status.FAILED
    adopted = run_bolt(place, state, "r2")  # r1 is never retried
    assert adopted.ok and adopted.result["sources"] == [0, 1, 2, 3]
    assert adopted.record.window is not None and "r1" in adopted.record.window["origin"]
    assert run_bolt(place, state, "r3").result["sources"] == [4]
    assert sorted(m.data["src"] for m in place.open("out").read_all()) == [0, 1, 2, 3, 4]


def test_time_bounded_window_waits_at_most_max_seconds(place: StreamPlace, state: StateManager) -> None:
    fill(place.open("in"), 2)
    outcome = run_bolt(place, state, "r1", max_records=100, max_seconds=0.3)
    assert outcome.ok and outcome.result["sources"] == [0, 1]
    assert 0.25 <= outcome.record.metrics["duration_seconds"] < 5


def test_spout_to_stream_output_is_idempotent_per_run(place: StreamPlace, state: StateManager) -> None:
    def emit(try_number: int) -> RunOutcome:
        spec = build_spec(
            "genius_stream_tasks:Counter",
            "emit",
            kind="spout",
            kwargs={"count": 5},
            output_uri=place.uri("out"),
            dag_id="d",
            task_id="spout",
            run_id="r1",
            try_number=try_number,
        )
        return run_spec(spec, state=state)

    assert emit(1).ok and emit(2).ok  # a retry of the same run re-sends the same dedup ids
    assert [m.data["n"] for m in place.open("out").read_all()] == [0, 1, 2, 3, 4]


def test_a_late_retry_of_an_adopted_window_never_commits_twice(
    place: StreamPlace, state: StateManager
) -> None:
    fill(place.open("in"), 6)
    assert run_bolt(place, state, "r1", fail_on_try=1).status is Status.FAILED  # window [0..3] left open
    assert run_bolt(place, state, "r2").result["sources"] == [0, 1, 2, 3]  # adopted and committed
    assert run_bolt(place, state, "r3").result["sources"] == [4, 5]
    late = run_bolt(place, state, "r1", try_number=2)  # Airflow retries r1 long after
    assert late.ok and late.result["sources"] == [0, 1, 2, 3]
    assert late.record.metrics["output_written"] == 0
    checkpoint = state.get_state(TaskScope("default", "d", "t"), checkpoint_key(f"{place.prefix}in", "g", -1))
    assert checkpoint["committed"]["records"] == 6 and checkpoint["committed"]["state"] == {"seen": 6}
    assert sorted(m.data["src"] for m in place.open("out").read_all()) == list(range(6))


def test_claim_idle_takes_over_records_of_a_dead_consumer(place: StreamPlace, state: StateManager) -> None:
    log = place.open("in")
    fill(log, 3)
    log.ensure_group("g")
    assert len(log.read_new("g", "dead-worker", 2)) == 2  # delivered, never acked
    time.sleep(0.05)
    outcome = run_bolt(place, state, "r1", input_params={"claim_idle": 0.01})
    assert outcome.ok and sorted(outcome.result["sources"]) == [0, 1, 2]
    assert log.pending_ids("g") == []
