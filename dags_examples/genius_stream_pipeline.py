"""A stream spout feeding a stream bolt every five minutes, on Redis Streams and on the embedded log.

Each run of ``enrich`` processes one bounded window (≤ ``max_records`` records or ``max_seconds``);
its bounds are recorded before processing, so a retry replays exactly that window, and its output is
exactly-once per window. Two DAGs, one per backend:

* ``genius_stream_redis`` — Redis at ``GENIUS_EXAMPLE_REDIS`` (default ``redis://127.0.0.1:6379/0``);
* ``genius_stream_sqlite`` — the embedded SQLite log in ``{AIRFLOW_HOME}/genius/streams.db`` (no server).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

HOME = os.environ.get("AIRFLOW_HOME", ".")
BACKENDS = {
    "redis": os.environ.get("GENIUS_EXAMPLE_REDIS", "redis://127.0.0.1:6379/0"),
    "sqlite": os.environ.get("GENIUS_EXAMPLE_STREAM_DB", f"sqlite:///{HOME}/genius/streams.db"),
}
PREFIX = os.environ.get("GENIUS_EXAMPLE_STREAM_PREFIX", "genius_quotes")
WINDOW_SECONDS = float(os.environ.get("GENIUS_EXAMPLE_WINDOW_SECONDS", "10"))  # longest wait for records

for backend, base in BACKENDS.items():
    with DAG(
        dag_id=f"genius_stream_{backend}",
        schedule="*/5 * * * *",
        catchup=False,
        max_active_runs=1,  # windows are consumed in order
        tags=["genius", "example", "stream"],
        doc_md=__doc__,
    ) as stream_dag:
        publish = GeniusSpoutOperator(
            task_id="publish",
            task_class="airflow_genius.examples.tasks:QuoteStreamSpout",
            method="publish",
            method_kwargs={"count": 20},
            output_uri=f"{base}?stream={PREFIX}_raw",
        )
        enrich = GeniusBoltOperator(
            task_id="enrich",
            task_class="airflow_genius.examples.tasks:Enrich",
            method="process",
            input_uri=f"{base}?stream={PREFIX}_raw&group=enrich",
            output_uri=f"{base}?stream={PREFIX}_enriched",
            max_records=500,
            max_seconds=WINDOW_SECONDS,
        )
        publish >> enrich
    globals()[stream_dag.dag_id] = stream_dag
