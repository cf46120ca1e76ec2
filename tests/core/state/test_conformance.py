"""The one conformance suite every state backend passes, each on its real engine.

The ``state`` fixture (``conftest.py`` beside this file) yields a fresh, isolated manager for memory,
SQLite, Redis, Postgres and DynamoDB; ``persistent_backend`` covers the four that outlive a manager.
"""

from __future__ import annotations

import random
import socket
import string
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_genius.core.errors import RunNotFound, StateError, TransitionConflict
from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status, TaskScope
from airflow_genius.core.state.values import UnstorableValue

KEY = RunKey("etl", "clean", "manual__2024-01-01T00:00:00+00:00")
SCOPE = TaskScope("default", "etl", "spout")


def _statuses(record: RunRecord) -> list[str]:
    return [entry.status.value for entry in record.history]


def _same(a: RunRecord | None, b: RunRecord | None) -> None:
    assert a is not None and b is not None
    assert a.to_dict() == b.to_dict()


# ---------------------------------------------------------------- lifecycle
def test_queue_start_finish(state: StateManager) -> None:
    before = datetime.now(timezone.utc)
    queued = state.queue_run(KEY, try_number=1, info={"task": "pkg.mod:Clean"})
    assert queued.status is Status.QUEUED
    assert queued.version == 1
    assert queued.info == {"task": "pkg.mod:Clean"}
    _same(state.get_run(KEY), queued)

    started = state.start_run(KEY, try_number=1, info={"pod": "p-1"})
    assert started.status is Status.RUNNING
    assert started.version == 2
    assert started.heartbeat_at is not None
    assert started.info == {"task": "pkg.mod:Clean", "pod": "p-1"}

    finished = state.finish_run(
        KEY, Status.SUCCESS, try_number=1, result={"rows": 3}, metrics={"seconds": 1.5}, message="done"
    )
    assert finished.status is Status.SUCCESS
    assert finished.result == {"rows": 3}
    assert finished.metrics == {"seconds": 1.5}
    assert finished.version == 3

    stored = state.require_run(KEY)
    _same(stored, finished)
    assert _statuses(stored) == ["QUEUED", "RUNNING", "SUCCESS"]
    after = datetime.now(timezone.utc)
    for entry in stored.history:
        assert entry.at.tzinfo is not None
        assert before <= entry.at <= after
        assert entry.try_number == 1
        assert entry.host == socket.gethostname()
    assert [e.at for e in stored.history] == sorted(e.at for e in stored.history)
    assert stored.history[-1].message == "done"
    assert stored.created_at == queued.created_at
    assert stored.updated_at == stored.history[-1].at
    assert stored.duration_seconds is not None and stored.duration_seconds >= 0


def test_queue_same_try_twice_is_a_no_op(state: StateManager) -> None:
    first = state.queue_run(KEY, try_number=1)
    again = state.queue_run(KEY, try_number=1)
    assert again.version == first.version == 1
    assert _statuses(state.require_run(KEY)) == ["QUEUED"]


def test_start_creates_a_missing_record(state: StateManager) -> None:
    started = state.start_run(KEY, try_number=1)
    assert started.status is Status.RUNNING
    assert _statuses(started) == ["QUEUED", "RUNNING"]
    _same(state.get_run(KEY), started)


def test_failed_then_cancelled_paths(state: StateManager) -> None:
    a, b = RunKey("d", "t", "a"), RunKey("d", "t", "b")
    state.queue_run(a)
    failed = state.finish_run(a, Status.FAILED, try_number=1, error={"type": "LaunchError", "message": "x"})
    assert _statuses(failed) == ["QUEUED", "FAILED"]  # a try may fail before it ever runs
    state.start_run(b)
    cancelled = state.finish_run(b, Status.CANCELLED, try_number=1, message="stopped by user")
    assert cancelled.status is Status.CANCELLED
    assert cancelled.history[-1].message == "stopped by user"


