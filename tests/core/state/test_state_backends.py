"""What only one backend can show: real column types, URI forms, secrets, storage layout."""

from __future__ import annotations

import os
import random
import sqlite3
import string
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.private_stores import PrivatePostgres, free_port, wait_for_port

from airflow_genius.core.errors import BackendUnavailableError, StateError
from airflow_genius.core.state import RunKey, Status, TaskScope, open_state, state_class
from airflow_genius.core.state.faults import FaultBudget, StoreUnavailable
from airflow_genius.core.state.sqlite import SqliteStateManager

KEY = RunKey("etl", "clean", "scheduled__2024-01-01T00:00:00+00:00")
SCOPE = TaskScope("default", "etl", "spout")


# ---------------------------------------------------------------- every backend
@pytest.mark.parametrize(
    "uri",
    [
        "redis://:s3cr3t-pw@127.0.0.1:6379/15",
        "rediss://app:s3cr3t-pw@cache:6380/0?prefix=genius",
        "postgresql://app:s3cr3t-pw@127.0.0.1:5432/genius_test",
        "postgres://app:s3cr3t-pw@db/genius",
        "sqlite://app:s3cr3t-pw@host/x.db",
    ],
)
def test_uris_with_a_password_are_refused(uri: str) -> None:
    for opener in (lambda: open_state(uri), lambda: state_class(uri).from_uri(uri, {})):
        with pytest.raises(StateError) as caught:
            opener()
        assert "s3cr3t-pw" not in str(caught.value)
        assert "GENIUS_STATE_PASSWORD" in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "module", "extra"),
    [
        ("redis://127.0.0.1:6379/15", "redis", "redis"),
        ("postgresql://postgres@127.0.0.1:5432/genius_test", "psycopg", "postgres"),
        ("dynamodb://table?region=us-east-1", "boto3", "aws"),
    ],
)
def test_a_missing_library_names_the_extra(
    uri: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # failure injection: "not installed"
    with pytest.raises(BackendUnavailableError) as caught:
        open_state(uri)
    assert f"airflow-provider-genius[{extra}]" in str(caught.value)


def test_unknown_scheme() -> None:
    with pytest.raises(StateError, match="unknown state store scheme"):
        open_state("mongodb://localhost/x")
    with pytest.raises(StateError) as caught:
        state_class("MongoDB://app:s3cr3t-pw@localhost/x")
    assert str(caught.value) == (
        "unknown state store scheme 'mongodb' in 'MongoDB://app:***@localhost/x'; expected one of "
        "dynamodb, memory, postgres, postgresql, redis, rediss, sqlite"
    )
    assert state_class("SQLite:///x.db").__name__ == "SqliteStateManager"  # schemes are case-insensitive


# ---------------------------------------------------------------- sqlite
def test_sqlite_relative_and_absolute_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_state("sqlite:///deep/er/state.db") as relative:
        relative.set_state(SCOPE, "k", 1)
    assert (tmp_path / "deep" / "er" / "state.db").is_file()
    with open_state(f"sqlite:///{tmp_path}/deep/er/state.db") as absolute:  # sqlite:////abs/...
        assert absolute.get_state(SCOPE, "k") == 1
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/state.db"):
        with pytest.raises(StateError):
            open_state(bad)


def test_sqlite_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStateManager(path) as state:
        state.start_run(KEY)
        state.finish_run(KEY, Status.FAILED, try_number=1, error={"type": "ValueError"}, metrics={"rows": 3})
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(genius_runs)")}
            assert columns["status"] == "TEXT" and columns["try_number"] == "INTEGER"
            assert columns["version"] == "INTEGER"
            # One real column per field; JSON columns are queryable with SQLite's JSON functions.
            row = conn.execute(
                "SELECT status, try_number, json_extract(error, '$.type'), json_extract(metrics, '$.rows') "
                "FROM genius_runs WHERE run_id = ?",
                (KEY.run_id,),
            ).fetchone()
            assert row == ("FAILED", 1, "ValueError", 3)
            indexes = {row[1] for row in conn.execute("PRAGMA index_list(genius_runs)")}
            assert {
                "genius_runs_dag_task_updated",
                "genius_runs_status_updated",
                "genius_runs_updated",
            } <= indexes
        finally:
            conn.close()


def test_sqlite_threads_get_their_own_connection(tmp_path: Path) -> None:
    import threading

    state = SqliteStateManager(tmp_path / "state.db")
    state.start_run(KEY)
    seen: list[Any] = []

    def beat() -> None:
        seen.append(state._conn())
        seen.append(state.heartbeat(KEY))

    thread = threading.Thread(target=beat)
    thread.start()
    thread.join()
    assert seen[0] is not state._conn()
    assert seen[1] is not None and seen[1].status is Status.RUNNING
    state.close()
    # Closed managers reopen on use (close releases, it does not poison).
    assert state.require_run(KEY).version == 3
    state.close()


# ---------------------------------------------------------------- redis
@pytest.mark.redis
def test_redis_password_comes_from_the_environment(redis_url: str, unique_name: str) -> None:
    import redis

    admin = redis.Redis.from_url(redis_url)
    user, password = f"genius_{unique_name}", f"pw-{uuid.uuid4().hex}"
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{unique_name}:*"], commands=["+@all"]
    )
    base = redis_url.replace("redis://", f"redis://{user}@", 1)
    uri = f"{base}?prefix={unique_name}"
    try:
        with open_state(uri, env={"GENIUS_STATE_PASSWORD": password}) as state:
            state.set_state(SCOPE, "cursor", 5)
            state.start_run(KEY)
            assert state.get_state(SCOPE, "cursor") == 5
            assert password not in repr(state)
            assert state.client.connection_pool.connection_kwargs["username"] == user  # type: ignore[attr-defined]
        for env in ({"GENIUS_STATE_PASSWORD": "wrong-" + password}, {}):
            with pytest.raises(StateError) as caught:
                open_state(uri, env=env)
            # a refused login is final at once, not retried as an outage for the fault budget
            assert str(caught.value).startswith("cannot open redis state store"), caught.value
            assert "fault budget" not in str(caught.value)
            assert password not in str(caught.value)
            assert "wrong-" not in str(caught.value)
            assert user in str(caught.value)  # says who could not log in
    finally:
        with open_state(f"{redis_url}?prefix={unique_name}") as cleanup:
            cleanup.purge()  # type: ignore[attr-defined]
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.redis
def test_redis_layout_and_prefix_isolation(redis_url: str, unique_name: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    one, two = f"{unique_name}a", f"{unique_name}b"
    try:
        with open_state(f"{redis_url}?prefix={one}") as a, open_state(f"{redis_url}?prefix={two}") as b:
            a.start_run(KEY)
            a.set_state(SCOPE, "cursor", 1)
            assert b.get_run(KEY) is None
            assert b.get_state(SCOPE, "cursor") is None
            assert b.list_runs() == []
            keys = {k.decode() for k in raw.scan_iter(match=f"{one}:*")}
            record_key = f"{one}:run:etl:clean:scheduled__2024-01-01T00%3A00%3A00+00%3A00:-1"
            assert record_key in keys
            assert raw.hget(record_key, "v") == b"2"
            assert raw.hget(record_key, "s") == b"RUNNING"
            assert raw.zscore(f"{one}:idx:status:RUNNING", record_key) is not None
            a.finish_run(KEY, Status.SUCCESS, try_number=1)
            assert raw.zscore(f"{one}:idx:status:RUNNING", record_key) is None
            assert raw.zscore(f"{one}:idx:status:SUCCESS", record_key) is not None
            assert raw.hget(f"{one}:state:default:etl:spout", "cursor") == b"1"
            a.delete_run(KEY)
            assert not [k for k in raw.scan_iter(match=f"{one}:idx:*")]  # indexes cleaned with the record
            assert a.purge() >= 1  # type: ignore[attr-defined]
            assert not list(raw.scan_iter(match=f"{one}:*"))
    finally:
        for prefix in (one, two):
            for name in raw.scan_iter(match=f"{prefix}:*"):
                raw.delete(name)
        raw.close()


@pytest.mark.redis
def test_redis_unreachable_server_is_a_clear_error() -> None:
    # Connection refused is a fault: retried for the whole budget, then one line naming the store.
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"state store 'redis://127.0.0.1:1/0' unavailable: open failed"
    ):
        open_state("redis://127.0.0.1:1/0", env={"GENIUS_STATE_FAULT_BUDGET": "1.5"})
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------- postgres
@pytest.mark.postgres
def test_postgres_columns_are_real_and_jsonb_is_queryable(postgres_url: str, unique_name: str) -> None:
    import psycopg

    uri = f"{postgres_url}?table_prefix={unique_name}"
    with open_state(uri) as state:
        try:
            state.start_run(KEY, info={"image": "genius:1"})
            state.finish_run(
                KEY, Status.FAILED, try_number=1,
                error={"type": "ValueError", "message": "bad row", "traceback": "..."},
                metrics={"rows": 42, "nested": {"depth": 2}},
            )  # fmt: skip
            state.set_state(SCOPE, "cursor", {"offset": 7})
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                row = conn.execute(
                    f"SELECT metrics->>'rows', metrics->'nested'->>'depth', jsonb_typeof(error), "
                    f"error->>'type', jsonb_typeof(metrics), jsonb_typeof(history), history->1->>'status', "
                    f"info->>'image', result IS NULL, status, try_number, version "
                    f"FROM {unique_name}_runs WHERE run_id = %s",
                    (KEY.run_id,),
                ).fetchone()
                assert row == ("42", "2", "object", "ValueError", "object", "array", "RUNNING", "genius:1",
                               True, "FAILED", 1, 3)  # fmt: skip
                types: dict[str, str] = dict(
                    conn.execute(
                        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                        (f"{unique_name}_runs",),
                    ).fetchall()
                )
                assert types["status"] == "text"
                assert types["try_number"] == types["version"] == types["map_index"] == "integer"
                for column in ("history", "result", "error", "metrics", "window", "info"):
                    assert types[column] == "jsonb", column
                for column in ("created_at", "updated_at", "heartbeat_at"):
                    assert types[column] == "timestamp with time zone", column
                found = conn.execute(
                    f"SELECT value->>'offset', jsonb_typeof(value) FROM {unique_name}_task_state "
                    "WHERE key = 'cursor'"
                ).fetchone()
                assert found == ("7", "object")
                # Operators can filter on JSON fields directly.
                failed = conn.execute(
                    f"SELECT count(*) FROM {unique_name}_runs WHERE status = 'FAILED' "
                    f"AND error->>'type' = 'ValueError' AND (metrics->>'rows')::int > 40"
                ).fetchone()
                assert failed == (1,)
        finally:
            state.drop_tables()  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_postgres_rejects_a_bad_table_prefix(postgres_url: str) -> None:
    for prefix in ("bad-prefix", "x;drop", "1abc", "a" * 41):
        with pytest.raises(StateError, match="table_prefix"):
            open_state(f"{postgres_url}?table_prefix={prefix}")


