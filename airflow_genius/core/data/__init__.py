"""Data managers of the genius core: batch folders in and committed per-run partitions out.

>>> from airflow_genius.core.data import BatchInput, BatchOutput, PartitionKey, read_manifest
>>> part = PartitionKey("etl", "clean", "manual__1")
>>> BatchOutput("s3://bucket/out", partition=part).location
's3://bucket/out/etl/clean/_unpartitioned/manual__1/'

No Airflow imports here, and boto3 is imported only when an S3 location is actually used. Other stores
of S3 objects (the XCom backend) share the client settings through :func:`make_s3_client` and
:func:`s3_not_found` / :func:`s3_error_code`.
"""

from __future__ import annotations

from airflow_genius.core.data._s3 import error_code as s3_error_code
from airflow_genius.core.data._s3 import is_not_found as s3_not_found
from airflow_genius.core.data._s3 import make_client as make_s3_client
from airflow_genius.core.data.batch_input import BatchInput, SyncStats, is_hidden
from airflow_genius.core.data.batch_output import BatchOutput
from airflow_genius.core.data.locations import DataError, DataLocation, DataURIError, parse_data_uri
from airflow_genius.core.data.manifest import (
    DEFAULT_SCHEME,
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    PartitionKey,
    read_manifest,
)

__all__ = [
    "DEFAULT_SCHEME",
    "MANIFEST_NAME",
    "BatchInput",
    "BatchOutput",
    "DataError",
    "DataLocation",
    "DataURIError",
    "Manifest",
    "ManifestFile",
    "PartitionKey",
    "SyncStats",
    "is_hidden",
    "make_s3_client",
    "parse_data_uri",
    "read_manifest",
    "s3_error_code",
    "s3_not_found",
]
