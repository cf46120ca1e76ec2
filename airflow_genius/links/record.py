"""The "Genius record" button: from a genius task instance to its run record in the Genius dashboard.

Airflow 3 evaluates :meth:`GeniusRecordLink.get_link` in the worker when the task instance finishes
(success or failure) and keeps the URL in the XCom ``_link_GeniusRecordLink``; the API server only
reads that XCom. The URL points at the dashboard plugin (:mod:`airflow_genius.plugins.dashboard`):
absolute when ``[api] base_url`` is set, else a path on the same origin as the UI.

Usage (an operator lists it)::

    class GeniusTaskOperator(GeniusOperatorMixin):
        operator_extra_links = (GeniusOutputLink(), GeniusRecordLink())

>>> record_url("etl", "count", "manual__1", 2, base_url="http://airflow:8080")
'http://airflow:8080/genius/record?dag_id=etl&task_id=count&run_id=manual__1&map_index=2'
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: Mount path of the dashboard app (``airflow_genius.plugins.dashboard`` mounts it here; defined here so
#: that workers need not import FastAPI to build a link).
DASHBOARD_PREFIX = "/genius"


def record_url(dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, base_url: str = "") -> str:
    """URL of one run record's page in the dashboard (``base_url``: ``[api] base_url``, may be empty)."""
    query = urlencode({"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "map_index": map_index})
    return f"{base_url.rstrip('/')}{DASHBOARD_PREFIX}/record?{query}"


def _base_url() -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback="") or "")


class GeniusRecordLink(BaseOperatorLink):
    """Extra link from a genius task instance to its run record (status, history, error, metrics)."""

    name = "Genius record"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return record_url(
            ti_key.dag_id, ti_key.task_id, ti_key.run_id, ti_key.map_index, base_url=_base_url()
        )
