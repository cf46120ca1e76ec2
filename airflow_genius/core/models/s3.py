"""Models on S3: one prefix per version, its files, and a manifest written last.

Layout under ``s3://bucket/prefix``::

    <prefix>/<name>/<version>/_claim.json      who took this version id (conditional put)
    <prefix>/<name>/<version>/files/<relpath>  the model's files, as in the saved folder
    <prefix>/<name>/<version>/manifest.json    files, sizes, sha256, metadata, created_at — LAST

A version is *complete* when its manifest exists; a prefix without one (a crashed or running save) is
invisible to ``list_versions`` and ``load``. Files live under ``files/`` so a model may contain its own
``manifest.json`` without clashing with ours.

Version ids (``v000001``, ``v000002``, …) are taken with a conditional put (``If-None-Match: *``) on the
claim key: two writers racing for the same id cannot both win, the loser moves on to the next id. AWS S3
and moto honour the condition; an S3-compatible store that ignores it leaves us with a single-writer
assumption (two concurrent saves of the same model could then pick the same id). Ids of abandoned
claims are never reused.

>>> mm = S3ModelManager.from_uri("s3://my-bucket/models")    # doctest: +SKIP
>>> mm.save("out/model", "bert", {"accuracy": 0.91})          # doctest: +SKIP
'v000001'
"""

from __future__ import annotations

import json
import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from airflow_genius.core.clock import parse_time, utcnow
from airflow_genius.core.data import make_s3_client, s3_error_code, s3_not_found
from airflow_genius.core.errors import missing_extra
from airflow_genius.core.models.base import (
    LATEST,
    LocalFile,
    ModelError,
    ModelIntegrityError,
    ModelManager,
    ModelNotFoundError,
    ModelVersion,
    format_version,
    sha256_files,
    write_under,
)
from airflow_genius.core.paths import safe_relpath
from airflow_genius.core.uris import split_uri

MANIFEST = "manifest.json"
CLAIM = "_claim.json"
FILES = "files/"
MANIFEST_FORMAT = "airflow-genius/model-manifest"
MANIFEST_FORMAT_VERSION = 1

#: How many ids a save tries before giving up when other writers keep winning the race.
MAX_CLAIM_ATTEMPTS = 100

_VERSION_DIR = re.compile(r"v([0-9]+)")


def _boto3() -> Any:
    try:
        import boto3
        import boto3.s3.transfer
    except ImportError:
        raise missing_extra("boto3", "aws") from None
    return boto3


