"""Thin S3 helpers shared by batch input and output; boto3 is imported lazily.

Other packages use them through :mod:`airflow_genius.core.data` (``make_s3_client``, ``s3_not_found``).

Bulk transfers always go through boto3's managed transfer layer (``s3transfer``'s TransferManager:
concurrent, multipart above a threshold, retried) and never through hand-written put/get loops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_genius.core.errors import GeniusError, missing_extra

#: Files at or above this size are transferred in parts (boto3's default, spelled out for readers).
DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: Parallel requests per transfer manager.
DEFAULT_MAX_CONCURRENCY = 10
#: DeleteObjects accepts at most this many keys per call.
_DELETE_BATCH = 1000


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, size and ETag (quotes kept, as S3 returns it)."""

    key: str
    size: int
    etag: str


#: Seconds to connect, and to wait for each read of a reply, before an S3 attempt counts as failed.
S3_CONNECT_TIMEOUT = 5.0
S3_READ_TIMEOUT = 12.0


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is installed in the test rig
        raise missing_extra("boto3", "aws") from exc
    return boto3


def make_client(max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> Any:
    """An S3 client whose HTTP pool is large enough for ``max_concurrency`` parallel requests.

    Endpoint, region and credentials come from boto3's usual chain (``AWS_ENDPOINT_URL`` included).
    """
    boto3 = _boto3()
    from botocore.config import Config

    config = Config(
        # botocore's pool defaults to 10 connections: a larger transfer concurrency would only queue.
        max_pool_connections=max(10, max_concurrency + 2),
        # Bounded: an endpoint that accepts and never answers fails in about 2 x 12 s, not never.
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": 2},
    )
    try:
        return boto3.session.Session().client("s3", config=config)
    except Exception as exc:  # botocore's ProfileNotFound, NoRegionError...: a configuration problem
        raise GeniusError(f"cannot make an S3 client: {' '.join(str(exc).split())}") from None


def transfer_config(
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY, multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
) -> Any:
    """A boto3 ``TransferConfig`` with the given concurrency and multipart threshold."""
    from boto3.s3.transfer import TransferConfig  # boto3 presence checked by make_client/_boto3

    _boto3()
    return TransferConfig(
        max_concurrency=max_concurrency,
        multipart_threshold=multipart_threshold,
        multipart_chunksize=max(multipart_threshold, 5 * 1024 * 1024),
    )


def transfer_manager(client: Any, config: Any) -> Any:
    """A transfer manager (use it as a context manager: leaving it waits for, or cancels, transfers)."""
    _boto3()
    from boto3.s3.transfer import create_transfer_manager

    return create_transfer_manager(client, config)


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[S3Object]:
    """Every object under ``prefix`` (which should end with ``/`` unless it is ``""``)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            yield S3Object(key=item["Key"], size=int(item["Size"]), etag=str(item.get("ETag", "")))


def delete_keys(client: Any, bucket: str, keys: Sequence[str]) -> None:
    """Delete ``keys`` in batches; any per-key failure is raised, never ignored."""
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = keys[start : start + _DELETE_BATCH]
        response = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise OSError(
                f"could not delete {len(errors)} object(s) in s3://{bucket}/, first {first.get('Key')!r}: "
                f"{first.get('Code')} {first.get('Message')}"
            )


def get_bytes(client: Any, bucket: str, key: str) -> bytes | None:
    """The body of one small object, or ``None`` if it does not exist."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return response["Body"].read()


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(exc: BaseException) -> bool:
    """True if ``exc`` is S3's answer that the object does not exist (GET, HEAD or a download)."""
    return error_code(exc) in ("404", "NoSuchKey", "NotFound")


def changed_while_downloading(exc: BaseException) -> bool:
    """True if a download failed because the object no longer has the listed ETag (If-Match failed)."""
    if error_code(exc) in ("PreconditionFailed", "412"):
        return True
    from s3transfer.exceptions import S3DownloadFailedError

    # s3transfer turns the PreconditionFailed of a ranged GET into this error (message is its only clue).
    return isinstance(exc, S3DownloadFailedError) and "expected ETag" in str(exc)


class KnownObjectSubscriber:
    """s3transfer subscriber that hands over the listed size and ETag of an object being downloaded.

    This saves one HeadObject per file. With the ETag known, s3transfer sends ``If-Match`` on every
    ranged GET of a multipart download, so the parts of a big file all come from the listed version
    (never a torn mix of two). A small object (one plain GET, which s3transfer does not pin) replaced
    between listing and download yields the newer bytes under the older ETag in the sync index: the next
    sync sees another ETag and downloads it again, so the mirror never stays stale.
    """

    def __init__(self, size: int, etag: str) -> None:
        self._size = size
        self._etag = etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)
        if self._etag:
            future.meta.provide_object_etag(self._etag)
