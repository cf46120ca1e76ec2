"""Test DAG: a genius task that fails on its first try and succeeds on the retry."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from airflow_genius.operators.local import GeniusTaskOperator


@dag(dag_id="genius_retry", schedule=None, catchup=False)
def genius_retry() -> None:
    GeniusTaskOperator(
        task_id="flaky",
        task_class="genius_samples.tasks:Flaky",
        method="attempt",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )


genius_retry()
