"""A mapped bolt: one spout, then the same bolt over several argument sets (dynamic task mapping).

Each mapped instance has its own run record (map_index) and its own output partition.
"""

from __future__ import annotations

import os

from airflow.sdk import dag

from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

DATA_ROOT = os.environ.get(
    "GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data")
)


@dag(dag_id="genius_mapped_bolt", schedule=None, catchup=False, tags=["genius", "example"], doc_md=__doc__)
def genius_mapped_bolt() -> None:
    fetch = GeniusSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": 40},
        output_uri=f"{DATA_ROOT}/quotes",
    )
    count = GeniusBoltOperator.partial(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{DATA_ROOT}/counts",
    ).expand(method_kwargs=[{"top": 3}, {"top": 5, "min_length": 4}, {"top": 10}])
    fetch >> count


genius_mapped_bolt()
