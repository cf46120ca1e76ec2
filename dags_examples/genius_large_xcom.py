"""A genius task returns a large result; a downstream task consumes it through XCom.

With the genius XCom backend configured (``[core] xcom_backend =
airflow_genius.xcom.GeniusXComBackend``), the vectors go to ``[genius] xcom_path`` (a folder or an
``s3://`` prefix), compressed, and Airflow's database keeps only a small reference. Without it, Airflow
stores the whole value in its database — fine for small values, not for hundreds of megabytes.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from airflow_genius.operators.local import GeniusTaskOperator


@dag(
    dag_id="genius_large_xcom",
    schedule=None,
    catchup=False,
    tags=["genius", "example"],
    render_template_as_native_obj=True,
    params={
        "rows": Param(20_000, type="integer", minimum=1, description="Vectors to produce (64 floats each)")
    },
    doc_md=__doc__,
)
def genius_large_xcom() -> None:
    vectors = GeniusTaskOperator(
        task_id="embed",
        task_class="airflow_genius.examples.tasks:Vectors",
        method="embed",
        method_kwargs={"rows": "{{ params.rows }}", "dim": 64},
    )

    @task
    def summarize(rows: list[list[float]]) -> dict[str, Any]:
        return {
            "rows": len(rows),
            "dim": len(rows[0]) if rows else 0,
            "checksum": round(sum(map(sum, rows)), 3),
        }

    summarize(vectors.output)


genius_large_xcom()
