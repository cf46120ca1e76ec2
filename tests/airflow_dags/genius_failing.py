"""Test DAG: a genius task whose method raises."""

from __future__ import annotations

from airflow.sdk import dag

from airflow_genius.operators.local import GeniusTaskOperator


@dag(dag_id="genius_failing", schedule=None, catchup=False)
def genius_failing() -> None:
    GeniusTaskOperator(
        task_id="breaks",
        task_class="airflow_genius.examples.tasks:Echo",
        method="fail",
        method_kwargs={"message": "the remote task broke"},
    )


genius_failing()
