"""Races between real processes: a status change is never lost or doubled.

For each persistent backend, two spawned processes meet at a barrier and race the same transition,
round after round; memory (in-process only) races threads instead. Then many writers merge their own
metric key into one record concurrently: no update may be lost.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core.errors import TransitionConflict
from airflow_genius.core.state import RunKey, StateManager, Status, TaskScope, open_state

ROUNDS = 20
WORKERS = 2
THREADS_PER_WORKER = 3
UPDATES_PER_THREAD = 8
TIMEOUT = 60


def _round_key(dag: str, index: int) -> RunKey:
    return RunKey(dag, "race", f"round-{index}")


def _race_starts(state: StateManager, dag: str, barrier: Any) -> list[str]:
    """Race ``start_run`` of try 1 on every round's record; 'won' or 'lost' per round."""
    outcomes = []
    for index in range(ROUNDS):
        barrier.wait(timeout=TIMEOUT)
        try:
            state.start_run(_round_key(dag, index), try_number=1)
            outcomes.append("won")
        except TransitionConflict:
            outcomes.append("lost")
    return outcomes


def _race_updates(state: StateManager, key: RunKey, worker: int, barrier: Any) -> None:
    """Several threads of this worker each merge their own metric keys into ``key``."""
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for index in range(UPDATES_PER_THREAD):
                state.update_run(key, metrics={f"w{worker}-t{thread}-{index}": 1})
        except BaseException as exc:  # reported by the main thread of the worker
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS_PER_WORKER)]
    barrier.wait(timeout=TIMEOUT)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _worker(
    kind: str, uri: str, env: dict[str, str], arg: Any, worker: int, barrier: Any, results: Any
) -> None:
    """Entry point of a spawned process (module level, so spawn can import it)."""
    try:
        with open_state(uri, env) as state:
            if kind == "starts":
                results.put((worker, _race_starts(state, arg, barrier)))
            else:
                _race_updates(state, arg, worker, barrier)
                results.put((worker, "ok"))
    except BaseException:
        barrier.abort()  # do not leave the peer waiting
        results.put((worker, f"error: {traceback.format_exc()}"))


def _in_processes(backend: Any, kind: str, arg: Any) -> dict[int, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_worker, args=(kind, backend.uri, backend.env, arg, w, barrier, results))
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        answers = dict(results.get(timeout=TIMEOUT) for _ in processes)
    except queue.Empty:
        pytest.fail(f"a race worker did not report within {TIMEOUT}s")
    finally:
        for process in processes:
            process.join(timeout=TIMEOUT)
            if process.is_alive():
                process.kill()
    for worker, answer in answers.items():
        assert not (isinstance(answer, str) and answer.startswith("error")), f"worker {worker}: {answer}"
    return answers


