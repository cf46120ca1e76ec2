"""Data managers of the genius core: batch folders in and committed per-run partitions out.

>>> from airflow_genius.core.data import BatchInput, BatchOutput, PartitionKey, read_manifest
>>> part = PartitionKey("etl", "clean", "manual__1")
>>> BatchOutput("s3://bucket/out", partition=part).location
's3://bucket/out/etl/clean/_unpartitioned/manual__1/'

No Airflow imports here, and boto3 is imported only when an S3 location is actually used.
"""

from __future__ import annotations

from airflow_genius.core.data.batch import BatchInput, BatchOutput, SyncStats, is_hidden
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
    "parse_data_uri",
    "read_manifest",
]