def test_retry_appends_to_the_same_record(state: StateManager) -> None:
    state.start_run(KEY, try_number=1)
    error = {"type": "ValueError", "message": "bad row", "traceback": "Traceback...\n  line 1\n"}
    state.finish_run(
        KEY, Status.FAILED, try_number=1, error=error, result={"partial": True}, metrics={"a": 1}
    )

    requeued = state.queue_run(KEY, try_number=2)
    assert requeued.status is Status.QUEUED
    assert requeued.try_number == 2
    assert requeued.result is None and requeued.error is None and requeued.metrics == {}

    retried = state.start_run(KEY, try_number=2)
    assert retried.status is Status.RUNNING
    assert retried.try_number == 2
    assert retried.result is None and retried.error is None

    done = state.finish_run(KEY, Status.SUCCESS, try_number=2, result=[1, 2])
    assert _statuses(done) == ["QUEUED", "RUNNING", "FAILED", "QUEUED", "RUNNING", "SUCCESS"]
    assert [e.try_number for e in done.history] == [1, 1, 1, 2, 2, 2]
    assert done.created_at == state.require_run(KEY).created_at
    _same(state.get_run(KEY), done)
    assert len(state.list_runs(dag_id=KEY.dag_id)) == 1  # one record for all tries


def test_a_new_try_may_start_straight_from_running(state: StateManager) -> None:
    # The previous try's process died without finishing: the next try takes over.
    state.start_run(KEY, try_number=1)
    taken = state.start_run(KEY, try_number=2)
    assert (taken.status, taken.try_number) == (Status.RUNNING, 2)


@pytest.mark.parametrize(
    "scenario",
    [
        "success_to_running_same_try",
        "finish_twice",
        "success_from_queued",
        "older_try_starts",
        "older_try_finishes",
        "older_try_queues",
        "requeue_running_try",
        "start_running_try_again",
    ],
)
def test_forbidden_transitions_raise_and_change_nothing(state: StateManager, scenario: str) -> None:
    if scenario == "success_to_running_same_try":
        state.start_run(KEY, try_number=1)
        state.finish_run(KEY, Status.SUCCESS, try_number=1)
        attempt: Any = lambda: state.start_run(KEY, try_number=1)  # noqa: E731
    elif scenario == "finish_twice":
        state.start_run(KEY, try_number=1)
        state.finish_run(KEY, Status.FAILED, try_number=1)
        attempt = lambda: state.finish_run(KEY, Status.SUCCESS, try_number=1)  # noqa: E731
    elif scenario == "success_from_queued":
        state.queue_run(KEY, try_number=1)
        attempt = lambda: state.finish_run(KEY, Status.SUCCESS, try_number=1)  # noqa: E731
    elif scenario == "older_try_starts":
        state.start_run(KEY, try_number=2)
        attempt = lambda: state.start_run(KEY, try_number=1)  # noqa: E731
    elif scenario == "older_try_finishes":
        state.start_run(KEY, try_number=2)
        attempt = lambda: state.finish_run(KEY, Status.SUCCESS, try_number=1)  # noqa: E731
    elif scenario == "older_try_queues":
        state.start_run(KEY, try_number=3)
        attempt = lambda: state.queue_run(KEY, try_number=2)  # noqa: E731
    elif scenario == "requeue_running_try":
        state.start_run(KEY, try_number=1)
        attempt = lambda: state.queue_run(KEY, try_number=1)  # noqa: E731
    else:
        state.start_run(KEY, try_number=1)
        attempt = lambda: state.start_run(KEY, try_number=1)  # noqa: E731
    before = state.require_run(KEY)
    with pytest.raises(TransitionConflict):
        attempt()
    _same(state.get_run(KEY), before)


def test_finish_needs_a_terminal_status(state: StateManager) -> None:
    state.start_run(KEY)
    with pytest.raises(StateError):
        state.finish_run(KEY, Status.RUNNING, try_number=1)


