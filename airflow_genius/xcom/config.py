"""Configuration of the genius XCom backend: the ``[genius]`` options and their defaults.

This module imports nothing from Airflow: ``get_provider_info()`` embeds :data:`XCOM_CONFIG` and Airflow
calls that early, while it is still discovering providers.

Usage (in ``provider_info.py``)::

    from airflow_genius.xcom.config import XCOM_CONFIG

    def get_provider_info() -> dict:
        return {"package-name": "airflow-provider-genius", ..., "config": XCOM_CONFIG}

and in ``airflow.cfg`` (or ``AIRFLOW__GENIUS__XCOM_PATH=s3://bucket/xcom`` etc.)::

    [core]
    xcom_backend = airflow_genius.xcom.GeniusXComBackend

    [genius]
    xcom_path = s3://my-bucket/xcom
    xcom_threshold_bytes = 65536
    xcom_compression = gzip
"""

from __future__ import annotations

from typing import Any

from airflow_genius.core.uris import DATA_CREDENTIALS_HINT, redact, secret_problem

#: Section of ``airflow.cfg`` (``AIRFLOW__GENIUS__...`` environment variables) the backend reads.
SECTION = "genius"

#: Built-in defaults, used when the provider's config is not registered (e.g. a bare ``pip install``).
#: ``{AIRFLOW_HOME}`` is expanded the way Airflow expands its own defaults.
DEFAULT_XCOM_PATH = "file://{AIRFLOW_HOME}/genius/xcom"
DEFAULT_THRESHOLD_BYTES = 65536
DEFAULT_COMPRESSION = "gzip"
# Level 1 is ~2.5x faster than zlib's default 6 on JSON and stores only ~10% more bytes.
DEFAULT_COMPRESSION_LEVEL = 1
#: Accepted values of ``xcom_compression``.
COMPRESSIONS = ("gzip", "zlib", "none")

_VERSION_ADDED = "0.1.0"


def check_xcom_path(path: str) -> None:
    """Refuse an ``xcom_path`` that embeds credentials (user info or a secret query parameter): it is
    shown in errors and logs. ``ValueError``, one line naming the option, the path redacted.

    >>> check_xcom_path("s3://bucket/xcom")
    >>> check_xcom_path("s3://bucket/xcom?aws_secret_access_key=abc")
    Traceback (most recent call last):
    ...
    ValueError: [genius] xcom_path must not embed credentials (query parameter 'aws_secret_access_key'); pass them through the environment (AWS variables, a profile or an instance role), got 's3://bucket/xcom?aws_secret_access_key=***'
    """
    problem = secret_problem(path, DATA_CREDENTIALS_HINT, what="credentials")
    if problem:
        raise ValueError(f"[{SECTION}] xcom_path {problem}, got {redact(path)!r}")


#: The ``config`` fragment of ``get_provider_info()`` (same shape as a provider.yaml ``config`` block).
XCOM_CONFIG: dict[str, Any] = {
    SECTION: {
        "description": "Options of the airflow-genius provider. The ``xcom_*`` options configure the genius "
        "XCom backend (``[core] xcom_backend = airflow_genius.xcom.GeniusXComBackend``), which keeps large "
        "XCom values in an object store and only a small reference in Airflow's metadata database.\n",
        "options": {
            "xcom_path": {
                "description": "Where offloaded XCom values are stored, as a URL: ``file:///absolute/path`` "
                "or ``s3://bucket/prefix``. S3 credentials and endpoint come from boto3's default chain "
                "(environment, shared config, instance role; ``AWS_ENDPOINT_URL`` is honoured). Objects are "
                "laid out as ``<dag_id>/<run_id>/<task_id>/<map_index>/<key>.xcom`` below this path; "
                "identifiers are sanitised and can never leave it.\n",
                "version_added": _VERSION_ADDED,
                "type": "string",
                "example": "s3://my-bucket/airflow/xcom",
                "default": DEFAULT_XCOM_PATH,
            },
            "xcom_threshold_bytes": {
                "description": "Values whose compact JSON encoding is larger than this many bytes are "
                "offloaded to ``xcom_path``; smaller ones are stored in the database exactly as Airflow's "
                "default backend stores them. ``0`` offloads every value, ``-1`` never offloads.\n",
                "version_added": _VERSION_ADDED,
                "type": "integer",
                "example": "1048576",
                "default": str(DEFAULT_THRESHOLD_BYTES),
            },
            "xcom_compression": {
                "description": "Compression of offloaded values: ``gzip`` (readable with ``zcat``), "
                "``zlib`` or ``none``. Values written with another setting stay readable: each reference "
                "records its own compression.\n",
                "version_added": _VERSION_ADDED,
                "type": "string",
                "example": "none",
                "default": DEFAULT_COMPRESSION,
            },
            "xcom_compression_level": {
                "description": "Compression level from 1 (fastest) to 9 (smallest) for ``gzip`` and "
                "``zlib``.\n",
                "version_added": _VERSION_ADDED,
                "type": "integer",
                "example": "6",
                "default": str(DEFAULT_COMPRESSION_LEVEL),
            },
        },
    }
}
