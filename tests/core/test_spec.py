"""TaskSpec: round trip, defaults, and precise errors for malformed specs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_genius.core.errors import SpecError
from airflow_genius.core.spec import TaskSpec, build_spec


def valid() -> dict[str, Any]:
    return build_spec(
        "genius_samples.tasks:Copier",
        "copy",
        kind="bolt",
        input_uri="/data/in",
        output_uri="s3://bucket/out",
        state_uri="redis://127.0.0.1:6379/0",
        dag_id="etl",
        task_id="copy",
        run_id="manual__2024-01-01T00:00:00+00:00",
        map_index=3,
        try_number=2,
        logical_date="2024-01-01T00:00:00+00:00",
        kwargs={"top": 5},
        args=[1, "two"],
    ).to_dict()


def test_round_trip_keeps_every_field() -> None:
    data = valid()
    spec = TaskSpec.from_dict(data)
    assert TaskSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json()) == data
    assert spec.run.map_index == 3 and spec.run.try_number == 2
    assert spec.task.args == (1, "two") and spec.task.kwargs == {"top": 5}
    assert spec.output is not None and spec.output.partition_scheme == "%Y/%m/%d"


def test_defaults_fill_optional_fields() -> None:
    spec = TaskSpec.from_dict(
        {
            "spec_version": 1,
            "task": {"class": "m:C", "method": "go"},
            "run": {"dag_id": "d", "task_id": "t", "run_id": "r"},
        }
    )
    assert spec.kind == "task" and spec.state.uri.startswith("sqlite:///")
    assert spec.run.map_index == -1 and spec.run.try_number == 1
    assert spec.input is None and spec.window is None


def _with(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with one field replaced (``value`` of ... deletes it)."""
    data = copy.deepcopy(valid())
    *parents, leaf = path.split(".")
    target = data
    for name in parents:
        target = target[name]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return data


MALFORMED = [
    # (spec change, field named in the error, words the message must contain)
    ("spec_version", 99, "spec_version", "expected one of"),
    ("spec_version", ..., "spec_version", "expected one of"),
    ("kind", "sprout", "kind", "spout, bolt, task"),
    ("task", "pkg:C", "task", "expected a JSON object"),
    ("task.class", "no_colon_here", "task.class", "package.module:ClassName"),
    ("task.class", "pkg.mod:Class; rm -rf /", "task.class", "package.module:ClassName"),
    ("task.method", "", "task.method", "non-empty string"),
    ("task.method", "__init__", "task.method", "private and dunder"),
    ("task.method", "not-an-ident", "task.method", "method name"),
    ("task.args", {"a": 1}, "task.args", "JSON array"),
    ("task.kwargs", [1, 2], "task.kwargs", "JSON object"),
    ("task.kwargs", {"bad key": 1}, "task.kwargs", "Python identifier"),
    ("task.extra", 1, "task.extra", "unknown field"),
    ("surprise", True, "surprise", "unknown field"),
    ("input", ..., "input", "a bolt needs an input"),
    ("input.uri", "relative/path", "input.uri", "absolute path"),
    ("input.uri", "ftp://host/x", "input.uri", "absolute path"),
    ("input.uri", "s3:///no-bucket", "input.uri", "needs a bucket"),
    ("output.uri", "s3://key:secret@bucket/x", "output.uri", "credentials"),
    ("output.type", "stream", "output.type", "expected one of batch"),
    ("output.partition_scheme", "../%Y", "output.partition_scheme", "stay relative"),
    ("state.uri", "postgresql://app:hunter2@db/genius", "state.uri", "GENIUS_STATE_PASSWORD"),
    ("state.uri", "mongodb://db/genius", "state.uri", "expected a scheme"),
    ("run", ..., "run", "expected a JSON object"),
    ("run.dag_id", "  ", "run.dag_id", "non-empty string"),
    ("run.map_index", -2, "run.map_index", "integer >= -1"),
    ("run.try_number", 0, "run.try_number", "integer >= 1"),
    ("run.try_number", True, "run.try_number", "integer >= 1"),
    ("run.logical_date", "yesterday", "run.logical_date", "ISO 8601"),
    ("window", {"max_records": 0}, "window.max_records", "positive integer"),
    ("window", {}, "window", "set max_records"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "words"), MALFORMED, ids=[f"{m[0]}={m[1]!r}" for m in MALFORMED]
)
def test_malformed_spec_names_field(path: str, value: Any, field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        TaskSpec.from_dict(_with(path, value))
    message = str(caught.value)
    assert caught.value.field == field
    assert message.startswith(f"{field}: ")
    assert words in message
    assert "\n" not in message
    assert "hunter2" not in message and "secret" not in message.replace("s3://key:***", "")


@pytest.mark.parametrize(
    "text",
    ["", "{", "[1, 2]", '"spec"', "null", '{"spec_version": 1,}'],
)
def test_not_a_json_object(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        TaskSpec.from_json(text)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("spec: ")


def test_spout_takes_no_input() -> None:
    data = _with("kind", "spout")
    with pytest.raises(SpecError, match=r"^input: a spout"):
        TaskSpec.from_dict(data)


def test_long_values_are_shortened_in_errors() -> None:
    with pytest.raises(SpecError) as caught:
        TaskSpec.from_dict(_with("task.method", "x" * 5000 + "-"))
    assert len(str(caught.value)) < 200
