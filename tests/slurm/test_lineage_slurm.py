"""OpenLineage events of a real Slurm run: ``dag.test()`` of the lineage DAG of
tests/containers/test_lineage_remote.py on the rig's cluster (sshd + Slurm), one task that commits (waited
for deferred) and one that fails, with the provider's file transport. Their COMPLETE and FAIL events name
the input and output roots and, in the ``genius`` facet, the Slurm job id that sacct shows for the task.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from containers.test_lineage_remote import TASKS, check_events, quotes_folder, run_lineage_dag

from airflow_genius.core.slurm_protocol import job_name
from slurm.rig import sacct_rows

pytestmark = [pytest.mark.slurm, pytest.mark.airflow, pytest.mark.slow]


def test_slurm_events_name_the_job_id(run_python, slurm_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, out = str(quotes_folder(tmp_path / "data" / "in")), str(tmp_path / "data" / "out")
    imports = """
        from airflow_genius.operators.slurm import GeniusSlurmOperator as Operator
        from airflow_dags.genius_slurm_cases import SLURM as ARGS
        OK_ARGS = {"deferrable": True}  # its job id comes back from the trigger
    """
    result, _, events = run_lineage_dag(
        run_python, slurm_env, tmp_path, "slurm", imports, source=source, out=out
    )
    job_ids = {}
    for task, state in zip(TASKS, ("COMPLETED", "FAILED"), strict=True):  # what sacct says each task ran as
        (row,) = sacct_rows(name=job_name("genius_lineage_slurm", task, result["run_id"]), wait_for=state)
        job_ids[task] = row["id"]
    check_events(events, runner="slurm", job_ids=job_ids, source=source, out=out)