def _transfer_errors() -> tuple[type[Exception], ...]:
    """What a failed S3 call or transfer raises (boto3 is installed once this is called)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError
    from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3UploadFailedError

    return (
        ClientError,
        BotoCoreError,
        Boto3Error,
        RetriesExceededError,
        S3DownloadFailedError,
        S3UploadFailedError,
    )


class S3ModelManager(ModelManager):
    """Versioned model folders under ``s3://bucket/prefix`` (see the module docstring for the layout).

    Transfers go through boto3's transfer manager (concurrent, multipart above ``multipart_threshold``);
    ``load`` checks every file's size and SHA-256 against the manifest before handing the folder over.
    Endpoint, region and credentials come from the usual boto3 sources (``AWS_ENDPOINT_URL``,
    ``AWS_DEFAULT_REGION``, profiles, instance roles) or from the ``client`` you pass.

    >>> mm = S3ModelManager("my-bucket", "models")                            # doctest: +SKIP
    >>> [v.version for v in mm.list_versions("bert")]                         # doctest: +SKIP
    ['v000001', 'v000002']
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        max_concurrency: int = 8,
        multipart_threshold: int = 8 * 1024 * 1024,
        multipart_chunksize: int = 8 * 1024 * 1024,
    ) -> None:
        boto3 = _boto3()
        if not bucket:
            raise ModelError("S3 model store needs a bucket: expected s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = safe_relpath(prefix.strip("/")) if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else make_s3_client(max_concurrency)
        self.max_concurrency = max(1, max_concurrency)
        self._transfer_config = boto3.s3.transfer.TransferConfig(
            max_concurrency=self.max_concurrency,
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            use_threads=True,
        )
        self._errors = _transfer_errors()

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> S3ModelManager:
        """``s3://bucket[/prefix]`` → manager; query strings are refused (nothing to configure there)."""
        parts = split_uri(uri)
        if parts.scheme.lower() != "s3":
            raise ModelError(f"not an S3 model URI: {uri!r}; expected s3://bucket/prefix")
        if not parts.netloc:
            raise ModelError(f"S3 model URI {uri!r} has no bucket; expected s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ModelError(f"S3 model URI {uri!r} must not have a query or fragment")
        return cls(parts.netloc, parts.path, **options)

    # -- keys -----------------------------------------------------------------------------------------

    def _model_prefix(self, name: str) -> str:
        return f"{self.prefix}/{name}/" if self.prefix else f"{name}/"

    def _version_prefix(self, name: str, version: str) -> str:
        return f"{self._model_prefix(name)}{version}/"

    def _transfer_manager(self) -> Any:
        from boto3.s3.transfer import create_transfer_manager

        return create_transfer_manager(self.client, self._transfer_config)

    # -- listing ----------------------------------------------------------------------------------------

    def _version_numbers(self, name: str) -> list[int]:
        """Every version id with anything under it (complete or not), ascending."""
        numbers: set[int] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=self._model_prefix(name), Delimiter="/"
            ):
                for common in page.get("CommonPrefixes", []):
                    segment = common["Prefix"][len(self._model_prefix(name)) :].rstrip("/")
                    match = _VERSION_DIR.fullmatch(segment)
                    if match:
                        numbers.add(int(match.group(1)))
        except self._errors as exc:
            raise ModelError(f"cannot list {self.uri}/{name}: {exc}") from None
        return sorted(numbers)

    def _read_manifest(self, name: str, version: str) -> dict[str, Any] | None:
        """The manifest of a version, or None if it is missing (the version is incomplete)."""
        key = self._version_prefix(name, version) + MANIFEST
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self._errors as exc:
            if s3_not_found(exc):
                return None
            raise ModelError(f"cannot read s3://{self.bucket}/{key}: {exc}") from None
        try:
            manifest = json.loads(body)
        except ValueError:
            raise ModelIntegrityError(f"s3://{self.bucket}/{key} is not valid JSON") from None
        if (
            not isinstance(manifest, dict)
            or manifest.get("format") != MANIFEST_FORMAT
            or manifest.get("name") != name
            or manifest.get("version") != version
            or not isinstance(manifest.get("files"), list)
        ):
            raise ModelIntegrityError(f"s3://{self.bucket}/{key} is not a manifest of {name} {version}")
        return manifest

    def _to_version(self, manifest: dict[str, Any]) -> ModelVersion:
        files = manifest["files"]
        return ModelVersion(
            name=manifest["name"],
            version=manifest["version"],
            created_at=parse_time(manifest.get("created_at")),
            metadata=dict(manifest.get("metadata") or {}),
            files=tuple(str(f["path"]) for f in files),
            size=sum(int(f["size"]) for f in files),
            location=f"s3://{self.bucket}/{self._version_prefix(manifest['name'], manifest['version'])}",
        )

    def _list_versions(self, name: str) -> list[ModelVersion]:
        versions = [format_version(n) for n in self._version_numbers(name)]
        if not versions:
            return []
        # One GET per version; done concurrently because listing is what UIs and `latest` callers wait on.
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(versions))) as pool:
            manifests = list(pool.map(lambda v: self._read_manifest(name, v), versions))
        return [self._to_version(m) for m in manifests if m is not None]

    # -- save ---------------------------------------------------------------------------------------------

    def _claim(self, name: str) -> str:
        """Take the next free version id with a conditional put; retry past ids other writers took."""
        existing = self._version_numbers(name)
        number = (existing[-1] if existing else 0) + 1
        body = json.dumps(
            {"claimed_at": utcnow().isoformat(), "host": socket.gethostname(), "pid": os.getpid()}
        ).encode()
        for _ in range(MAX_CLAIM_ATTEMPTS):
            version = format_version(number)
            key = self._version_prefix(name, version) + CLAIM
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/json"
                )
                return version
            except self._errors as exc:
                code = s3_error_code(exc)
                if code == "PreconditionFailed":  # another writer owns this id: try the next one
                    number += 1
                    continue
                if code == "ConditionalRequestConflict":  # concurrent conditional write: same id again
                    continue
                raise ModelError(f"cannot claim s3://{self.bucket}/{key}: {exc}") from None
        raise ModelError(f"could not claim a version id for {name!r} after {MAX_CLAIM_ATTEMPTS} attempts")

    def _save(self, root: Path, files: list[LocalFile], name: str, metadata: dict[str, Any]) -> str:
        version = self._claim(name)
        prefix = self._version_prefix(name, version)
        try:
            with self._transfer_manager() as manager:
                futures = [
                    manager.upload(str(f.path), self.bucket, prefix + FILES + f.relpath) for f in files
                ]
                for future in futures:
                    future.result()
        except self._errors as exc:
            raise ModelError(f"upload of {name} {version} to {self.uri} failed: {exc}") from None
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_FORMAT_VERSION,
            "name": name,
            "version": version,
            "created_at": utcnow().isoformat(),
            "metadata": metadata,
            "size": sum(f.size for f in files),
            # each file's sha256 was computed by save() before the upload
            "files": [{"path": f.relpath, "size": f.size, "sha256": f.sha256} for f in files],
        }
        try:
            # Written last and only once: its presence is what makes the version visible.
            self.client.put_object(
                Bucket=self.bucket,
                Key=prefix + MANIFEST,
                Body=json.dumps(manifest, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except self._errors as exc:
            raise ModelError(f"cannot commit {name} {version} to {self.uri}: {exc}") from None
        return version

    # -- load ---------------------------------------------------------------------------------------------

    def _resolve(self, name: str, version: str) -> dict[str, Any]:
        if version != LATEST:
            manifest = self._read_manifest(name, version)
            if manifest is None:
                raise ModelNotFoundError(f"model {name!r} has no complete version {version} in {self.uri}")
            return manifest
        for number in reversed(self._version_numbers(name)):  # newest first: usually one GET
            manifest = self._read_manifest(name, format_version(number))
            if manifest is not None:
                return manifest
        raise ModelNotFoundError(f"model {name!r} has no complete version in {self.uri}")

    def _load_into(self, name: str, version: str, dest: Path) -> None:
        manifest = self._resolve(name, version)
        version = manifest["version"]
        prefix = self._version_prefix(name, version)
        entries = [(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in manifest["files"]]
        # Paths come from a stored manifest: each one is checked against `dest` before anything is written.
        targets = [write_under(dest, path) for path, _, _ in entries]
        try:
            with self._transfer_manager() as manager:
                futures = [
                    manager.download(self.bucket, prefix + FILES + path, str(target))
                    for (path, _, _), target in zip(entries, targets, strict=True)
                ]
                for future in futures:
                    future.result()
        except self._errors as exc:
            raise ModelError(f"download of {name} {version} from {self.uri} failed: {exc}") from None
        digests = sha256_files(targets, self.max_concurrency)
        for (path, size, expected), target, actual in zip(entries, targets, digests, strict=True):
            if target.stat().st_size != size or actual != expected:
                raise ModelIntegrityError(
                    f"{name} {version}: {path!r} does not match its manifest "
                    f"(size {target.stat().st_size} vs {size}, sha256 {actual[:12]}… vs {expected[:12]}…)"
                )
