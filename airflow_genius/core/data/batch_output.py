"""Batch output: the partition of one run, staged and committed atomically (:class:`BatchOutput`).

The output root is a folder, local (``/abs/path``, ``file:///abs/path``) or on S3 (``s3://bucket/prefix``).

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> out = BatchOutput(root, partition=PartitionKey("etl", "clean", "manual__1"))
>>> _ = out.save({"rows": 3}, "summary.json")
>>> out.commit().paths
['summary.json']

**Commit protocol.** The task writes into a private staging folder (``out.path``). ``commit()``
hashes every file into a :class:`Manifest` and publishes the partition so that readers never see a
half-written one:

- *local*: ``_SUCCESS`` is written into staging, then the partition is published by renames (the previous
  partition is moved aside to ``<uuid>.replaced-N``, staging is renamed into place, the old one is
  deleted). Staging therefore lives on the target's filesystem: ``<root>/.genius-staging/<uuid>/`` by
  default.
- *S3* (the usual committer pattern): delete the old ``_SUCCESS``, upload every file with boto3's transfer
  manager, delete keys under the partition that the new manifest does not list, write ``_SUCCESS`` last.
  **Readers must trust only the files listed in the ``_SUCCESS`` manifest** (``BatchInput(...,
  committed_only=True)`` does that); while a commit is in flight the prefix has no ``_SUCCESS``.

Either way a re-run of the same run replaces its partition exactly (idempotent); a run that fails or
aborts before ``commit()`` leaves the previously committed partition untouched. One attempt at a time
should commit a given partition (Airflow runs one try of a task instance at a time).

**Leftovers of killed writers.** A writer holds a ``flock`` on ``<uuid>.lock`` next to its staging folder
until it publishes or aborts; a writer killed with SIGKILL leaves its staging (and maybe a
``.replaced-N`` copy) behind, with the lock released. Every successful ``commit()`` then sweeps the
leftovers of dead writers in the staging folder it used that are older than ``staging_grace`` seconds
(default ``GENIUS_STAGING_GRACE_SECONDS`` or one hour); ``genius data sweep ROOT`` does the same on
demand. See :mod:`airflow_genius.core.data.sweep`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import mimetypes
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_genius.core.data import _s3
from airflow_genius.core.data.locations import DataError, DataLocation, parse_data_uri
from airflow_genius.core.data.manifest import (
    DEFAULT_SCHEME,
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    PartitionKey,
    partition_segments,
)
from airflow_genius.core.data.sweep import (
    STAGING_DIR,
    StagingClaim,
    default_s3_staging_dir,
    resolve_grace,
    sweep_staging,
)
from airflow_genius.core.errors import GeniusError, PathEscapeError
from airflow_genius.core.paths import safe_join, safe_relpath

log = logging.getLogger(__name__)
_HASH_CHUNK = 1024 * 1024
#: How many times a local publish retries when another writer replaces the partition concurrently.
_PUBLISH_ATTEMPTS = 5


class BatchOutput:
    """The output partition of one run, written in staging and published atomically by :meth:`commit`.

    >>> part = PartitionKey("etl", "clean", run_id, map_index=-1, logical_date=logical_date)  # doctest: +SKIP
    >>> with BatchOutput("s3://bucket/out", partition=part) as out:                          # doctest: +SKIP
    ...     out.save([{"id": 1}], "rows.json")          # JSON text
    ...     (out.path / "blob.bin").write_bytes(data)   # or write into out.path directly

    Leaving the ``with`` block commits; an exception aborts. The partition is
    ``<root>/<dag_id>/<task_id>/<logical_date.strftime(scheme)>/<run_id>[/map_index=N]/`` (``_unpartitioned``
    without a logical date); :mod:`~airflow_genius.core.data.manifest` says how identifiers become folder
    names. ``staging_root`` overrides where staging folders go; for a local root it must be on the same
    filesystem (publish is a rename). ``staging_grace`` is how old (seconds) a dead writer's leftovers
    in that staging folder must be before a commit sweeps them (default ``GENIUS_STAGING_GRACE_SECONDS``,
    else 3600); live writers' staging is never swept.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        partition: PartitionKey,
        scheme: str = DEFAULT_SCHEME,
        staging_root: str | os.PathLike[str] | None = None,
        *,
        max_concurrency: int = _s3.DEFAULT_MAX_CONCURRENCY,
        multipart_threshold: int = _s3.DEFAULT_MULTIPART_THRESHOLD,
        client: Any = None,
        staging_grace: float | None = None,
    ) -> None:
        if not isinstance(partition, PartitionKey):
            raise DataError(f"partition must be a PartitionKey, got {type(partition).__name__}")
        self.root: DataLocation = parse_data_uri(uri)
        self.partition = partition
        self.scheme = scheme
        #: ``<dag_id>/<task_id>/<partition>/<run_id>[/map_index=N]`` — validated here, before any write.
        self.relative_path = partition.relative_path(scheme)
        self._partition_label = "/".join(partition_segments(partition.logical_date, scheme))
        self._target = self.root.child(self.relative_path)
        self._staging_root = Path(staging_root).absolute() if staging_root is not None else None
        self._max_concurrency = max_concurrency
        self._multipart_threshold = multipart_threshold
        self._client = client
        self._staging_grace = resolve_grace(staging_grace)
        self._staging: Path | None = None
        self._claim: StagingClaim | None = None
        self._marker_written = False
        self._state = "open"
        self.manifest: Manifest | None = None

    def __repr__(self) -> str:
        return f"BatchOutput({self.location!r}, {self._state})"

    def __enter__(self) -> BatchOutput:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    @property
    def location(self) -> str:
        """Final URI of this run's partition, with a trailing ``/`` (``file:///…/`` or ``s3://…/``)."""
        return self._target.uri

    @property
    def committed(self) -> bool:
        return self._state == "committed"

    @property
    def path(self) -> Path:
        """The local staging folder the task writes into (created on first use)."""
        return self._ensure_staging()

    def _ensure_staging(self) -> Path:
        if self._state != "open":
            raise DataError(f"output {self.location} is already {self._state}; use a new BatchOutput")
        if self._staging is not None:
            return self._staging
        local_root = self.root.path
        if self.root.is_s3:
            base = self._staging_root or default_s3_staging_dir()
        else:
            assert local_root is not None
            local_root.mkdir(parents=True, exist_ok=True)
            base = self._staging_root or local_root / STAGING_DIR
        base.mkdir(parents=True, exist_ok=True)
        # The claim's flocked lock file tells sweeps that this staging folder is alive.
        claim = StagingClaim.create(
            base.resolve(),
            target=self.relative_path,
            root=str(local_root.resolve()) if local_root is not None else "",
        )
        staging = claim.path
        if local_root is not None and os.stat(staging).st_dev != os.stat(local_root).st_dev:
            staging.rmdir()
            claim.release()
            raise DataError(
                f"staging_root {str(base)!r} is not on the filesystem of {str(local_root)!r}; "
                "publishing is a rename, so staging must live on the same filesystem"
            )
        self._claim = claim
        self._staging = staging
        return staging

    def save(self, data: bytes | bytearray | memoryview | str | Any, filename: str) -> Path:
        """Write ``data`` to ``filename`` (relative, may contain folders) in staging and return its path.

        bytes are written as is, str as UTF-8, anything else as JSON text (dict, list, numbers…).
        """
        staging = self._ensure_staging()
        relative = safe_relpath(filename)
        if relative == MANIFEST_NAME:
            raise DataError(f"{MANIFEST_NAME!r} is reserved for the commit marker; choose another filename")
        target = safe_join(staging, relative)
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        elif isinstance(data, str):
            payload = data.encode("utf-8")
        else:
            try:
                payload = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"cannot save {type(data).__name__} as {relative!r}: pass bytes, str or a "
                    f"JSON-serialisable value ({exc})"
                ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        return target

    def commit(self) -> Manifest:
        """Publish the staged files as this run's partition, replacing a previous commit of it.

        On failure the output stays open and ``commit()`` may be called again (the protocol is
        idempotent); the partition then reads as not committed (S3) or as the previous commit (local).
        """
        staging = self._ensure_staging()
        if self._marker_written:  # a previous commit() failed after writing it: not a user file
            (staging / MANIFEST_NAME).unlink(missing_ok=True)
        # Local files are fsynced while hashed: after a power loss a published partition must not
        # point at data blocks that never reached the disk. S3 uploads need no such care.
        durable = not self.root.is_s3
        entries = [
            ManifestFile(path=rel, size=full.stat().st_size, sha256=_sha256(full, fsync=durable))
            for rel, full in _collect_staging(staging)
        ]
        manifest = Manifest(
            run=self.partition, partition=self._partition_label, location=self.location, files=tuple(entries)
        )
        if self.root.is_s3:
            self._commit_s3(staging, manifest)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            self._commit_local(staging, manifest)
        self._staging = None
        self._state = "committed"
        self.manifest = manifest
        self._release_and_sweep(staging.parent)
        return manifest

    def _release_claim(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def _release_and_sweep(self, base: Path) -> None:
        """Drop this writer's lock, then sweep what dead writers left in the same staging folder.

        The partition is committed already: a sweep that fails is logged, never raised.
        """
        self._release_claim()
        try:
            report = sweep_staging(base, grace=self._staging_grace, root=self.root.path)
        except (OSError, GeniusError) as exc:
            log.warning("could not sweep staging leftovers in %s: %s", base, exc)
            return
        if report.removed or report.restored:
            log.info("staging %s: %s", base, report.summary())

    def _commit_local(self, staging: Path, manifest: Manifest) -> None:
        marker = staging / MANIFEST_NAME
        with marker.open("w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        self._marker_written = True
        target = self._target.path
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        _publish_by_rename(staging, target)
        _fsync_dir(target.parent)

    def _commit_s3(self, staging: Path, manifest: Manifest) -> None:
        client = self._client or _s3.make_client(self._max_concurrency)
        bucket = self._target.bucket
        prefix = self._target.prefix + "/"
        marker_key = prefix + MANIFEST_NAME
        # 1. Un-commit first: until the new marker is written, readers see "not committed", never a mix.
        client.delete_object(Bucket=bucket, Key=marker_key)
        # 2. Upload through the transfer manager: concurrent, multipart above the threshold.
        config = _s3.transfer_config(self._max_concurrency, self._multipart_threshold)
        with _s3.transfer_manager(client, config) as manager:
            futures = []
            for entry in manifest.files:
                content_type = mimetypes.guess_type(entry.path)[0] or "application/octet-stream"
                futures.append(
                    manager.upload(
                        str(staging / entry.path),
                        bucket,
                        prefix + entry.path,
                        extra_args={"ContentType": content_type},
                    )
                )
            for future in futures:
                future.result()
        # 3. Drop what an earlier attempt left that this one did not write: a re-run replaces, exactly.
        wanted = {prefix + path for path in manifest.paths}
        stale = [o.key for o in _s3.list_objects(client, bucket, prefix) if o.key not in wanted]
        _s3.delete_keys(client, bucket, [key for key in stale if key != marker_key])
        # 4. The marker goes last: its presence is the commit.
        client.put_object(
            Bucket=bucket,
            Key=marker_key,
            Body=manifest.to_json().encode("utf-8"),
            ContentType="application/json",
        )

    def abort(self) -> None:
        """Drop staging; the previously committed partition (if any) stays as it was.

        Idempotent, and a no-op after a successful commit (a committed partition is never undone here).
        """
        if self._state == "committed":
            return
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._release_claim()
        self._state = "aborted"


def _collect_staging(staging: Path) -> list[tuple[str, Path]]:
    """The regular files in staging as (relative path, path), sorted; symlinks and specials refused."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(staging):
        here = Path(dirpath)
        rel_dir = here.relative_to(staging).as_posix()
        for name in [*dirnames, *filenames]:
            full = here / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if full.is_symlink():
                resolved = full.resolve()
                if resolved != staging and staging not in resolved.parents:
                    raise PathEscapeError(
                        f"output file {rel!r} is a symlink to {str(resolved)!r}, outside the output"
                    )
                raise DataError(f"output file {rel!r} is a symlink; only regular files are published")
        for name in filenames:
            full = here / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not full.is_file():
                raise DataError(f"output file {rel!r} is not a regular file")
            if rel == MANIFEST_NAME:
                raise DataError(
                    f"{MANIFEST_NAME!r} is reserved for the commit marker; rename that output file"
                )
            found.append((rel, full))
    return sorted(found)


def _publish_by_rename(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and deleted after.

    Readers see the old partition or the new one (or, between two renames, none) but never a mix.
    """
    asides: list[Path] = []
    try:
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                os.rename(staging, target)  # atomic; also replaces an empty folder
                return
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise DataError(
                        f"cannot publish {str(staging)!r} to {str(target)!r}: different filesystems"
                    ) from exc
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise
            aside = staging.with_name(f"{staging.name}.replaced-{attempt}")
            try:
                os.rename(target, aside)
                asides.append(aside)
            except FileNotFoundError:
                pass  # another writer moved it meanwhile: just retry the rename
        raise DataError(f"could not publish {str(target)!r}: it kept being replaced by another writer")
    except BaseException:
        # Failed publish: put the previous partition back if nothing took its place, so it is never lost.
        if asides and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.rename(asides.pop(), target)
        raise
    finally:
        for aside in asides:
            _remove(aside)


def _sha256(path: Path, *, fsync: bool = False) -> str:
    """Hex sha256 of a file; with ``fsync`` its data is also flushed to disk (the file is open anyway)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
        if fsync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Persist a folder's entries (a rename is durable only once its parent folder is synced)."""
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a folder for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder tree; a missing path is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
