"""Hostile TaskSpecs: each is refused with one line naming the field, before anything is stored.

Covers the JSON size and depth limits, lone surrogates, non-finite numbers, window bounds, run numbers
and stream URI parameters (in process and through ``genius run --spec``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core.errors import SpecError
from airflow_genius.core.spec import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, TaskSpec, build_spec
from airflow_genius.core.state import open_state

TESTS_DIR = Path(__file__).resolve().parents[1]


def good_spec(state_uri: str = "memory://", **run: Any) -> dict[str, Any]:
    """A valid spec as a JSON-ready dict (tests spoil one field at a time)."""
    spec = build_spec(
        "genius_samples.tasks:Adder",
        "add",
        args=[1, 2],
        dag_id="bad",
        task_id="add",
        run_id=run.pop("run_id", "r1"),
        state_uri=state_uri,
        **run,
    )
    return spec.to_dict()


def spoiled(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default: a good spec) with the dotted ``path`` set to ``value``."""
    data = json.loads(json.dumps(base or good_spec()))
    *parents, last = path.split(".")
    target = data
    for name in parents:
        if target.get(name) is None:
            target[name] = {}
        target = target[name]
    target[last] = value
    return data


def refused(text: str | bytes) -> str:
    """The one-line message ``TaskSpec.from_json`` refuses ``text`` with."""
    with pytest.raises(SpecError) as caught:
        TaskSpec.from_json(text)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# ---------------------------------------------------------------------- JSON size, depth, encoding
def test_a_spec_larger_than_the_limit_is_refused_before_decoding() -> None:
    text = json.dumps(spoiled("task.args", ["x" * (MAX_SPEC_BYTES + 10)]))
    started = time.monotonic()
    message = refused(text)
    assert message.startswith("spec: is ") and f"at most {MAX_SPEC_BYTES:,}" in message
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param('{"task": {"args": [' + "[" * 200_000 + "]" * 200_000 + "]}}", "spec", id="200k-nested"),
        pytest.param("[" * 200_000, "spec", id="200k-unclosed"),
        pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, "spec", id="100k-nested-objects"),
    ],
)
def test_nesting_that_python_cannot_decode_is_one_line(text: str, field: str) -> None:
    started = time.monotonic()
    assert refused(text) == f"{field}: nested deeper than {MAX_SPEC_DEPTH} levels"
    assert time.monotonic() - started < 1


def test_nesting_deeper_than_the_limit_names_the_field() -> None:
    deep: Any = 1
    for _ in range(MAX_SPEC_DEPTH + 5):
        deep = [deep]
    message = refused(json.dumps(spoiled("task.kwargs", {"tree": deep})))
    assert message.startswith("task.kwargs.tree[0][0]") and message.endswith(
        f"nested deeper than {MAX_SPEC_DEPTH} levels"
    )
    # The same rule holds for a spec built in Python (an operator's arguments).
    with pytest.raises(SpecError, match=r"^task\.args\["):
        build_spec("genius_samples.tasks:Adder", "add", args=[deep], dag_id="d", task_id="t", run_id="r")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(b'{"spec_version": 1, "kind": "\xff"}', "spec: is not UTF-8 text", id="not-utf8"),
        pytest.param(
            '{"task": {"args": [' + "9" * 5000 + "]}}",
            "spec: holds a number with too many digits",
            id="digits",
        ),
        pytest.param('{"spec_version": 1,', "spec: is not valid JSON", id="truncated"),
    ],
)
def test_undecodable_specs_are_one_line(text: str | bytes, message: str) -> None:
    assert refused(text).startswith(message)


# ---------------------------------------------------------------------- values no store can carry
SURROGATE = "\\ud800"  # as JSON writes it: decodes to a lone surrogate