# ---------------------------------------------------------------- heartbeat and updates
def test_heartbeat(state: StateManager) -> None:
    started = state.start_run(KEY, try_number=1)
    beat = state.heartbeat(KEY, try_number=1)
    assert beat is not None
    assert beat.status is Status.RUNNING
    assert beat.version == started.version + 1
    assert started.heartbeat_at is not None and beat.heartbeat_at is not None
    assert beat.heartbeat_at > started.heartbeat_at
    assert _statuses(beat) == _statuses(started)  # a heartbeat is not a transition
    _same(state.get_run(KEY), beat)
    assert state.heartbeat(KEY) is not None  # any try
    assert state.heartbeat(KEY, try_number=2) is None  # not this try
    state.finish_run(KEY, Status.SUCCESS, try_number=1)
    assert state.heartbeat(KEY, try_number=1) is None  # no longer running
    assert state.require_run(KEY).status is Status.SUCCESS


def test_update_run_merges_metrics_window_and_info(state: StateManager) -> None:
    state.start_run(KEY, info={"image": "genius:1"})
    state.update_run(KEY, metrics={"rows": 10, "nested": {"a": 1}})
    state.update_run(KEY, metrics={"bytes": 2048}, window={"start": 0, "end": 100}, info={"pod": "p"})
    updated = state.update_run(KEY, metrics={"rows": 20})
    assert updated.status is Status.RUNNING
    assert updated.metrics == {"rows": 20, "nested": {"a": 1}, "bytes": 2048}
    assert updated.window == {"start": 0, "end": 100}  # kept when not given
    assert updated.info == {"image": "genius:1", "pod": "p"}
    _same(state.get_run(KEY), updated)
    replaced = state.update_run(KEY, window={"start": 100, "end": 200, "offsets": {"0": 5}})
    assert replaced.window == {"start": 100, "end": 200, "offsets": {"0": 5}}
    finished = state.finish_run(KEY, Status.SUCCESS, try_number=1, metrics={"seconds": 2})
    assert finished.metrics == {"rows": 20, "nested": {"a": 1}, "bytes": 2048, "seconds": 2}
    assert finished.window == replaced.window


# ---------------------------------------------------------------- values
NESTED: dict[str, Any] = {
    "text": "naïve café — 日本語 — emoji 🚀 — quotes \" ' \\ — newline\n tab\t",
    "ints": [0, -1, 2**53, 10**30],
    # Postgres JSONB keeps numbers as decimals: 1e300 would come back as the integer 10**300. Floats
    # below 1e16 (and all fractions, however small) round-trip exactly everywhere.
    "floats": [0.1, 1 / 3, -2.5e-300, 123456789.125, 1e15],
    "bools": [True, False, None],
    "empty": {"list": [], "dict": {}, "str": ""},
    "deep": {"a": {"b": {"c": {"d": [1, {"e": ["f", {"g": None}]}]}}}},
    "control": "\u0001\u001f",
    "keys with spaces": {"ключ": "значение", "": "empty key"},
}


def test_json_round_trip(state: StateManager) -> None:
    state.start_run(KEY)
    error = {
        "type": "airflow_genius.errors.Boom",
        "message": "failed on «row 3»",
        "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\nBoom: ü\n',
        "details": NESTED,
    }
    state.update_run(KEY, window={"bounds": NESTED["deep"]}, info={"labels": NESTED["keys with spaces"]})
    finished = state.finish_run(
        KEY, Status.FAILED, try_number=1, error=error, metrics={"per_partition": NESTED}
    )
    stored = state.require_run(KEY)
    assert stored.error == error
    assert stored.metrics == {"per_partition": NESTED}
    assert stored.window == {"bounds": NESTED["deep"]}
    assert stored.info == {"labels": NESTED["keys with spaces"]}
    _same(stored, finished)

    other = RunKey("etl", "clean", "other")
    state.start_run(other)
    for value in (NESTED, [NESTED, NESTED], "just a string", 42, 3.5, True, None):
        state.start_run(other, try_number=state.require_run(other).try_number + 1)
        state.finish_run(other, Status.SUCCESS, try_number=state.require_run(other).try_number, result=value)
        assert state.require_run(other).result == value


