"""One value policy on every backend, end to end through the runtime: a result no store can hold is
refused *before* the output partition is committed (exit 2 semantics), and a failure is always recorded,
whatever its error text or metrics hold. No record is left RUNNING."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core import Status, build_spec, run_spec
from airflow_genius.core.state.values import UnstorableValue

KINDS = {
    "nan": "expected a finite number (JSON has no NaN or Infinity), got nan",
    "inf": "expected a finite number (JSON has no NaN or Infinity), got inf",
    "nul": "contains a NUL character, which no store keeps as text, got 'a\\x00b'",
    "surrogate": "contains a lone surrogate, which is not text, got '\\ud800'",
}


def _spec(backend: Any, tmp_path: Path, method: str, **kwargs: object):  # type: ignore[no-untyped-def]
    (tmp_path / "in").mkdir(exist_ok=True)
    return build_spec(
        "genius_samples.tasks:Unstorable",
        method,
        kwargs=kwargs,
        kind="bolt",
        input_uri=str(tmp_path / "in"),
        output_uri=str(tmp_path / "out"),
        state_uri=backend.uri,
        dag_id="values",
        task_id=method,
        run_id=f"r-{'-'.join(map(str, kwargs.values())) or 'x'}",
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_unstorable_result_fails_the_run_the_same_way_and_commits_nothing(
    backend: Any, tmp_path: Path, kind: str
) -> None:
    with backend.open() as state:
        outcome = run_spec(_spec(backend, tmp_path, "result", kind=kind), state=state)
        record = state.require_run(outcome.record.key)
    assert isinstance(outcome.exception, UnstorableValue)
    assert str(outcome.exception) == f"result: {KINDS[kind]}"
    assert record.status is Status.FAILED and record.error is not None
    assert record.error["type"] == "airflow_genius.core.state.values.UnstorableValue"
    assert record.error["message"] == f"result: {KINDS[kind]}"
    # Decided before the commit: no partition was published under the FAILED record.
    assert not list((tmp_path / "out").rglob("_SUCCESS"))
    assert not [p for p in (tmp_path / "out").rglob("*.json") if ".genius-staging" not in p.parts]


def test_a_failure_is_recorded_whatever_its_text_and_metrics_hold(backend: Any, tmp_path: Path) -> None:
    with backend.open() as state:
        outcome = run_spec(_spec(backend, tmp_path, "metric_then_fail"), state=state)
        record = state.require_run(outcome.record.key)
    assert record.status is Status.FAILED and record.error is not None
    assert record.error["type"] == "ValueError"
    assert record.error["message"] == "bad\\x00value \\udc80"
    assert record.metrics["loss"] == "nan"  # kept as text: the failure itself must be recorded


def test_genius_rise_exits_2_with_one_line_for_an_unstorable_result(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", "rise", "genius_samples.tasks:Unstorable", "result",
         "--kind", "bolt", "--kwarg", "kind=nan", "--input", str(tmp_path / "in"), "--output",
         str(tmp_path / "out"), "--state", f"sqlite:///{tmp_path}/state.db", "--run-id", "r1"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("genius: error")]
    assert errors == [f"genius: error: result: {KINDS['nan']}"]
    assert not list((tmp_path / "out").rglob("_SUCCESS"))
