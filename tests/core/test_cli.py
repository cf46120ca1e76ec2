"""The `genius` command, run as a real subprocess the way runners launch it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_no_airflow import BLOCK_AIRFLOW

from airflow_genius.core import Status, build_spec, open_state

TESTS_DIR = Path(__file__).resolve().parents[1]


def genius(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    full_env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture
def state_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


def spec_json(
    state_uri: str, class_path: str = "genius_samples.tasks:Adder", method: str = "add", **kw
) -> str:  # type: ignore[no-untyped-def]
    spec = build_spec(
        class_path,
        method,
        dag_id="cli",
        task_id=method,
        run_id=kw.pop("run_id", "r1"),
        state_uri=state_uri,
        **kw,
    )
    return spec.to_json()


def test_run_from_file_stdin_and_env(tmp_path: Path, state_uri: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(spec_json(state_uri, args=[1, 2], run_id="file"))
    assert genius("run", "--spec", str(path)).returncode == 0
    done = genius(
        "run", "--spec", "-", "--print-result", stdin=spec_json(state_uri, args=[3, 4], run_id="stdin")
    )
    assert done.returncode == 0 and json.loads(done.stdout) == 7
    env = {"GENIUS_TASK_SPEC": spec_json(state_uri, args=[5, 6], run_id="env")}
    assert genius("run", "--spec-env", "GENIUS_TASK_SPEC", env=env).returncode == 0
    with open_state(state_uri) as state:
        assert sorted(r.result for r in state.list_runs(dag_id="cli")) == [3, 7, 11]


def test_failing_task_exits_nonzero_with_traceback_recorded(state_uri: str) -> None:
    done = genius("run", "--spec", "-", stdin=spec_json(state_uri, "genius_samples.tasks:Exploding", "run"))
    assert done.returncode == 1
    assert "genius: task failed: ValueError: kaboom" in done.stderr
    with open_state(state_uri) as state:
        (record,) = state.list_runs(dag_id="cli")
    assert record.status is Status.FAILED
    assert "raise ValueError(message)" in record.error["traceback"]  # type: ignore[index]
    shown = genius(
        "state", "show", "--state", state_uri, "--dag-id", "cli", "--task-id", "run", "--run-id", "r1"
    )
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "FAILED"


BAD_INPUT = [
    # (how the spec is broken, words of the one-line error)
    ({"class_path": "no_such_pkg.mod:Task"}, "cannot import 'no_such_pkg'"),
    ({"class_path": "genius_samples.tasks:Missing"}, "has no 'Missing'"),
    ({"class_path": "genius_samples.tasks:NotATask", "method": "go"}, "is not a subclass"),
    ({"class_path": "genius_samples.broken_module:X"}, "raised RuntimeError: this module is broken"),
    ({"class_path": "airflow_genius.core.task:Task", "method": "go"}, "not the base class"),
    ({"method": "nope"}, "has no task method 'nope'"),
    ({"method": "log_metric", "args": ["a", 1]}, "has no task method 'log_metric'"),
    ({"args": []}, "missing a required argument: 'a'"),
    ({"args": [1], "kwargs": {"c": 3}}, "unexpected keyword argument 'c'"),
    ({"args": [1, 2, 3]}, "too many positional arguments"),
    (
        {"class_path": "genius_samples.tasks:BadInit", "method": "go"},
        "must accept the genius keyword arguments",
    ),
    (
        {
            "class_path": "genius_samples.tasks:Copier",
            "method": "escape",
            "kind": "bolt",
            "input_uri": "/tmp",
            "output_uri": "/tmp/genius-out",
            "args": [],
            "kwargs": {"filename": "../../../etc/cron.d/x"},
        },
        "escapes its root",
    ),
    (
        {
            "class_path": "genius_samples.tasks:Copier",
            "method": "escape",
            "kind": "bolt",
            "input_uri": "/tmp",
            "output_uri": "/tmp/genius-out",
            "args": [],
            "kwargs": {"filename": "/etc/passwd"},
        },
        "is absolute",
    ),
]


@pytest.mark.parametrize(("change", "words"), BAD_INPUT, ids=[w for _, w in BAD_INPUT])
def test_bad_input_gives_one_clear_line(tmp_path: Path, state_uri: str, change: dict, words: str) -> None:  # type: ignore[type-arg]
    kw = {"class_path": "genius_samples.tasks:Adder", "method": "add", "args": [1], **change}
    done = genius(
        "run", "--spec", "-", stdin=spec_json(state_uri, **kw), env={"GENIUS_WORK_DIR": str(tmp_path / "w")}
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("genius: error:")]
    assert len(errors) == 1 and words in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    with open_state(state_uri) as state:
        (record,) = state.list_runs(dag_id="cli")
    assert record.status is Status.FAILED and words in record.error["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--spec", "/does/not/exist.json"], "cannot read spec file"),
        (["run", "--spec-env", "GENIUS_UNSET_VARIABLE"], "is not set"),
        (["run", "--spec", "-"], "spec: is not valid JSON"),
        (["describe", "genius_samples.tasks:Nope"], "has no 'Nope'"),
        (["rise", "genius_samples.tasks:Adder", "add", "--kwarg", "novalue"], "expected KEY=VALUE"),
        (["state", "list", "--state", "cassandra://db"], "unknown state store scheme"),
        (["state", "list", "--state", "redis://u:topsecret@127.0.0.1:6379/0"], "embeds a password"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], words: str) -> None:
    done = genius(*args, stdin="")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and words in done.stderr, done.stderr
    assert "topsecret" not in done.stderr


def test_rise_runs_spout_then_bolt(tmp_path: Path, state_uri: str) -> None:
    quotes, counts = tmp_path / "quotes", tmp_path / "counts"
    spout = genius(
        "rise",
        "airflow_genius.examples.tasks:QuoteSpout",
        "fetch",  # no --kind: the class is a Spout
        "--output",
        str(quotes),
        "--kwarg",
        "count=12",
        "--state",
        state_uri,
        "--run-id",
        "r1",
        cwd=tmp_path,
    )
    assert spout.returncode == 0, spout.stderr
    assert json.loads(spout.stdout)["records"] == 12
    partition = next(quotes.rglob("_SUCCESS")).parent
    bolt = genius(
        "rise",
        "airflow_genius.examples.tasks:WordCount",
        "count",
        "--kind",
        "bolt",  # an explicit --kind that agrees with the class
        "--input",
        str(partition),
        "--output",
        str(counts),
        "--kwarg",
        "top=3",
        "--state",
        state_uri,
        cwd=tmp_path,
    )
    assert bolt.returncode == 0, bolt.stderr
    result = json.loads(bolt.stdout)
    assert result["records"] == 12 and len(result["top"]) == 3
    assert "output committed at" in bolt.stderr
    with open_state(state_uri) as state:
        kinds = {record.key.task_id: record.info["kind"] for record in state.list_runs(dag_id="genius_rise")}
    assert kinds == {"fetch": "spout", "count": "bolt"}


RISE_REFUSALS = [
    # (arguments after `genius rise`, words of the one-line error)
    (["airflow_genius.examples.tasks:WordCount", "count"], "is a bolt: a bolt needs --input"),
    (
        ["airflow_genius.examples.tasks:WordCount", "count", "--kind", "spout", "--input", "."],
        "--kind spout: airflow_genius.examples.tasks:WordCount is a bolt",
    ),
    (["airflow_genius.examples.tasks:QuoteSpout", "fetch", "--input", "."], "a spout takes no --input"),
    (["genius_samples.tasks:Nope", "add"], "has no 'Nope'"),
]


@pytest.mark.parametrize(("args", "words"), RISE_REFUSALS, ids=[w for _, w in RISE_REFUSALS])
def test_rise_refuses_a_kind_it_cannot_run_in_one_line(
    tmp_path: Path, state_uri: str, args: list[str], words: str
) -> None:
    done = genius("rise", *args, "--state", state_uri, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and words in done.stderr, done.stderr
    assert not (tmp_path / "state.db").exists()  # refused before anything ran


def test_rise_takes_the_kind_from_the_class(state_uri: str) -> None:
    def kind_of(*args: str) -> str:
        done = genius("rise", *args, "--state", state_uri, "--print-spec")
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["kind"])

    assert kind_of("airflow_genius.examples.tasks:QuoteSpout", "fetch") == "spout"
    assert kind_of("airflow_genius.examples.tasks:WordCount", "count", "--input", "/data") == "bolt"
    assert kind_of("genius_samples.tasks:Adder", "add", "--arg", "1") == "task"
    # overrides that agree: any class as a plain task; a plain Task class as a bolt
    assert kind_of("airflow_genius.examples.tasks:WordCount", "count", "--kind", "task") == "task"
    assert kind_of("genius_samples.tasks:Adder", "add", "--kind", "bolt", "--input", "/data") == "bolt"


def test_rise_print_spec_is_a_valid_spec(state_uri: str) -> None:
    done = genius(
        "rise",
        "genius_samples.tasks:Adder",
        "add",
        "--arg",
        "1",
        "--kwarg",
        'b={"x": 1}',
        "--state",
        state_uri,
        "--print-spec",
    )
    assert done.returncode == 0
    spec = json.loads(done.stdout)
    assert spec["task"]["args"] == [1] and spec["task"]["kwargs"] == {"b": {"x": 1}}


def test_list_and_describe() -> None:
    listed = genius("list", "airflow_genius.examples.tasks")
    assert listed.returncode == 0
    assert "airflow_genius.examples.tasks:QuoteSpout" in listed.stdout and "spout" in listed.stdout
    described = genius("describe", "airflow_genius.examples.tasks:WordCount", "--json")
    info = json.loads(described.stdout)
    assert info["kind"] == "bolt"
    assert (
        info["methods"][0]["signature"] == "count(top: 'int' = 10, min_length: 'int' = 1) -> 'dict[str, Any]'"
    )


def test_help_everywhere() -> None:
    for command in (
        [],
        ["run"],
        ["rise"],
        ["list"],
        ["describe"],
        ["state"],
        ["state", "show"],
        ["state", "list"],
        ["state", "apply-spool"],
        ["report"],
    ):
        done = genius(*command, "--help")
        assert done.returncode == 0 and "usage: genius" in done.stdout


def test_sigterm_cancels_and_records_cancelled(tmp_path: Path, state_uri: str) -> None:
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "GENIUS_TEST_READY_FILE": str(ready)},
    )
    assert process.stdin is not None
    process.stdin.write(spec_json(state_uri, "genius_samples.tasks:Exploding", "sleep", args=[60]))
    process.stdin.close()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 1
    with open_state(state_uri) as state:
        (record,) = state.list_runs(dag_id="cli")
    assert record.status is Status.CANCELLED
    assert record.history[-1].message == "received SIGTERM"


def test_list_entry_points_shows_installed_task_classes() -> None:
    listed = genius("list", "--entry-points")
    assert listed.returncode == 0, listed.stderr
    assert "airflow_genius.examples.tasks:WordCount" in listed.stdout
    assert "airflow_genius.examples.tasks:Echo" in listed.stdout


# ---------------------------------------------------------------- stores through Airflow connections
def record_a_run(state_uri: str, run_id: str, env: dict[str, str] | None = None) -> None:
    done = genius("run", "--spec", "-", stdin=spec_json(state_uri, args=[2, 3], run_id=run_id), env=env)
    assert done.returncode == 0, done.stderr


def read_through_connection(conn_id: str, conn: Mapping[str, object], tmp_path: Path) -> None:
    """`state show`, `state list` and `report` read the run ``r1`` of dag ``cli`` through ``conn_id``."""
    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}
    assert "GENIUS_STATE_PASSWORD" not in os.environ  # a password can only come from the connection
    shown = genius(
        "state",
        "show",
        "--conn-id",
        conn_id,
        "--dag-id",
        "cli",
        "--task-id",
        "add",
        "--run-id",
        "r1",
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)  # standard output is the record alone, whatever Airflow logs
    assert record["status"] == "SUCCESS" and record["result"] == 5
    listed = genius("state", "list", "--conn-id", conn_id, "--dag-id", "cli", env=env)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert "SUCCESS" in line and "cli.add@r1" in line
    report = tmp_path / "report.html"
    written = genius("report", "--conn-id", conn_id, "--dag-id", "cli", "-o", str(report), env=env)
    assert written.returncode == 0, written.stderr
    password = str(conn.get("password") or "never-empty")
    outputs = (shown.stdout + shown.stderr, listed.stdout + listed.stderr, report.read_text())
    assert all(password not in text for text in outputs)
    assert "<tr><td>r1</td><td>add</td><td>SUCCESS</td>" in report.read_text()


@pytest.mark.airflow
def test_state_and_report_read_a_sqlite_store_through_a_connection(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    record_a_run(f"sqlite:///{path}", "r1")
    read_through_connection(
        "genius_cli_sqlite", {"conn_type": "genius_sqlite", "extra": {"path": str(path)}}, tmp_path
    )


@pytest.mark.airflow
@pytest.mark.redis
def test_state_reads_a_redis_store_with_the_connections_password(
    tmp_path: Path, redis_url: str, unique_name: str
) -> None:
    """The store needs a password: the connection's reaches it, as it reaches a task, never argv/output."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    user, password = f"genius_{unique_name}", f"pw-{uuid.uuid4().hex}"
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{unique_name}:*"], commands=["+@all"]
    )
    parts = urlsplit(redis_url)
    conn = {
        "conn_type": "genius_redis", "host": parts.hostname, "port": parts.port, "login": user,
        "password": password, "schema": parts.path.strip("/") or "0", "extra": {"prefix": unique_name},
    }  # fmt: skip
    state_uri = f"redis://{user}@{parts.hostname}:{parts.port}{parts.path}?prefix={unique_name}"
    try:
        record_a_run(state_uri, "r1", env={"GENIUS_STATE_PASSWORD": password})
        read_through_connection("genius_cli_redis", conn, tmp_path)
        # control: the same store without the password is refused at once, as bad input (no retries)
        denied = genius("state", "list", "--state", state_uri)
        assert denied.returncode == 2 and "invalid username-password" in denied.stderr, denied.stderr
    finally:
        with open_state(f"{redis_url}?prefix={unique_name}") as cleanup:
            cleanup.purge()  # type: ignore[attr-defined]
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.airflow
def test_an_unknown_connection_is_one_line() -> None:
    for args, words in (
        (["state", "list", "--conn-id", "genius_cli_nowhere"], "--conn-id 'genius_cli_nowhere'"),
        (
            ["report", "--conn-id", "genius_cli_s3", "--dag-id", "d", "-o", "x.html"],
            "a genius state connection",
        ),
    ):
        done = genius(*args, env={"AIRFLOW_CONN_GENIUS_CLI_S3": json.dumps({"conn_type": "aws"})})
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and words in done.stderr, done.stderr


def test_conn_id_without_airflow_is_one_line() -> None:
    child = BLOCK_AIRFLOW + textwrap.dedent(
        """
        from airflow_genius.core.cli import main
        sys.exit(main(["state", "list", "--conn-id", "genius_redis"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "genius: error: --conn-id needs the airflow extra (pip install 'airflow-provider-genius[airflow]'); "
        "without Airflow name the store with --state URI"
    )