def _big_rows() -> list[dict[str, Any]]:
    # ~1 MB of realistic, repetitive JSON (what a bolt returns).
    return [{"id": i, "name": f"row-{i}", "score": i * 0.5, "tags": ["a", "b", "ü"]} for i in range(14_000)]


def _big_random() -> str:
    # ~1 MB that hardly compresses.
    return "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=1_000_000))


@pytest.mark.parametrize("kind", ["rows", "random"])
def test_large_values(state: StateManager, kind: str) -> None:
    value: Any = _big_rows() if kind == "rows" else {"blob": _big_random()}
    state.start_run(KEY)
    state.update_run(KEY, metrics={"histogram": list(range(20_000))})
    finished = state.finish_run(KEY, Status.SUCCESS, try_number=1, result=value)
    assert finished.result == value
    stored = state.require_run(KEY)
    assert stored.result == value
    assert stored.metrics == {"histogram": list(range(20_000))}
    assert [r.key for r in state.list_runs(dag_id=KEY.dag_id)] == [KEY]
    # The next try starts clean, and a big record shrinks back to a small one.
    state.start_run(KEY, try_number=2)
    assert state.require_run(KEY).result is None
    state.finish_run(KEY, Status.SUCCESS, try_number=2, result={"small": True})
    assert state.require_run(KEY).result == {"small": True}
    assert state.delete_run(KEY)
    assert state.get_run(KEY) is None


_DEEP: list = []
for _ in range(200):
    _DEEP = [_DEEP]

UNSTORABLE = {
    "set": ({1, 2}, "result: a set is not JSON"),
    "nan": (
        {"loss": float("nan")},
        "result['loss']: expected a finite number (JSON has no NaN or Infinity), got nan",
    ),
    "inf": ([1.0, float("inf")], "result[1]: expected a finite number"),
    "-inf": (float("-inf"), "result: expected a finite number (JSON has no NaN or Infinity), got -inf"),
    "nul": ({"text": "a\x00b"}, "result['text']: contains a NUL character"),
    "surrogate": ("\ud800", "result: contains a lone surrogate, which is not text"),
    "surrogate key": ({"\udc80": 1}, "result: a key contains a lone surrogate"),
    "int key": ({1: "a"}, "result: a key is a int, not text, got 1"),
    "deep": (_DEEP, "nested deeper than 64 levels"),
}


@pytest.mark.parametrize("case", list(UNSTORABLE), ids=list(UNSTORABLE))
def test_unstorable_result_is_refused_the_same_way_and_record_unchanged(
    state: StateManager, case: str
) -> None:
    value, message = UNSTORABLE[case]
    state.start_run(KEY)
    before = state.require_run(KEY)
    with pytest.raises(UnstorableValue) as refused:
        state.finish_run(KEY, Status.SUCCESS, try_number=1, result=value)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    _same(state.get_run(KEY), before)


def test_error_text_is_always_recorded_whatever_it_holds(state: StateManager) -> None:
    state.start_run(KEY)
    error = {"type": "ValueError", "message": "bad\x00value \ud800 end", "traceback": "line\x00\udcff"}
    stored = state.finish_run(KEY, Status.FAILED, try_number=1, error=error)
    assert stored.status is Status.FAILED
    assert state.require_run(KEY).error == {
        "type": "ValueError",
        "message": "bad\\x00value \\ud800 end",
        "traceback": "line\\x00\\udcff",
    }


