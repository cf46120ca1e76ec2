"""The runtime records every run's lifecycle, result and error in the state store."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_genius.core import Status, build_spec, open_state, run_spec
from airflow_genius.core.errors import TransitionConflict
from airflow_genius.core.runtime import run_key
from airflow_genius.core.state import StateManager


@pytest.fixture
def state(tmp_path: Path) -> StateManager:
    return open_state(f"sqlite:///{tmp_path}/state.db")


def spec_for(method: str, *, state_uri: str = "memory://", **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("dag_id", "dag")
    kw.setdefault("task_id", method)
    kw.setdefault("run_id", "run1")
    return build_spec(f"genius_samples.tasks:{kw.pop('cls', 'Adder')}", method, state_uri=state_uri, **kw)


def test_success_records_result_history_and_metrics(state: StateManager) -> None:
    outcome = run_spec(spec_for("add", args=[2], kwargs={"b": 40}), state=state)
    assert outcome.ok and outcome.result == 42
    record = state.require_run(outcome.record.key)
    assert record.status is Status.SUCCESS and record.result == 42
    assert [h.status for h in record.history] == [Status.QUEUED, Status.RUNNING, Status.SUCCESS]
    assert record.metrics["calls"] == 1 and record.metrics["duration_seconds"] >= 0
    assert record.info["task"] == "genius_samples.tasks:Adder" and record.info["method"] == "add"
    assert record.heartbeat_at is not None and record.error is None


def test_failure_records_type_message_traceback(state: StateManager) -> None:
    outcome = run_spec(spec_for("run", cls="Exploding", kwargs={"message": "bad row 7"}), state=state)
    assert outcome.status is Status.FAILED
    error = state.require_run(outcome.record.key).error
    assert error is not None
    assert error["type"] == "ValueError" and error["message"] == "bad row 7"
    assert (
        "raise ValueError(message)" in error["traceback"] and "genius_samples/tasks.py" in error["traceback"]
    )


def test_retry_appends_history_to_the_same_record(state: StateManager) -> None:
    first = run_spec(spec_for("run", cls="Exploding"), state=state)
    second = run_spec(spec_for("add", cls="Adder", args=[1], task_id="run", try_number=2), state=state)
    assert first.record.key == second.record.key
    record = state.require_run(second.record.key)
    assert record.status is Status.SUCCESS and record.try_number == 2 and record.error is None
    assert [(h.status, h.try_number) for h in record.history] == [
        (Status.QUEUED, 1),
        (Status.RUNNING, 1),
        (Status.FAILED, 1),
        (Status.RUNNING, 2),
        (Status.SUCCESS, 2),
    ]
    assert len(state.list_runs(dag_id="dag")) == 1


def test_same_try_cannot_run_twice(state: StateManager) -> None:
    run_spec(spec_for("add", args=[1]), state=state)
    with pytest.raises(TransitionConflict):
        run_spec(spec_for("add", args=[1]), state=state)


def test_mapped_runs_are_isolated(state: StateManager) -> None:
    for index in range(3):
        run_spec(spec_for("add", args=[index], map_index=index), state=state)
    records = state.list_runs(dag_id="dag", task_id="add")
    assert sorted((r.key.map_index, r.result) for r in records) == [(0, 0), (1, 1), (2, 2)]


def test_task_state_survives_runs(state: StateManager) -> None:
    results = [run_spec(spec_for("counter", run_id=f"r{i}"), state=state).result for i in range(3)]
    assert results == [1, 2, 3]


def test_non_json_result_fails_clearly(state: StateManager) -> None:
    outcome = run_spec(spec_for("unserialisable", cls="Exploding"), state=state)
    assert outcome.status is Status.FAILED
    assert "is not JSON" in outcome.error["message"]  # type: ignore[index]


def test_bolt_reads_input_and_commits_output(state: StateManager, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("hello\n")
    (source / "b.txt").write_text("world\n")
    spec = spec_for(
        "copy",
        cls="Copier",
        kind="bolt",
        input_uri=str(source),
        output_uri=str(tmp_path / "out"),
        logical_date="2024-05-06T00:00:00+00:00",
        run_id="manual__1",
    )
    outcome = run_spec(spec, state=state, work_dir=tmp_path / "work")
    assert outcome.ok and outcome.result == {"files": 2}
    partition = tmp_path / "out" / "dag" / "copy" / "2024" / "05" / "06" / "manual__1"
    assert (partition / "a.txt").read_text() == "HELLO\n"
    assert (partition / "_SUCCESS").exists()
    assert outcome.record.metrics["output_files"] == 2


def test_failed_bolt_commits_nothing(state: StateManager, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    spec = spec_for(
        "escape",
        cls="Copier",
        kind="bolt",
        input_uri=str(source),
        output_uri=str(tmp_path / "out"),
        kwargs={"filename": "../../outside.txt"},
    )
    outcome = run_spec(spec, state=state, work_dir=tmp_path / "work")
    assert outcome.status is Status.FAILED
    assert outcome.error["type"] == "airflow_genius.core.errors.PathEscapeError"  # type: ignore[index]
    assert not (tmp_path / "outside.txt").exists()
    assert not list((tmp_path / "out").rglob("_SUCCESS"))


def test_kind_mismatch_is_an_error(state: StateManager, tmp_path: Path) -> None:
    spec = spec_for("emit", cls="Lines", kind="bolt", input_uri=str(tmp_path), args=[1])
    outcome = run_spec(spec, state=state)
    assert outcome.status is Status.FAILED
    assert "is a spout, but the spec runs it as a bolt" in outcome.error["message"]  # type: ignore[index]


def test_run_key_matches_spec() -> None:
    spec = spec_for("add", map_index=4)
    assert run_key(spec).parts() == ("dag", "add", "run1", 4)


def test_model_named_in_spec_is_loaded_into_the_work_dir(state: StateManager, tmp_path: Path) -> None:
    import subprocess

    from airflow_genius.core.models import open_model_manager

    repo = tmp_path / "models.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.txt").write_text("w=1")
    with open_model_manager(f"git+file://{repo}") as models:
        version = models.save(model_dir, "tiny")
    (model_dir / "weights.txt").write_text("w=2")
    with open_model_manager(f"git+file://{repo}") as models:
        models.save(model_dir, "tiny")

    spec = spec_for(
        "weights", cls="ModelReader", model_uri=f"git+file://{repo}", model_name="tiny", model_version=version
    )
    outcome = run_spec(spec, state=state, work_dir=tmp_path / "work")
    assert outcome.ok and outcome.result == "w=1"
    latest = spec_for(
        "weights", cls="ModelReader", model_uri=f"git+file://{repo}", model_name="tiny", run_id="run2"
    )
    assert run_spec(latest, state=state, work_dir=tmp_path / "work").result == "w=2"
    assert len(list((tmp_path / "work" / "models").iterdir())) == 2