@pytest.mark.parametrize(
    "field",
    [
        "run.run_id",
        "run.dag_id",
        "run.task_id",
        "state.namespace",
        "task.method",
        "model.name",
    ],
)
def test_a_lone_surrogate_in_an_identifier_is_refused(field: str) -> None:
    base = spoiled("model", {"uri": "s3://models/m", "name": "m", "version": "latest"})
    text = json.dumps(spoiled(field, "PLACEHOLDER", base)).replace("PLACEHOLDER", f"run{SURROGATE}")
    assert refused(text) == f"{field}: contains a lone surrogate, which is not text, got 'run\\ud800'"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            spoiled("task.kwargs", {"x\udfff": 1}),
            "task.kwargs: a key contains a lone surrogate, which is not text, got 'x\\udfff'",
            id="kwargs-key",
        ),
        pytest.param(
            spoiled("task.args", [{"deep": ["\udc80"]}]),
            "task.args[0].deep[0]: contains a lone surrogate, which is not text, got '\\udc80'",
            id="nested-arg",
        ),
        pytest.param(
            spoiled("output", {"uri": "/data/\ud800", "type": "batch"}),
            "output.uri: contains a lone surrogate, which is not text, got '/data/\\ud800'",
            id="output-uri",
        ),
        pytest.param(
            spoiled("task.args", [float("nan")]),
            "task.args[0]: expected a finite number (JSON has no NaN or Infinity), got nan",
            id="nan-arg",
        ),
        pytest.param(
            spoiled("task.kwargs", {"x": float("-inf")}),
            "task.kwargs.x: expected a finite number (JSON has no NaN or Infinity), got -inf",
            id="inf-kwarg",
        ),
    ],
)
def test_values_no_store_can_carry_are_refused_in_python_dicts_too(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        TaskSpec.from_dict(data)
    assert str(caught.value) == message


# ---------------------------------------------------------------------- window bounds
STREAM_INPUT = {"type": "stream", "uri": "sqlite:///s.db?stream=s&group=g"}


def window_spec(**window: Any) -> dict[str, Any]:
    data = spoiled("input", STREAM_INPUT)
    data["kind"] = "bolt"
    data["window"] = {"max_records": 10, "max_windows": None, **window}
    return data


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("max_records", "NaN", "expected a finite number"),
        ("max_records", "0", "expected a positive integer up to 1,000,000 or null"),
        ("max_records", "-5", "expected a positive integer up to 1,000,000 or null"),
        ("max_records", "1000000000000000000000000000000", "expected a positive integer up to 1,000,000"),
        ("max_records", "true", "expected a positive integer"),
        ("max_records", '"10"', "expected a positive integer"),
        ("max_records", "2.5", "expected a positive integer"),
        ("max_seconds", "NaN", "expected a finite number"),
        ("max_seconds", "Infinity", "expected a finite number"),
        ("max_seconds", "-Infinity", "expected a finite number"),
        ("max_seconds", "1e30", "expected a positive number up to 315,360,000 or null"),
        ("max_seconds", "1000000000000000000000000000000", "expected a positive number up to"),
        ("max_seconds", "0", "expected a positive number"),
        ("max_seconds", "-1.5", "expected a positive number"),
        ("max_seconds", "false", "expected a positive number"),
        ("max_windows", "0", "expected a positive integer up to 1,000,000,000,000 or null"),
        ("max_windows", "1000000000000000000000000000000", "expected a positive integer up to"),
        ("max_windows", "true", "expected a positive integer"),
        ("max_windows", "NaN", "expected a finite number"),
    ],
)
def test_window_bounds_are_checked_with_one_line_naming_the_field(
    field: str, raw: str, expected: str
) -> None:
    data = window_spec(max_seconds=5, unbounded=field == "max_windows")
    del data["window"][field]  # given below, as raw JSON
    text = json.dumps(data).replace('"window": {', f'"window": {{"{field}": {raw}, ', 1)
    message = refused(text)
    assert message.startswith(f"window.{field}: {expected}"), message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("run.map_index", 10**30, "run.map_index: expected an integer <= 2,147,483,647"),
        ("run.try_number", 2**31, "run.try_number: expected an integer <= 2,147,483,647"),
        ("run.map_index", -2, "run.map_index: expected an integer >= -1"),
    ],
)
def test_run_numbers_fit_the_stores(field: str, value: int, expected: str) -> None:
    assert refused(json.dumps(spoiled(field, value))).startswith(expected)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///s.db?stream=s&group=g&batch=abc", "input.uri: parameter batch='abc' (records per read)"),
        ("redis://cache:6379/0?stream=s&group=g&claim_idle=soon", "input.uri: parameter claim_idle='soon'"),
        (
            "redis://cache:6379/0?stream=s&group=g&bacth=5",
            "input.uri: unknown parameter 'bacth'; did you mean",
        ),
        ("redis://cache:6379/x?stream=s&group=g", "input.uri: the path must be a Redis database number"),
        ("sqlite:///s.db?stream=s", "input.uri: needs &group=<consumer group> to be read"),
    ],
)
def test_stream_uri_parameters_are_checked_with_the_spec(uri: str, expected: str) -> None:
    data = window_spec()
    data["input"]["uri"] = uri
    message = refused(json.dumps(data))
    assert message.startswith(expected) and f"got {uri!r}" in message, message


