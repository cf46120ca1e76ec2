"""Batch and stream mix in one bolt: stream → batch and batch → stream (stream → stream and
batch → batch are covered by the window and data suites)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.errors import SpecError
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.spec import build_spec
from airflow_genius.core.state import open_state


def test_stream_input_to_batch_output_publishes_one_partition_per_window(
    place: StreamPlace, tmp_path: Path
) -> None:
    state = open_state(f"sqlite:///{tmp_path}/state.db")
    fill(place.open("in"), 7)
    outcomes = []
    for run in ("r1", "r2"):
        spec = build_spec(
            "genius_stream_tasks:StreamToFiles", "dump", kind="bolt",
            input_uri=place.uri("in", "g"), output_uri=str(tmp_path / "out"),
            dag_id="d", task_id="t", run_id=run, max_records=4,
        )  # fmt: skip
        outcomes.append(run_spec(spec, state=state, work_dir=tmp_path / "work"))
    assert [o.result for o in outcomes] == [4, 3]
    windows = sorted(json.loads(p.read_text()) for p in (tmp_path / "out").rglob("window.json"))
    assert windows == [[0, 1, 2, 3], [4, 5, 6]]
    assert all(o.record.metrics["output_files"] == 1 for o in outcomes)
    assert place.open("in").pending_ids("g") == []


def test_batch_input_to_stream_output(place: StreamPlace, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("one\ntwo\n")
    (source / "b.txt").write_text("three\n")
    state = open_state(f"sqlite:///{tmp_path}/state.db")
    spec = build_spec(
        "genius_stream_tasks:FilesToStream", "send_lines", kind="bolt",
        input_uri=str(source), output_uri=place.uri("lines"),
        dag_id="d", task_id="t", run_id="r1",
    )  # fmt: skip
    assert run_spec(spec, state=state, work_dir=tmp_path / "work").result == 3
    assert run_spec(spec.__class__.from_dict({**spec.to_dict(), "run": {**spec.to_dict()["run"], "try_number": 2}}),
                    state=state, work_dir=tmp_path / "work").result == 3  # fmt: skip
    lines = [m.data["line"] for m in place.open("lines").read_all()]
    assert lines == ["one", "two", "three"]  # the retry's sends were deduplicated


def test_unbounded_refuses_a_batch_output(place: StreamPlace, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^window\.unbounded: an unbounded task writes to a stream output"):
        build_spec(
            "m:C", "f", kind="bolt", input_uri=place.uri("in", "g"), output_uri=str(tmp_path / "out"),
            dag_id="d", task_id="t", run_id="r", max_records=5, unbounded=True,
        )  # fmt: skip
