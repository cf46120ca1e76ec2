"""The "Genius output" button: where a genius task committed its output partition.

Airflow 3 evaluates :meth:`GeniusOutputLink.get_link` in the worker when the task instance finishes and
keeps the URL in the XCom ``_link_GeniusOutputLink``; the API server only reads that XCom. The operator
remembers the committed location (:meth:`GeniusOutputLink.persist`) so that ``get_link`` needs no XCom
lookup — a failed task, which committed nothing, gets an empty link instead of an "XCom not found" error
in its log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

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

    #: Attribute of the operator instance that holds the committed location's URL.
    attribute = "genius_output_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return str(getattr(operator, self.attribute, "") or "")

    @classmethod
    def persist(cls, context: Any, location: str) -> None:
        """Remember the link for this task instance (called by the operator after the commit); the task
        runner stores it when the task instance finishes."""
        setattr(context["task"], cls.attribute, output_url(location))