# ---------------------------------------------------------------------- through `genius run --spec`
def genius(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        cwd=cwd,
        timeout=60,
    )


def cli_cases(state_uri: str, out: Path) -> list[tuple[str, str, str]]:
    """(id, spec text, expected start of the message) for the CLI test; every spec writes to ``out``."""
    base = good_spec(state_uri, output_uri=str(out), run_id="bad")
    text = json.dumps(base)
    nested = json.dumps(spoiled("task.args", ["PLACEHOLDER"], base))
    return [
        (
            "200k-nested",
            nested.replace('"PLACEHOLDER"', "[" * 200_000 + "]" * 200_000),
            "spec: nested deeper",
        ),
        ("surrogate-run-id", text.replace('"run_id": "bad"', f'"run_id": "bad{SURROGATE}"'), "run.run_id:"),
        (
            "nan-max-seconds",
            json.dumps(spoiled("window", {"max_seconds": float("nan")}, base)),
            "window.max_",
        ),
        ("huge-try-number", json.dumps(spoiled("run.try_number", 10**30, base)), "run.try_number:"),
        ("oversized", json.dumps(spoiled("task.args", ["x" * MAX_SPEC_BYTES], base)), "spec: is "),
    ]


def test_genius_run_refuses_bad_specs_with_exit_2_one_line_and_stores_nothing(tmp_path: Path) -> None:
    state_uri = f"sqlite:///{tmp_path}/state.db"
    out = tmp_path / "out"
    assert genius("run", "--spec", "-", stdin=json.dumps(good_spec(state_uri))).returncode == 0
    with open_state(state_uri) as state:
        before = [r.to_dict() for r in state.list_runs()]
    assert len(before) == 1
    for case, text, expected in cli_cases(state_uri, out):
        path = tmp_path / f"{case}.json"
        path.write_text(text)
        for args in (("--spec", str(path)), ("--spec", "-")):
            done = genius("run", *args, stdin=text if args[1] == "-" else None)
            assert done.returncode == 2, (case, done.stderr[-500:])
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"genius: error: {expected}"), (case, lines[:3])
    with open_state(state_uri) as state:
        assert [r.to_dict() for r in state.list_runs()] == before  # no run record created or changed
    assert not out.exists()  # nothing written to the output root


@pytest.mark.parametrize(
    "state_uri",
    ["sqlite:////proc/genius-nope/state.db", "sqlite:///{tmp}/a-file/state.db", "sqlite:///{tmp}"],
    ids=["under-proc", "parent-is-a-file", "a-folder"],
)
def test_a_sqlite_state_store_that_cannot_exist_is_one_line(tmp_path: Path, state_uri: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    uri = state_uri.replace("{tmp}", str(tmp_path))
    done = genius("run", "--spec", "-", stdin=json.dumps(good_spec(uri)))
    assert done.returncode == 2, done.stderr[-500:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open the sqlite state store" in lines[0], lines[:3]
    assert (tmp_path / "a-file").read_text() == "not a folder"
    assert not Path("/proc/genius-nope").exists()
