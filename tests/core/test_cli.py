"""The `genius` command, run as a real subprocess the way runners launch it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
        "fetch",
        "--kind",
        "spout",
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
        "bolt",
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
