"""Batch spout → bolt on the embedded default (SQLite state, local folders): trigger it from the UI.

The form's ``count`` and ``top`` params change how many quotes the spout ingests and how many words the
bolt reports; the bolt reads exactly the partition the spout committed (its ``genius_output`` XCom).
"""

from __future__ import annotations

import os

from airflow.sdk import Param, dag

from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

DATA_ROOT = os.environ.get(
    "GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data")
)


@dag(
    dag_id="genius_batch_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.count }}" renders to an int, not a string
    tags=["genius", "example"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "top": Param(5, type="integer", minimum=1, maximum=100, description="Words to report"),
    },
    doc_md=__doc__,
)
def genius_batch_pipeline() -> None:
    fetch = GeniusSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{DATA_ROOT}/quotes",
    )
    count = GeniusBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        method_kwargs={"top": "{{ params.top }}"},
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{DATA_ROOT}/counts",
    )
    fetch >> count


genius_batch_pipeline()
