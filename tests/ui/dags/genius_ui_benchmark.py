"""Two benchmark clients: a mapped task of ``genius_samples.bench:LatencyProbe`` (the UI test reads their
measured numbers back from the dashboard's benchmark chart)."""

from __future__ import annotations

from airflow.sdk import dag

from airflow_genius.operators.local import GeniusTaskOperator


@dag(dag_id="genius_ui_benchmark", schedule=None, catchup=False, tags=["genius", "test"])
def genius_ui_benchmark() -> None:
    GeniusTaskOperator.partial(
        task_id="client",
        task_class="genius_samples.bench:LatencyProbe",
        method="measure",
    ).expand(method_kwargs=[{"requests": 60, "size": 5_000}, {"requests": 40, "size": 40_000}])


genius_ui_benchmark()
