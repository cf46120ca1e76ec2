"""One bounded stream window through a runner: the same DAG shape and the same checks for every runner.

In a test DAG file (child processes have tests/ on PYTHONPATH)::

    with DAG(dag_id="genius_docker_stream", schedule="*/5 * * * *", catchup=False) as genius_docker_stream:
        stream_tasks(GeniusDockerOperator, **DOCKER)

In the test::

    with stream_prefix(redis_url, "docker") as prefix:
        runs = run_twice(run_python, {**env, **stream_env(redis_url, prefix)}, CASES, "genius_docker_cases",
                         "genius_docker_stream")
        check_windows(runs, state_uri=..., dag_id="genius_docker_stream", redis_url=redis_url, prefix=prefix)

A spout publishes 20 records per run to ``<prefix>_raw``; a bolt reads one window of at most 15
(``max_seconds=2``) and writes ``<prefix>_enriched``. Two runs at consecutive logical dates: the second
window starts where the first ended, so the bolt returns ``{"window": 15, "seen": 15}`` then
``{"window": 15, "seen": 30}`` and the output stream holds 30 records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOGICAL_DATES = ("2031-06-01T00:00:00+00:00", "2031-06-01T00:05:00+00:00")


def stream_tasks(operator: Any, *, bolt_args: Mapping[str, Any] | None = None, **args: Any) -> None:
    """publish → enrich with ``operator`` and its runner ``args`` (inside a ``with DAG(...)`` block)."""
    base = os.environ.get("GENIUS_TEST_STREAM_BASE", "redis://127.0.0.1:6379/15")
    prefix = os.environ.get("GENIUS_TEST_STREAM_PREFIX", "stream")
    # the window travels in the TaskSpec: a bounded stream window on the runner, exactly as in the worker
    publish = operator(
        task_id="publish",
        task_class="airflow_genius.examples.tasks:QuoteStreamSpout",
        method="publish",
        method_kwargs={"count": 20},
        output_uri=f"{base}?stream={prefix}_raw",
        **args,
    )
    enrich = operator(
        task_id="enrich",
        task_class="airflow_genius.examples.tasks:Enrich",
        method="process",
        input_uri=f"{base}?stream={prefix}_raw&group=enrich",
        output_uri=f"{base}?stream={prefix}_enriched",
        max_records=15,
        max_seconds=2,
        **{**args, **(bolt_args or {})},
    )
    publish >> enrich


def stream_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The environment that points :func:`stream_tasks` at the test's streams."""
    return {"GENIUS_TEST_STREAM_BASE": redis_url, "GENIUS_TEST_STREAM_PREFIX": prefix}


@contextmanager
def stream_prefix(redis_url: str, runner: str) -> Iterator[str]:
    """A unique stream prefix; every Redis key under it is deleted afterwards."""
    import redis

    prefix = f"{runner}_{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def run_twice(
    run_python: Any, env: dict[str, str], folder: Path, file: str, dag_id: str, *, timeout: float = 600
) -> list[dict[str, Any]]:
    """``dag.test()`` of ``dag_id`` at the two :data:`LOGICAL_DATES`; each must succeed. Returns the
    results (``state``, ``run_id``, ``tis`` as :func:`genius_dagtest.dag_test` gives them)."""
    from genius_dagtest import dag_test

    runs = []
    for logical_date in LOGICAL_DATES:
        result, output = dag_test(
            run_python, env, folder, dag_id, file=file, logical_date=logical_date, timeout=timeout
        )
        assert result["state"] == "success", output[-6000:]
        runs.append(result)
    return runs


def xcom_of(run: Mapping[str, Any], task_id: str) -> Any:
    """The return value of ``task_id`` in one :func:`run_twice` result."""
    (ti,) = [ti for ti in run["tis"] if ti["task_id"] == task_id]
    return ti["xcom"]


def check_windows(
    runs: list[dict[str, Any]], *, state_uri: str, dag_id: str, redis_url: str, prefix: str
) -> None:
    """Two consecutive windows of 15, their bounds recorded by the runtime on the runner, 30 records out."""
    from airflow_genius.core import RunKey, open_state
    from airflow_genius.core.streams import open_stream_log

    # 20 published per run, windows of at most 15: the second window starts where the first ended
    assert [xcom_of(run, "enrich") for run in runs] == [
        {"window": 15, "seen": 15},
        {"window": 15, "seen": 30},
    ]
    with open_state(state_uri) as state:
        record = state.require_run(RunKey(dag_id, "enrich", runs[0]["run_id"]))
    # the window's exact bounds were recorded by the runtime on the runner (a retry replays them)
    assert record.window is not None and record.window["count"] == 15 and record.window["committed"]
    assert record.window["max_records"] == 15
    enriched = open_stream_log(f"{redis_url}?stream={prefix}_enriched")
    try:
        assert len(enriched.read_all()) == 30
    finally:
        enriched.close()
