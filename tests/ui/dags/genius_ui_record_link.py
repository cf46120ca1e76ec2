"""One genius spout (its operator lists the "Genius record" extra link; the UI test follows it)."""

from __future__ import annotations

import os

from airflow.sdk import dag

from airflow_genius.operators.local import GeniusSpoutOperator


@dag(dag_id="genius_ui_record_link", schedule=None, catchup=False, tags=["genius", "test"])
def genius_ui_record_link() -> None:
    GeniusSpoutOperator(
        task_id="probe",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": 3},
        output_uri=os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data", "probe"),
    )


genius_ui_record_link()
