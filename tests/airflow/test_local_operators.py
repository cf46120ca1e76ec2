"""Local genius operators inside real Airflow `dag.test()` runs, against SQLite, Redis and Postgres."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, Status, open_state

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
TEST_DAGS = ROOT / "tests" / "airflow_dags"


@pytest.fixture
def genius_env(airflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The Airflow env plus a private SQLite state store and data folder for one test."""
    return {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "GENIUS_EXAMPLE_DATA": str(tmp_path / "data"),
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
    }


def check_batch_pipeline(result: dict, state_uri: str, env: dict[str, str], count: int, top: int) -> None:  # type: ignore[type-arg]
    assert result["state"] == "success", result
    tis = {ti["task_id"]: ti for ti in result["tis"]}
    assert tis["fetch"]["xcom"]["records"] == count
    assert tis["count"]["xcom"]["records"] == count and len(tis["count"]["xcom"]["top"]) == top
    with open_state(state_uri, env=env) as state:
        for task_id in ("fetch", "count"):
            record = state.require_run(RunKey("genius_batch_pipeline", task_id, result["run_id"]))
            assert record.status is Status.SUCCESS
            assert record.result == tis[task_id]["xcom"]
            assert record.metrics["output_location"].startswith("file://")


def test_batch_pipeline_on_sqlite(run_python, genius_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, _ = dag_test(run_python, genius_env, EXAMPLES, "genius_batch_pipeline", {"count": 7, "top": 2})
    check_batch_pipeline(result, genius_env["AIRFLOW__GENIUS__STATE_URI"], genius_env, count=7, top=2)
    # The bolt read exactly the partition the spout committed.
    (quotes,) = (tmp_path / "data" / "quotes").rglob("_SUCCESS")
    (counts,) = (tmp_path / "data" / "counts").rglob("_SUCCESS")
    assert json.loads((counts.parent / "top_words.json").read_text())
    assert len(json.loads(quotes.read_text())["files"]) == 2  # 7 quotes, 5 per file


@pytest.mark.redis
def test_batch_pipeline_on_redis_state(run_python, genius_env: dict[str, str], redis_url: str) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{uuid.uuid4().hex[:10]}"
    host_port, db = redis_url.split("://", 1)[1].rsplit("/", 1)
    host, port = host_port.split(":")
    conn = {
        "conn_type": "genius_redis",
        "host": host,
        "port": int(port),
        "extra": {"db": int(db), "prefix": prefix},
    }
    env = {
        **genius_env,
        "AIRFLOW_CONN_GENIUS_STATE": json.dumps(conn),
        "AIRFLOW__GENIUS__STATE_CONN_ID": "genius_state",
    }
    result, _ = dag_test(run_python, env, EXAMPLES, "genius_batch_pipeline", {"count": 11, "top": 3})
    state_uri = f"{redis_url}?prefix={prefix}"
    try:
        check_batch_pipeline(result, state_uri, env, count=11, top=3)
    finally:
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


@pytest.mark.postgres
def test_batch_pipeline_on_postgres_state(run_python, genius_env: dict[str, str], postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    prefix = f"t{uuid.uuid4().hex[:10]}"
    rest = postgres_url.split("://", 1)[1]
    login, rest = rest.split("@", 1)
    host_port, database = rest.split("/", 1)
    host, port = host_port.split(":")
    conn = {
        "conn_type": "genius_postgres",
        "host": host,
        "port": int(port),
        "login": login,
        "schema": database,
        "extra": {"table_prefix": prefix},
    }
    env = {
        **genius_env,
        "AIRFLOW_CONN_GENIUS_STATE": json.dumps(conn),
        "AIRFLOW__GENIUS__STATE_CONN_ID": "genius_state",
    }
    result, _ = dag_test(run_python, env, EXAMPLES, "genius_batch_pipeline", {"count": 4, "top": 1})
    try:
        check_batch_pipeline(result, f"{postgres_url}?table_prefix={prefix}", env, count=4, top=1)
        with psycopg.connect(postgres_url) as db:
            rows = db.execute(
                f"SELECT task_id, result->>'records' FROM {prefix}_runs WHERE run_id = %s ORDER BY task_id",
                (result["run_id"],),
            ).fetchall()
        assert rows == [("count", "4"), ("fetch", "4")]
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {prefix}_runs, {prefix}_task_state")


def test_retry_appends_history_to_one_record(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, _ = dag_test(run_python, genius_env, TEST_DAGS, "genius_retry")
    assert result["state"] == "success"
    (ti,) = result["tis"]
    assert ti["try"] == 2 and ti["xcom"] == 2
    with open_state(genius_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        (record,) = state.list_runs(dag_id="genius_retry")
    assert [(h.status.value, h.try_number) for h in record.history] == [
        ("QUEUED", 1),
        ("RUNNING", 1),
        ("FAILED", 1),
        ("RUNNING", 2),
        ("SUCCESS", 2),
    ]
    assert record.error is None and record.result == 2


def test_mapped_bolt_has_one_record_per_map_index(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, _ = dag_test(run_python, genius_env, EXAMPLES, "genius_mapped_bolt")
    assert result["state"] == "success"
    mapped = sorted(
        (ti["map_index"], len(ti["xcom"]["top"])) for ti in result["tis"] if ti["task_id"] == "count"
    )
    assert mapped == [(0, 3), (1, 5), (2, 10)]
    with open_state(genius_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        records = state.list_runs(dag_id="genius_mapped_bolt", task_id="count")
    assert sorted(r.key.map_index for r in records) == [0, 1, 2]
    assert len({r.metrics["output_location"] for r in records}) == 3


def test_failing_task_fails_with_its_own_error_and_traceback(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, log = dag_test(run_python, genius_env, TEST_DAGS, "genius_failing")
    assert result["state"] == "failed"
    assert "GeniusTaskFailed: RuntimeError: the remote task broke" in log
    assert "raise RuntimeError(message)" in log  # the task's own traceback, in the task log
    with open_state(genius_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        (record,) = state.list_runs(dag_id="genius_failing")
    assert record.status is Status.FAILED and record.error["message"] == "the remote task broke"  # type: ignore[index]


def test_large_xcom_example_offloads_the_genius_result(
    run_python, genius_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    env = {
        **genius_env,
        "AIRFLOW__CORE__XCOM_BACKEND": "airflow_genius.xcom.GeniusXComBackend",
        "AIRFLOW__GENIUS__XCOM_PATH": (tmp_path / "xcom").as_uri(),
    }
    result, _ = dag_test(run_python, env, EXAMPLES, "genius_large_xcom", {"rows": 5000})
    assert result["state"] == "success"
    summary = next(ti["xcom"] for ti in result["tis"] if ti["task_id"] == "summarize")
    assert summary["rows"] == 5000 and summary["dim"] == 64
    with sqlite3.connect(Path(genius_env["AIRFLOW_HOME"]) / "airflow.db") as db:
        (row,) = db.execute(
            "SELECT CAST(value AS TEXT) FROM xcom WHERE dag_id = 'genius_large_xcom' AND task_id = 'embed' "
            "AND key = 'return_value' AND run_id = ?",
            (result["run_id"],),
        ).fetchall()
    reference = json.loads(row[0])
    assert reference["__genius_xcom__"] == 1 and len(row[0]) < 1024
    assert reference["uri"].startswith((tmp_path / "xcom").as_uri())
    assert list((tmp_path / "xcom").rglob("*.xcom"))