@pytest.mark.postgres
def test_postgres_password_is_not_in_errors(postgres_url: str) -> None:
    # Nothing listens on port 1: the error must name the (redacted) store but never the password.
    uri = postgres_url.replace(":5432", ":1")
    with pytest.raises(StoreUnavailable) as caught:
        open_state(uri, env={"GENIUS_STATE_PASSWORD": "s3cr3t-pw", "GENIUS_STATE_FAULT_BUDGET": "1"})
    assert "s3cr3t-pw" not in str(caught.value)
    assert "unavailable: open failed" in str(caught.value) and "127.0.0.1:1/" in str(caught.value)


@pytest.mark.postgres
def test_postgres_reconnects_after_the_connection_drops(postgres_url: str, unique_name: str) -> None:
    import psycopg

    with open_state(f"{postgres_url}?table_prefix={unique_name}") as state:
        try:
            state.start_run(KEY)
            pid = state._conn.info.backend_pid  # type: ignore[attr-defined]
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # The call in flight fails on the dead connection and is retried on a new one (fault budget).
            assert state.require_run(KEY).status is Status.RUNNING
            assert state._conn.info.backend_pid != pid  # type: ignore[attr-defined]
        finally:
            state.drop_tables()  # type: ignore[attr-defined]


def _refused_at_once(uri: str, env: dict[str, str], *, says: str, secret: str | None = None) -> str:
    """Open ``uri`` and expect a refusal raised at once: a StateError, never the fault budget's error."""
    with pytest.raises(StateError) as caught:
        open_state(uri, env={"GENIUS_STATE_FAULT_BUDGET": "30", **env})
    message = str(caught.value)
    assert not isinstance(caught.value, StoreUnavailable) and "fault budget" not in message, message
    assert "refused open: the server refused the login" in message and says in message, message
    assert "\n" not in message and (secret is None or secret not in message)
    return message