# ---------------------------------------------------------------- listing and deleting
def test_list_runs_filters_order_and_limit(state: StateManager) -> None:
    keys = {
        "a1": RunKey("dag_a", "t1", "r1"),
        "a2": RunKey("dag_a", "t1", "r2"),
        "a3": RunKey("dag_a", "t2", "r1"),
        "b1": RunKey("dag_b", "t1", "r1"),
        "b2": RunKey("dag_b", "t2", "r1", map_index=0),
    }
    state.queue_run(keys["a1"])
    state.start_run(keys["a2"])
    state.start_run(keys["a3"])
    state.finish_run(keys["a3"], Status.SUCCESS, try_number=1)
    state.start_run(keys["b1"])
    state.finish_run(keys["b1"], Status.FAILED, try_number=1)
    state.start_run(keys["b2"])
    state.update_run(keys["a1"], metrics={"touched": 1})  # now the most recently updated

    everything = state.list_runs()
    assert {r.key for r in everything} == set(keys.values())
    assert everything[0].key == keys["a1"]
    assert [r.updated_at for r in everything] == sorted((r.updated_at for r in everything), reverse=True)
    for record in everything:
        _same(record, state.get_run(record.key))

    def listed(**filters: Any) -> list[RunKey]:
        return [r.key for r in state.list_runs(**filters)]

    assert listed(dag_id="dag_a") == [keys["a1"], keys["a3"], keys["a2"]]
    assert listed(dag_id="dag_a", task_id="t1") == [keys["a1"], keys["a2"]]
    assert set(listed(task_id="t1")) == {keys["a1"], keys["a2"], keys["b1"]}
    assert set(listed(status=Status.RUNNING)) == {keys["a2"], keys["b2"]}
    assert listed(dag_id="dag_b", status=Status.FAILED) == [keys["b1"]]
    assert listed(dag_id="dag_a", task_id="t2", status=Status.SUCCESS) == [keys["a3"]]
    assert listed(status=Status.QUEUED) == [keys["a1"]]
    assert listed(status=Status.CANCELLED) == []
    assert listed(dag_id="nope") == []
    assert listed(dag_id="dag") == []  # a prefix of a DAG id is not that DAG
    assert listed(dag_id="dag_a", task_id="t") == []
    assert len(listed(limit=2)) == 2
    assert listed(limit=2) == [r.key for r in everything[:2]]
    assert listed(dag_id="dag_a", limit=1) == [keys["a1"]]
    assert listed(limit=0) == []

    # A status change moves a record between status filters.
    state.finish_run(keys["a2"], Status.SUCCESS, try_number=1)
    assert set(listed(status=Status.RUNNING)) == {keys["b2"]}
    assert listed(status=Status.SUCCESS)[0] == keys["a2"]


def test_list_runs_pages_through_many_records(state: StateManager) -> None:
    for i in range(120):
        state.queue_run(RunKey("many", "t", f"r{i:03d}"))
    for i in range(0, 120, 10):
        state.start_run(RunKey("many", "t", f"r{i:03d}"))
    listed = state.list_runs(dag_id="many", status=Status.RUNNING, limit=100)
    assert len(listed) == 12
    assert listed[0].key.run_id == "r110"
    assert len(state.list_runs(dag_id="many", limit=110)) == 110
    assert len(state.list_runs(limit=1000)) == 120


def test_delete_run(state: StateManager) -> None:
    state.start_run(KEY)
    other = RunKey(KEY.dag_id, KEY.task_id, "other")
    state.queue_run(other)
    assert state.delete_run(KEY) is True
    assert state.get_run(KEY) is None
    assert state.delete_run(KEY) is False
    assert [r.key for r in state.list_runs()] == [other]
    assert [r.key for r in state.list_runs(status=Status.RUNNING)] == []
    recreated = state.queue_run(KEY)  # a deleted run starts over
    assert (recreated.version, _statuses(recreated)) == (1, ["QUEUED"])


# ---------------------------------------------------------------- isolation
AWKWARD_RUN_IDS = [
    "scheduled__2024-01-01T00:00:00+00:00",
    "manual__2024-01-01T00:00:00.123456+00:00",
    "a:b",
    "a%3Ab",  # what a naive escaping of "a:b" would produce
    "a#b",
    "a%23b",
    "a/b",
    "a+b",
    "a b",
    "a%b",
    "%",
    "ü:#/+",
    "r-1",
]