def _in_threads(backend: Any, kind: str, arg: Any) -> dict[int, Any]:
    barrier = threading.Barrier(WORKERS)
    results: queue.Queue[Any] = queue.Queue()
    threads = [
        threading.Thread(target=_worker, args=(kind, backend.uri, backend.env, arg, w, barrier, results))
        for w in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    answers = dict(results.get_nowait() for _ in threads)
    for worker, answer in answers.items():
        assert not (isinstance(answer, str) and answer.startswith("error")), f"worker {worker}: {answer}"
    return answers


def _race(backend: Any, kind: str, arg: Any) -> dict[int, Any]:
    if backend.persistent:
        return _in_processes(backend, kind, arg)
    return _in_threads(backend, kind, arg)


@pytest.fixture
def shared_memory(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``open_state`` in the worker threads return the memory fixture's instance."""
    if not backend.persistent:
        monkeypatch.setattr(f"{__name__}.open_state", lambda uri, env=None: _Unclosable(backend.shared))


class _Unclosable:
    """The shared memory store, handed to each thread without being closed by it."""

    def __init__(self, state: StateManager) -> None:
        self.state = state

    def __enter__(self) -> StateManager:
        return self.state

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.usefixtures("shared_memory")
def test_exactly_one_process_wins_each_start(backend: Any) -> None:
    dag = "race_starts"
    with backend.open() as setup:
        for index in range(ROUNDS):
            # Even rounds race from QUEUED; odd rounds also race to create the record.
            if index % 2 == 0:
                setup.queue_run(_round_key(dag, index), try_number=1)
        answers = _race(backend, "starts", dag)
        for index in range(ROUNDS):
            outcomes = sorted(answers[w][index] for w in range(WORKERS))
            assert outcomes == ["lost", "won"], f"round {index}: {outcomes}"
            record = setup.require_run(_round_key(dag, index))
            assert record.status is Status.RUNNING
            statuses = [entry.status for entry in record.history]
            assert statuses == [Status.QUEUED, Status.RUNNING], f"round {index}: {statuses}"
            assert record.version == 2


@pytest.mark.usefixtures("shared_memory")
def test_concurrent_updates_are_never_lost(backend: Any) -> None:
    key = RunKey("race_updates", "task", "run")
    with backend.open() as setup:
        setup.start_run(key, try_number=1)
        _race(backend, "updates", key)
        record = setup.require_run(key)
    expected = {
        f"w{w}-t{t}-{i}": 1
        for w in range(WORKERS)
        for t in range(THREADS_PER_WORKER)
        for i in range(UPDATES_PER_THREAD)
    }
    assert record.metrics == expected
    assert record.version == 2 + len(expected)  # queue, start, then one version per update
    assert record.status is Status.RUNNING


# ---------------------------------------------------------------- first open
# SQLite's window is narrow (a few in ten rounds hit it when unprotected): give it more rounds.
OPEN_ROUNDS = {"sqlite": 20, "postgres": 5, "dynamodb": 3}
OPENERS = 4


def _open_worker(uris: list[str], worker: int, barrier: Any, results: Any) -> None:
    try:
        for index, uri in enumerate(uris):
            barrier.wait(timeout=TIMEOUT)
            with open_state(uri) as state:
                state.set_state(TaskScope("race", "open", str(index)), f"w{worker}", worker)
        results.put((worker, "ok"))
    except BaseException:
        barrier.abort()
        results.put((worker, f"error: {traceback.format_exc()}"))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("dynamodb", id="dynamodb", marks=pytest.mark.aws),
    ],
)
def test_first_open_from_several_processes_at_once(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> None:
    """Creating the schema (file + WAL, tables, DynamoDB table) is safe when processes start together."""
    rounds = range(OPEN_ROUNDS[name])
    if name == "sqlite":
        uris = [f"sqlite:///{tmp_path}/{i}/state.db" for i in rounds]
    elif name == "postgres":
        base = request.getfixturevalue("postgres_url")
        uris = [f"{base}?table_prefix={unique_name}_{i}" for i in rounds]
    else:
        request.getfixturevalue("aws_endpoint")
        uris = [f"dynamodb://{unique_name}-{i}?region=us-east-1&create=true" for i in rounds]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(OPENERS), ctx.Queue()
    processes = [ctx.Process(target=_open_worker, args=(uris, w, barrier, results)) for w in range(OPENERS)]
    for process in processes:
        process.start()
    try:
        answers = dict(results.get(timeout=TIMEOUT) for _ in processes)
        for process in processes:
            process.join(timeout=TIMEOUT)
        assert answers == {w: "ok" for w in range(OPENERS)}
        for index, uri in enumerate(uris):
            with open_state(uri) as state:
                scope = TaskScope("race", "open", str(index))
                assert state.list_state(scope) == {f"w{w}": w for w in range(OPENERS)}
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        for uri in uris:
            if name == "postgres":
                with open_state(uri) as state:
                    state.drop_tables()  # type: ignore[attr-defined]
            elif name == "dynamodb":
                with open_state(uri) as state:
                    state.delete_table()  # type: ignore[attr-defined]