@pytest.mark.postgres
def test_postgres_unknown_database_role_or_nologin_role_fail_at_once(
    postgres_url: str, unique_name: str
) -> None:
    import psycopg

    # With a 30 s budget a refusal taken for an outage would end in StoreUnavailable, not StateError.
    _refused_at_once(
        postgres_url.rsplit("/", 1)[0] + f"/{unique_name}",
        {},
        says=f'database "{unique_name}" does not exist',
    )
    _refused_at_once(
        postgres_url.replace("postgres@", f"{unique_name}@", 1),
        {},
        says=f'role "{unique_name}" does not exist',
    )
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {unique_name} NOLOGIN")
        try:
            _refused_at_once(
                postgres_url.replace("postgres@", f"{unique_name}@", 1), {}, says="is not permitted to log in"
            )
        finally:
            admin.execute(f"DROP ROLE {unique_name}")


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_wrong_or_missing_password_fails_at_once_even_mid_run() -> None:
    import psycopg

    server = PrivatePostgres()  # its own cluster: the rig's trusts every login on loopback
    try:
        hba = server.data / "pg_hba.conf"
        hba.write_text("host all genius_app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server.start()
        with psycopg.connect(server.uri, autocommit=True) as admin:
            admin.execute("CREATE ROLE genius_app LOGIN PASSWORD 'right-pw'")
            admin.execute("CREATE DATABASE genius OWNER genius_app")
        uri = f"postgresql://genius_app@127.0.0.1:{server.port}/genius"
        _refused_at_once(
            uri,
            {"GENIUS_STATE_PASSWORD": "wrong-pw"},
            says="password authentication failed",
            secret="wrong-pw",
        )
        _refused_at_once(uri, {}, says="no password supplied")
        with open_state(uri, env={"GENIUS_STATE_PASSWORD": "right-pw"}) as state:
            state.start_run(KEY)
            # The password is rotated and the connection dropped: the reconnect is refused, not waited on.
            with psycopg.connect(server.uri.rsplit("/", 1)[0] + "/genius", autocommit=True) as admin:
                admin.execute("ALTER ROLE genius_app PASSWORD 'rotated-pw'")
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'genius_app'"
                )
            with pytest.raises(StateError) as caught:
                state.get_run(KEY)
            assert not isinstance(caught.value, StoreUnavailable), caught.value
            assert "refused read: the server refused the login" in str(caught.value)
            assert "right-pw" not in str(caught.value)
    finally:
        server.close()


