"""The "Genius output" button: where a genius task committed its output partition.

Airflow 3's API server reads a link from the XCom key ``_link_GeniusOutputLink``; the operator pushes
it when the output is committed (:meth:`GeniusOutputLink.persist`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def output_url(location: str) -> str:
    """A browsable URL for an output location: the S3 console for ``s3://``, else the location itself.

    >>> output_url("s3://lake/counts/etl/count/2024/05/06/manual__1/")
    'https://s3.console.aws.amazon.com/s3/buckets/lake?prefix=counts/etl/count/2024/05/06/manual__1/'
    """
    parts = urlsplit(location)
    if parts.scheme == "s3":
        return f"https://s3.console.aws.amazon.com/s3/buckets/{parts.netloc}?prefix={quote(parts.path.lstrip('/'))}"
    return location


class GeniusOutputLink(BaseOperatorLink):
    """Extra link from a genius task instance to its committed output partition."""

    name = "Genius output"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(key=self.xcom_key, ti_key=ti_key)
        return str(value) if value else ""

    @classmethod
    def persist(cls, context: Any, location: str) -> None:
        """Store the link for this task instance (called by the operator after the commit)."""
        context["ti"].xcom_push(key=cls().xcom_key, value=output_url(location))
