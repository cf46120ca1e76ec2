"""State hooks: Airflow connections (from AIRFLOW_CONN_* variables) to ready state managers."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

# The child builds each hook from its connection and prints uri, test_connection() and a round trip.
PROBE = textwrap.dedent(
    """
    import json, sys
    from airflow_genius.core.state import TaskScope
    from airflow_genius.hooks.state import state_hook
    out = {}
    for conn_id in sys.argv[1].split(","):
        hook = state_hook(conn_id)
        ok, message = hook.test_connection()
        entry = {"type": type(hook).__name__, "uri": hook.state_uri, "ok": ok, "message": message,
                 "secret_env_keys": sorted(hook.secret_env)}
        if ok:
            with hook.open_state() as state:
                scope = TaskScope("hooktest", "dag", conn_id)
                state.set_state(scope, "k", {"v": 1})
                entry["roundtrip"] = state.get_state(scope, "k")
                state.delete_state(scope, "k")
        out[conn_id] = entry
    print("PROBE " + json.dumps(out))
    """
)

SECRET = "s3cr3t-Pa55word"


def probe(run_python, env: dict[str, str], conns: dict[str, dict]) -> tuple[dict, str]:  # type: ignore[no-untyped-def, type-arg]
    env = {**env, **{f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in conns.items()}}
    done = run_python(PROBE, env, args=[",".join(conns)])
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line, done.stderr[-3000:]
    return json.loads(line.removeprefix("PROBE ")), done.stdout + done.stderr


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.aws
def test_every_backend_hook_connects_and_round_trips(  # type: ignore[no-untyped-def]
    run_python,
    airflow_env: dict[str, str],
    tmp_path: Path,
    redis_url: str,
    postgres_url: str,
    aws_endpoint: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    table = f"genius-hooktest-{uuid.uuid4().hex[:8]}"
    conns = {
        "g_sqlite": {"conn_type": "genius_sqlite", "extra": {"path": str(tmp_path / "hook.db")}},
        "g_redis": {
            "conn_type": "genius_redis",
            "host": "127.0.0.1",
            "port": 6379,
            "extra": {"db": 15, "prefix": prefix},
        },
        "g_postgres": {
            "conn_type": "genius_postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "postgres",
            "schema": "genius_test",
            "extra": {"table_prefix": prefix},
        },
        "g_dynamodb": {
            "conn_type": "genius_dynamodb",
            "extra": {"table": table, "region": "us-east-1", "create": True},
        },
    }
    results, _ = probe(run_python, airflow_env, conns)
    try:
        assert {k: v["type"] for k, v in results.items()} == {
            "g_sqlite": "GeniusSqliteStateHook",
            "g_redis": "GeniusRedisStateHook",
            "g_postgres": "GeniusPostgresStateHook",
            "g_dynamodb": "GeniusDynamoDBStateHook",
        }
        for conn_id, entry in results.items():
            assert entry["ok"], (conn_id, entry["message"])
            assert entry["roundtrip"] == {"v": 1}
        assert results["g_sqlite"]["uri"] == f"sqlite:///{tmp_path}/hook.db"
        assert results["g_redis"]["uri"] == f"redis://127.0.0.1:6379/15?prefix={prefix}"
        assert (
            results["g_postgres"]["uri"]
            == f"postgresql://postgres@127.0.0.1:5432/genius_test?table_prefix={prefix}"
        )
        assert results["g_dynamodb"]["uri"] == f"dynamodb://{table}?region=us-east-1&create=true"
    finally:
        import boto3
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {prefix}_runs, {prefix}_task_state")
        boto3.client("dynamodb").delete_table(TableName=table)


@pytest.mark.redis
def test_password_goes_to_secret_env_and_never_into_uri_or_errors(
    run_python, airflow_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    conns = {
        # The test Redis has no password: AUTH fails, and the failure must not show the secret.
        "g_auth": {
            "conn_type": "genius_redis",
            "host": "127.0.0.1",
            "port": 6379,
            "login": "app",
            "password": SECRET,
            "extra": {"db": 15},
        },
        "g_down": {
            "conn_type": "genius_postgres",
            "host": "127.0.0.1",
            "port": 1,
            "login": "app",
            "password": SECRET,
            "schema": "genius",
        },
    }
    # both fail once their fault budget is spent: a short one, not the 60 s default
    results, output = probe(run_python, {**airflow_env, "GENIUS_STATE_FAULT_BUDGET": "1"}, conns)
    for conn_id, entry in results.items():
        assert entry["ok"] is False, conn_id
        assert entry["secret_env_keys"] == ["GENIUS_STATE_PASSWORD"]
        assert SECRET not in entry["uri"] and SECRET not in entry["message"]
    assert results["g_auth"]["uri"] == "redis://app@127.0.0.1:6379/15"
    assert SECRET not in output