# ---------------------------------------------------------------- dynamodb
@pytest.mark.aws
def test_dynamodb_invalid_request_fails_at_once_with_a_clear_error(
    aws_endpoint: str, unique_name: str
) -> None:
    uri = f"dynamodb://{unique_name}?region=us-east-1&create=true"
    with open_state(uri, env={"GENIUS_STATE_FAULT_BUDGET": "30"}) as state:
        try:
            # DynamoDB refuses sort keys over 1024 bytes (ValidationException): no retry, one line.
            with pytest.raises(StateError) as caught:
                state.set_state(SCOPE, "k" * 2000, 1)
            assert not isinstance(caught.value, StoreUnavailable), caught.value
            assert str(caught.value).startswith(
                f"state store dynamodb table {unique_name!r} refused state set: ValidationException in "
            ), caught.value
            state.set_state(SCOPE, "cursor", 1)  # the store itself is fine
            assert state.get_state(SCOPE, "cursor") == 1
        finally:
            state.delete_table()  # type: ignore[attr-defined]


@pytest.fixture
def authorizing_moto() -> Any:
    """A moto_server of this test that checks credentials (the rig's accepts any), and an admin key."""
    port = free_port()
    # The first two requests (creating a user and its key) are let through; every later one is checked.
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, up=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@pytest.mark.aws
@pytest.mark.slow
def test_dynamodb_unknown_or_unauthorized_credentials_fail_at_once(authorizing_moto: str) -> None:
    import boto3

    from airflow_genius.core.state.dynamodb import DynamoDBStateManager

    iam = boto3.client("iam", endpoint_url=authorizing_moto, region_name="us-east-1")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    iam.close()
    credentials = {
        "AccessDenied": (key["AccessKeyId"], key["SecretAccessKey"]),  # known, but allowed nothing
        "InvalidClientTokenId": ("AKIAUNKNOWN000000000", "not-a-secret"),  # not known at all
    }
    for code, (key_id, secret) in credentials.items():
        client = boto3.client(
            "dynamodb", endpoint_url=authorizing_moto, region_name="us-east-1",
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )  # fmt: skip
        try:
            with pytest.raises(StateError) as caught:
                DynamoDBStateManager("genius-state", client=client, budget=FaultBudget(seconds=30))
            message = str(caught.value)
            assert not isinstance(caught.value, StoreUnavailable), message
            assert message.startswith(
                f"state store dynamodb table 'genius-state' refused open: {code} in "
            ), message
            assert "IAM permissions" in message and "<" not in message and secret not in message
        finally:
            client.close()


