"""Extra directives that would move a job's files are refused before sbatch, on the real Slurm rig."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from genius_dagtest import dag_test

from airflow_genius.core.slurm_protocol import job_name
from airflow_genius.operators.slurm_script import SlurmJobOptions, SlurmOptionError
from slurm.rig import CONN_ID, GENIUS, sacct_rows

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "genius_slurm_elsewhere"
# Spellings sbatch accepts for "write somewhere else" ({e} is a folder outside the job folder).
ESCAPES = {
    "output": "--output={e}/output-%j.out",
    "abbreviated": "--out={e}/abbreviated-%j.out",
    "short": "-o{e}/short-%j.out",
    "bundled": "-Ho{e}/bundled-%j.out",
    "error": "--error={e}/error-%j.err",
    "chdir": "--chdir={e}",
}

DAG_FILE = textwrap.dedent(
    '''
    """Tasks whose extra directives try to write outside their job folder, and one allowed directive."""
    import json, os
    from airflow.sdk import DAG
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    SLURM = {{
        "ssh_conn_id": {conn!r}, "genius_command": {genius!r}, "remote_base_dir": {jobs!r},
        "poll_interval": 0.5, "lost_after": 30.0, "retries": 0,
        "task_class": "airflow_genius.examples.tasks:Echo", "method": "say", "method_args": ["hello"],
    }}
    with DAG(dag_id={dag_id!r}, schedule=None, catchup=False) as {dag_id}:
        for task_id, directive in json.loads(os.environ["GENIUS_TEST_ESCAPES"]).items():
            GeniusSlurmOperator(task_id=task_id, extra_directives=["--exclusive", directive], **SLURM)
        GeniusSlurmOperator(task_id="allowed", extra_directives=["--comment=stays-home"], **SLURM)
    '''
)


def test_directives_that_write_elsewhere_never_reach_sbatch(  # type: ignore[no-untyped-def]
    slurm_hook, run_python, airflow_env: dict[str, str], slurm_conn: str, tmp_path: Path
) -> None:
    # Control: sbatch itself honours an abbreviated --output, so the refusal below is what stops it.
    control = tmp_path / "control"
    control.mkdir()
    script = (
        f"#!/bin/bash\n#SBATCH --job-name=genius-control-{uuid.uuid4().hex[:8]}\n"
        f"#SBATCH --out={control}/ctl-%j.out\necho escaped\n"
    )
    job_id = slurm_hook.submit(script, work_dir=str(tmp_path))
    sacct_rows(job_id=job_id, wait_for="COMPLETED")
    assert (control / f"ctl-{job_id}.out").read_text() == "escaped\n"

    elsewhere, jobs, dags = tmp_path / "elsewhere", tmp_path / "jobs", tmp_path / "dags"
    for folder in (elsewhere, jobs, dags):
        folder.mkdir()
    escapes = {task: spelling.format(e=elsewhere) for task, spelling in ESCAPES.items()}
    (dags / f"{DAG_ID}.py").write_text(
        DAG_FILE.format(conn=CONN_ID, genius=GENIUS, jobs=str(jobs), dag_id=DAG_ID)
    )
    env = {
        **airflow_env,
        f"AIRFLOW_CONN_{CONN_ID.upper()}": slurm_conn,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_TEST_ESCAPES": json.dumps(escapes),
    }
    result, output = dag_test(run_python, env, dags, DAG_ID, timeout=600)
    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert states == {**dict.fromkeys(escapes, "failed"), "allowed": "success"}, output[-4000:]

    # the allowed directive reached the job, whose files all stay in its own folder
    allowed = job_name(DAG_ID, "allowed", result["run_id"])
    (row,) = sacct_rows(name=allowed, wait_for="COMPLETED")
    assert [path.name for path in jobs.iterdir()] == [allowed]
    assert (jobs / allowed / f"slurm-{row['id']}.out").exists()
    script = subprocess.run(
        ["scontrol", "write", "batch_script", row["id"], "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "#SBATCH --comment=stays-home" in script.splitlines()

    # accounting has caught up (it lists the allowed job): the refused ones were never submitted
    for task, directive in escapes.items():
        with pytest.raises(SlurmOptionError) as refused:
            SlurmJobOptions(extra_directives=[directive])
        assert str(refused.value) in output  # the task log names the directive
        assert sacct_rows(name=job_name(DAG_ID, task, result["run_id"])) == []
    assert list(elsewhere.iterdir()) == []
