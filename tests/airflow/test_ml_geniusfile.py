"""dags_examples/ml.genius.yaml on the local runner (its own ``defaults.runner``) in a real ``dag.test()``:
every step in the worker, the service detached on the worker's host, models in a git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from airflow_fixtures import RunPython
from ml_workflow import check_ml_run, free_port, geniusfile_on, ml_env, run_ml_workflow

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def test_the_ml_geniusfile_runs_on_the_worker(
    run_python: RunPython, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    repo = tmp_path / "models.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(repo)], check=True)
    state_uri = f"sqlite:///{tmp_path}/state.db"
    env = {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": state_uri,
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        **ml_env(str(tmp_path / "data"), f"git+file://{repo}", free_port()),
    }
    folder = geniusfile_on("local", tmp_path / "dags")
    result, output = run_ml_workflow(run_python, env, folder)
    check_ml_run(
        result, output, state_uri=state_uri, model_uri=f"git+file://{repo}", cache=tmp_path / "cache"
    )