@pytest.mark.aws
def test_dynamodb_uses_the_boto3_endpoint_and_needs_its_table(aws_endpoint: str, unique_name: str) -> None:
    with pytest.raises(StateError, match="create=true"):
        open_state(f"dynamodb://{unique_name}?region=us-east-1")
    with open_state(f"dynamodb://{unique_name}?region=us-east-1&create=true") as state:
        try:
            assert state.client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]  # type: ignore[attr-defined]
            state.start_run(KEY)
            with open_state(f"dynamodb://{unique_name}?region=us-east-1") as again:  # exists now
                assert again.require_run(KEY).status is Status.RUNNING
            with open_state(f"dynamodb://{unique_name}?region=us-east-1&create=true") as twice:  # idempotent
                assert twice.get_run(KEY) is not None
        finally:
            state.delete_table()  # type: ignore[attr-defined]


@pytest.mark.aws
def test_dynamodb_large_records_are_chunked_and_cleaned(aws_endpoint: str, unique_name: str) -> None:
    from airflow_genius.core.state import dynamodb

    def items(state: Any, prefix: str) -> list[dict[str, Any]]:
        found = state.client.scan(TableName=unique_name, ConsistentRead=True)["Items"]
        return [item for item in found if item["pk"]["S"].startswith(prefix)]

    noise = "".join(random.Random(1).choices(string.ascii_letters, k=900_000))
    with open_state(f"dynamodb://{unique_name}?region=us-east-1&create=true") as state:
        try:
            state.start_run(KEY)
            state.finish_run(KEY, Status.SUCCESS, try_number=1, result=noise)
            (head,) = items(state, "run#")
            assert int(head["n"]["N"]) >= 2 and "d" not in head and "z" not in head
            assert len(items(state, "chunk#")) == int(head["n"]["N"])
            assert state.require_run(KEY).result == noise
            state.start_run(KEY, try_number=2)  # small again: inline, chunks left for reuse
            (head,) = items(state, "run#")
            assert "d" in head and "n" not in head
            assert state.require_run(KEY).result is None
            assert len(items(state, "chunk#")) >= 2  # kept: the next large version overwrites them
            assert state.delete_run(KEY)
            assert items(state, "run#") == []
            assert items(state, "chunk#") == []  # deleting the record removes what it left behind
            state.queue_run(KEY)
            assert state.require_run(KEY).status is Status.QUEUED
            huge = "".join(random.Random(2).choices(string.printable, k=5_000_000))
            state.start_run(KEY)
            with pytest.raises(StateError, match="offload"):
                state.finish_run(KEY, Status.SUCCESS, try_number=1, result=huge)
            assert state.require_run(KEY).status is Status.RUNNING
            too_big = "".join(random.Random(3).choices(string.printable, k=dynamodb.ITEM_PAYLOAD_MAX * 2))
            with pytest.raises(StateError, match="too large for DynamoDB"):
                state.set_state(SCOPE, "blob", too_big)
            compressible = "x" * 1_000_000  # large but compresses: fits in one item
            state.set_state(SCOPE, "blob", compressible)
            assert state.get_state(SCOPE, "blob") == compressible
        finally:
            state.delete_table()  # type: ignore[attr-defined]


@pytest.mark.aws
def test_dynamodb_accepts_a_configured_client(aws_endpoint: str, unique_name: str) -> None:
    import boto3

    from airflow_genius.core.state.dynamodb import DynamoDBStateManager

    # What an Airflow hook does: build the client from its connection and hand it over.
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=aws_endpoint)
    state = DynamoDBStateManager(unique_name, create=True, client=client)
    try:
        state.set_state(SCOPE, "cursor", 1)
        state.close()  # the caller's client stays usable
        assert client.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
        assert state.get_state(SCOPE, "cursor") == 1
    finally:
        state.delete_table()
        client.close()
