"""The "Genius output" extra link: the committed partition's URL on success, an empty link and no
"XCom not found" error in the log on failure."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from genius_dagtest import dag_test

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
TEST_DAGS = ROOT / "tests" / "airflow_dags"
LINK_KEY = "_link_GeniusOutputLink"


@pytest.fixture
def genius_env(airflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "GENIUS_EXAMPLE_DATA": str(tmp_path / "data"),
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
    }


def link_values(env: dict[str, str], dag_id: str, run_id: str) -> dict[str, object]:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, CAST(value AS TEXT) FROM xcom WHERE dag_id = ? AND run_id = ? AND key = ?",
            (dag_id, run_id, LINK_KEY),
        ).fetchall()
    return {task_id: json.loads(value) for task_id, value in rows}


def test_the_link_points_at_the_committed_partition(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, _ = dag_test(run_python, genius_env, EXAMPLES, "genius_batch_pipeline", {"count": 3, "top": 1})
    assert result["state"] == "success", result
    links = link_values(genius_env, "genius_batch_pipeline", result["run_id"])
    outputs = {ti["task_id"]: ti for ti in result["tis"]}
    for task_id in ("fetch", "count"):
        location = links[task_id]
        assert isinstance(location, str) and location.startswith("file://"), location
        folder = Path(unquote(urlsplit(location).path))
        assert folder.is_relative_to(genius_env["GENIUS_EXAMPLE_DATA"]) and folder.is_dir(), location
        assert list(folder.iterdir()), (task_id, outputs[task_id])  # the committed files are there


def test_a_failed_task_logs_no_missing_link_error(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, log = dag_test(run_python, genius_env, TEST_DAGS, "genius_failing")
    assert result["state"] == "failed"
    assert "GeniusTaskFailed: RuntimeError: the remote task broke" in log
    assert "XCom not found" not in log and "Failed to push an xcom" not in log
    assert link_values(genius_env, "genius_failing", result["run_id"]).get("breaks") in ("", None)
