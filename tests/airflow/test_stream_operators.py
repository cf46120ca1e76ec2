"""The stream example DAGs in real `dag.test()` runs: Redis Streams and the embedded SQLite log."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from airflow_genius.core.streams import open_stream_log

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"

# Two scheduled runs of one stream DAG in the child; prints what each task returned.
TWO_RUNS = textwrap.dedent(
    """
    import importlib.util, json, sys
    from datetime import datetime, timedelta, timezone
    spec = importlib.util.spec_from_file_location("streams", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, sys.argv[2])
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(2):
        run = dag.test(logical_date=start + timedelta(minutes=5 * i))
        out.append({"state": str(run.state),
                    **{ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()}})
    print("RUNS " + json.dumps(out))
    """
)


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_stream_dag_processes_each_window_exactly_once(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = request.getfixturevalue("redis_url") if backend == "redis" else f"sqlite:///{tmp_path}/streams.db"
    env = {
        **airflow_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "GENIUS_EXAMPLE_REDIS": base,
        "GENIUS_EXAMPLE_STREAM_DB": base,
        "GENIUS_EXAMPLE_STREAM_PREFIX": prefix,
        "GENIUS_EXAMPLE_WINDOW_SECONDS": "1",
    }
    done = run_python(
        TWO_RUNS, env, args=[str(EXAMPLES / "genius_stream_pipeline.py"), f"genius_stream_{backend}"]
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RUNS ")), None)
    assert line, done.stderr[-3000:]
    runs = json.loads(line.removeprefix("RUNS "))
    assert [r["state"] for r in runs] == ["success", "success"]
    assert [r["enrich"] for r in runs] == [{"window": 20, "seen": 20}, {"window": 20, "seen": 40}]
    enriched = open_stream_log(f"{base}?stream={prefix}_enriched")
    try:
        records = [m.data for m in enriched.read_all()]
        assert len(records) == 40 and all(r["words"] > 0 for r in records)
        # Every published record was enriched once: (run, n) pairs are unique and complete.
        assert len({(r["run"], r["n"]) for r in records}) == 40
    finally:
        enriched.close()
        if backend == "redis":
            import redis

            client = redis.Redis.from_url(base)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
