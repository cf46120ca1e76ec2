"""dags_examples/ml.genius.yaml with ``defaults.runner: slurm`` in a real ``dag.test()`` on the rig's
Slurm cluster (reached over SSH): every step a Slurm job, the service a job until its teardown
cancels it with SIGTERM; the nodes share this machine's folders, so data and models (git) live there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from airflow_fixtures import RunPython
from ml_workflow import DAG_ID, check_ml_run, free_port, geniusfile_on, ml_env, run_ml_workflow

from slurm.rig import sacct_rows

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]


def test_the_ml_geniusfile_runs_on_slurm(
    run_python: RunPython, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    repo = tmp_path / "models.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(repo)], check=True)
    model_uri = f"git+file://{repo}"
    env = {**slurm_env, **ml_env(str(tmp_path / "data"), model_uri, free_port())}
    folder = geniusfile_on("slurm", tmp_path / "dags")
    result, output = run_ml_workflow(run_python, env, folder)
    check_ml_run(
        result, output, state_uri=slurm_env["AIRFLOW__GENIUS__STATE_URI"], model_uri=model_uri,
        cache=tmp_path / "cache",
    )  # fmt: skip
    # the service ran as a Slurm job, which its stop ended
    served = result["tis"][[ti["task_id"] for ti in result["tis"]].index("serve")]["xcom"]
    (job,) = sacct_rows(job_id=str(served["job_id"]))
    assert job["name"] == served["job_name"] and DAG_ID in job["name"], job
