"""DAGs for tests/slurm/test_array.py: a genius Slurm task mapped over ``GENIUS_TEST_ARRAY_SIZE`` inputs
(one job array), and one mapped over three sleepers (to kill one instance while its element runs).

``GENIUS_TEST_GENIUS`` is the ``genius`` executable on the compute node (this machine in the rig). Map
index ``GENIUS_TEST_ARRAY_FAIL`` fails on its first try: its own environment (``env`` is templated per
instance, and reaches only its element) makes the job's setup exit 3 before ``genius run``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_genius.operators.slurm import GeniusSlurmOperator

SIZE = int(os.environ.get("GENIUS_TEST_ARRAY_SIZE", "50"))
FAIL = int(os.environ.get("GENIUS_TEST_ARRAY_FAIL", "7"))
COMMON = {
    "task_class": "airflow_genius.examples.tasks:Echo",
    "ssh_conn_id": "genius_slurm",
    "genius_command": os.environ.get("GENIUS_TEST_GENIUS", "genius"),
    "poll_interval": 0.5,
    "lost_after": 30.0,
}

with DAG(dag_id="genius_slurm_array", schedule=None, catchup=False) as genius_slurm_array:
    GeniusSlurmOperator.partial(
        task_id="echo",
        method="say",
        max_parallel=8,
        env={"GENIUS_TEST_FAIL": f"{{{{ 1 if ti.map_index == {FAIL} and ti.try_number == 1 else 0 }}}}"},
        setup=['if [ "$GENIUS_TEST_FAIL" = 1 ]; then echo "element fails on purpose"; exit 3; fi'],
        retries=1,
        retry_delay=timedelta(seconds=0),
        **COMMON,
    ).expand(method_kwargs=[{"message": f"input-{index}"} for index in range(SIZE)])

with DAG(dag_id="genius_slurm_array_kill", schedule=None, catchup=False) as genius_slurm_array_kill:
    GeniusSlurmOperator.partial(task_id="sleep", method="sleep", retries=0, **COMMON).expand(
        method_kwargs=[{"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "120"))}] * 3
    )