def test_runs_never_share_records(state: StateManager) -> None:
    keys = [
        RunKey("iso", "task", run_id, map_index) for run_id in AWKWARD_RUN_IDS for map_index in (-1, 0, 1)
    ]
    # Ids that collide if parts were joined naively with ':' or '#'.
    keys += [
        RunKey("x:y", "z", "r"),
        RunKey("x", "y:z", "r"),
        RunKey("x#y", "z", "r"),
        RunKey("x", "y#z", "r"),
        RunKey("x", "y", "z:r"),
        RunKey("x", "y", "z#r"),
        RunKey("x", "y", "r:-1"),
        RunKey("x", "y", "r#-1"),
        RunKey("x", "y", "r", 0),
    ]
    for index, key in enumerate(keys):
        state.start_run(key)
        state.finish_run(key, Status.SUCCESS, try_number=1, result={"index": index})
    for index, key in enumerate(keys):
        record = state.require_run(key)
        assert record.key == key
        assert record.result == {"index": index}
        assert _statuses(record) == ["QUEUED", "RUNNING", "SUCCESS"]
    assert len(state.list_runs(dag_id="iso", limit=1000)) == len(AWKWARD_RUN_IDS) * 3
    assert {r.key for r in state.list_runs(dag_id="x:y")} == {RunKey("x:y", "z", "r")}
    assert {r.key for r in state.list_runs(dag_id="x", task_id="y")} == {
        RunKey("x", "y", "z:r"), RunKey("x", "y", "z#r"), RunKey("x", "y", "r:-1"), RunKey("x", "y", "r#-1"),
        RunKey("x", "y", "r", 0),
    }  # fmt: skip
    # Changing one leaves its neighbours alone.
    state.start_run(keys[0], try_number=2)
    assert state.require_run(keys[1]).try_number == 1
    assert state.delete_run(RunKey("x", "y", "r:-1"))
    assert state.require_run(RunKey("x", "y", "r#-1")).result is not None
    assert state.require_run(RunKey("x", "y", "r", 0)).result is not None


# ---------------------------------------------------------------- task state
def test_task_state_get_set_delete_list(state: StateManager) -> None:
    assert state.get_state(SCOPE, "cursor") is None
    assert state.get_state(SCOPE, "cursor", default=-1) == -1
    assert state.list_state(SCOPE) == {}
    state.set_state(SCOPE, "cursor", 10)
    state.set_state(SCOPE, "checkpoint", {"offsets": {"0": 5, "1": 7}, "operator": NESTED})
    state.set_state(SCOPE, "nothing", None)
    state.set_state(SCOPE, "key:with#odd/chars ü", [1, "two"])
    assert state.get_state(SCOPE, "cursor") == 10
    assert state.get_state(SCOPE, "nothing", default="absent") is None  # stored null is not absent
    state.set_state(SCOPE, "cursor", 11)
    assert state.get_state(SCOPE, "cursor") == 11
    assert state.list_state(SCOPE) == {
        "cursor": 11,
        "checkpoint": {"offsets": {"0": 5, "1": 7}, "operator": NESTED},
        "nothing": None,
        "key:with#odd/chars ü": [1, "two"],
    }
    assert state.delete_state(SCOPE, "cursor") is True
    assert state.delete_state(SCOPE, "cursor") is False
    assert state.get_state(SCOPE, "cursor", default="gone") == "gone"
    with pytest.raises(StateError):
        state.set_state(SCOPE, "", 1)


