"""A DAG for tests/slurm/test_requeue.py: one sleeper waited for in the worker, one deferred.

``GENIUS_TEST_GENIUS`` is the ``genius`` executable on the compute node (this machine in the rig);
``GENIUS_TEST_SLEEP`` how long each run of the method sleeps.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_genius.operators.slurm import GeniusSlurmOperator

with DAG(dag_id="genius_slurm_requeue", schedule=None, catchup=False) as genius_slurm_requeue:
    for task_id, deferrable in (("worker", False), ("deferred", True)):
        GeniusSlurmOperator(
            task_id=task_id,
            task_class="airflow_genius.examples.tasks:Echo",
            method="sleep",
            method_kwargs={"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "20"))},
            ssh_conn_id="genius_slurm",
            genius_command=os.environ.get("GENIUS_TEST_GENIUS", "genius"),
            extra_directives=["--requeue"],
            poll_interval=0.5,
            lost_after=30.0,
            pending_timeout=60.0,  # bounds the first wait only: the requeued job waits longer
            deferrable=deferrable,
            retries=0,
        )