def test_task_state_scopes_are_isolated(state: StateManager) -> None:
    scopes = [
        TaskScope("default", "etl", "spout"),
        TaskScope("other", "etl", "spout"),
        TaskScope("default", "etl2", "spout"),
        TaskScope("default", "etl", "spout2"),
        TaskScope("a:b", "c", "d"),
        TaskScope("a", "b:c", "d"),
        TaskScope("a#b", "c", "d"),
        TaskScope("a", "b#c", "d"),
    ]
    for index, scope in enumerate(scopes):
        state.set_state(scope, "cursor", index)
    for index, scope in enumerate(scopes):
        assert state.get_state(scope, "cursor") == index
        assert state.list_state(scope) == {"cursor": index}
    state.delete_state(scopes[4], "cursor")
    assert state.get_state(scopes[5], "cursor") == 5
    # Task state and run records live apart.
    state.start_run(RunKey("etl", "spout", "cursor"))
    assert state.list_state(scopes[0]) == {"cursor": 0}


def test_compare_and_set(state: StateManager) -> None:
    assert state.compare_and_set_state(SCOPE, "ckpt", None, {"offset": 1}) is True  # absent -> value
    assert state.compare_and_set_state(SCOPE, "ckpt", None, {"offset": 9}) is False  # no longer absent
    assert state.compare_and_set_state(SCOPE, "ckpt", {"offset": 0}, {"offset": 9}) is False  # wrong expected
    assert state.get_state(SCOPE, "ckpt") == {"offset": 1}
    assert state.compare_and_set_state(SCOPE, "ckpt", {"offset": 1}, {"offset": 2, "extra": [1]}) is True
    # Equal values match however they are spelled (key order).
    assert state.compare_and_set_state(SCOPE, "ckpt", {"extra": [1], "offset": 2}, {"offset": 3}) is True
    assert state.get_state(SCOPE, "ckpt") == {"offset": 3}
    # A stored null counts as absent for expected=None.
    state.set_state(SCOPE, "nullable", None)
    assert state.compare_and_set_state(SCOPE, "nullable", None, "set") is True
    assert state.get_state(SCOPE, "nullable") == "set"
    # Scopes are separate here too.
    other = TaskScope("default", "etl", "other")
    assert state.compare_and_set_state(other, "ckpt", None, 1) is True
    assert state.get_state(SCOPE, "ckpt") == {"offset": 3}
    assert state.delete_state(SCOPE, "ckpt")
    assert state.compare_and_set_state(SCOPE, "ckpt", None, 0) is True


# ---------------------------------------------------------------- errors
def test_run_not_found(state: StateManager) -> None:
    missing = RunKey("etl", "clean", "missing")
    assert state.get_run(missing) is None
    with pytest.raises(RunNotFound) as caught:
        state.require_run(missing)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, StateError)
    assert "missing" in str(caught.value)
    with pytest.raises(RunNotFound):
        state.transition(missing, Status.RUNNING, try_number=1)
    with pytest.raises(RunNotFound):
        state.finish_run(missing, Status.SUCCESS, try_number=1)
    with pytest.raises(RunNotFound):
        state.update_run(missing, metrics={"a": 1})
    with pytest.raises(RunNotFound):
        state.heartbeat(missing)
    assert state.delete_run(missing) is False
    assert state.get_run(missing) is None  # nothing was created on the way


# ---------------------------------------------------------------- persistence
def test_data_survives_a_reopen(persistent_backend: Any) -> None:
    with persistent_backend.open() as first:
        first.start_run(KEY, try_number=1, info={"who": "first"})
        first.set_state(SCOPE, "cursor", {"offset": 42})
    with persistent_backend.open() as second:
        record = second.require_run(KEY)
        assert (record.status, record.info) == (Status.RUNNING, {"who": "first"})
        assert second.get_state(SCOPE, "cursor") == {"offset": 42}
        second.finish_run(KEY, Status.SUCCESS, try_number=1, result={"by": "second"})
        # Two managers open at once see each other's writes.
        with persistent_backend.open() as third:
            assert third.require_run(KEY).result == {"by": "second"}
            third.set_state(SCOPE, "cursor", {"offset": 43})
        assert second.get_state(SCOPE, "cursor") == {"offset": 43}
        assert [r.key for r in second.list_runs(status=Status.SUCCESS)] == [KEY]


def test_close_is_idempotent(backend: Any) -> None:
    manager = backend.open()
    manager.close()
    manager.close()
