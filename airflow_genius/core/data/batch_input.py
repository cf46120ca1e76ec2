"""Batch input: a folder read in place, or an S3 prefix mirrored incrementally (:class:`BatchInput`).

A local input (``/abs/path``, ``file:///abs/path``) is used in place. An S3 input (``s3://bucket/prefix``)
is mirrored into ``cache_dir`` incrementally: an object whose size and ETag match the small index kept in
the cache (and whose local copy is untouched) is skipped, changed objects are re-downloaded, local files
gone from S3 are deleted. ``committed_only=True`` reads only the files a ``_SUCCESS`` manifest lists
(see :mod:`~airflow_genius.core.data.batch_output` for how a partition is committed).

>>> import tempfile
>>> from airflow_genius.core.data import BatchOutput, PartitionKey
>>> root = tempfile.mkdtemp()
>>> out = BatchOutput(root, partition=PartitionKey("etl", "clean", "manual__1"))
>>> _ = out.save({"rows": 3}, "summary.json")
>>> _ = out.commit()
>>> inp = BatchInput(out.location, committed_only=True)
>>> inp.files(), inp.read_json("summary.json")
(['summary.json'], {'rows': 3})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_genius.core.data import _s3
from airflow_genius.core.data.locations import DataError, DataLocation, parse_data_uri
from airflow_genius.core.data.manifest import MANIFEST_NAME, Manifest
from airflow_genius.core.paths import safe_join, safe_relpath, safe_segment

#: Names starting with this are reserved for genius bookkeeping (sync index, lock, staging).
RESERVED_PREFIX = ".genius"
_INDEX_NAME = ".genius-sync-index.json"
_LOCK_NAME = ".genius-sync.lock"
_INDEX_FORMAT = "genius-sync-index/1"


def is_hidden(relative: str) -> bool:
    """True for paths readers skip: any segment starting with ``.``, and ``_SUCCESS`` markers.

    >>> [is_hidden(p) for p in ("a/b.json", "_SUCCESS", ".genius-sync-index.json", "x/.tmp/y")]
    [False, True, True, True]
    """
    parts = relative.split("/")
    return parts[-1] == MANIFEST_NAME or any(part.startswith(".") for part in parts)


@dataclass(frozen=True)
class SyncStats:
    """What one :meth:`BatchInput.sync` did (for run metrics).

    ``bytes`` counts downloaded bytes; for a local input nothing is copied and ``skipped`` is the number
    of files found.
    """

    downloaded: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def _dir_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` across processes (two tasks syncing one cache must not interleave)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on Windows: single-writer use is assumed there
        yield
        return
    with (folder / _LOCK_NAME).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class BatchInput:
    """A batch input folder, local or S3, read through paths that cannot escape it.

    >>> inp = BatchInput("s3://bucket/raw", cache_dir=Path("/var/cache/genius/raw"))  # doctest: +SKIP
    >>> inp.sync()                     # doctest: +SKIP
    PosixPath('/var/cache/genius/raw')
    >>> for name in inp.files():       # doctest: +SKIP
    ...     rows = list(inp.iter_json_lines(name))

    ``cache_dir`` is the cache root an S3 input is mirrored under, in a per-URI sub-folder
    (:attr:`cache_dir` of the instance) that genius owns: files in it that are gone from S3 are deleted.
    Without it the system temp dir is used. ``committed_only=True`` reads the ``_SUCCESS`` manifest of a
    committed partition and exposes (and downloads) only the files it lists.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        committed_only: bool = False,
        max_concurrency: int = _s3.DEFAULT_MAX_CONCURRENCY,
        multipart_threshold: int = _s3.DEFAULT_MULTIPART_THRESHOLD,
        client: Any = None,
    ) -> None:
        self.location: DataLocation = parse_data_uri(uri)
        self.uri = self.location.uri
        self.committed_only = committed_only
        self._cache_root = Path(cache_dir).absolute() if cache_dir is not None else None
        self._max_concurrency = max_concurrency
        self._multipart_threshold = multipart_threshold
        self._client = client
        self._path: Path | None = None
        self._manifest: Manifest | None = None
        #: Statistics of the last :meth:`sync` (``None`` before the first one).
        self.last_sync: SyncStats | None = None

    def __repr__(self) -> str:
        return f"BatchInput({self.uri!r})"

    # -- locating -------------------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path | None:
        """The folder an S3 input is mirrored into (``None`` for a local input).

        It is a sub-folder of the ``cache_dir`` given (system temp dir by default) named after the URI,
        so several inputs can share one cache root and each stays incremental.
        """
        if not self.location.is_s3:
            return None
        base = self._cache_root or Path(tempfile.gettempdir()) / "genius-batch-cache"
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        return base / f"s3-{safe_segment(self.location.bucket)}-{digest}"

    @property
    def path(self) -> Path:
        """The local folder holding the input (syncs on first access)."""
        if self._path is None:
            self.sync()
        assert self._path is not None
        return self._path

    @property
    def manifest(self) -> Manifest | None:
        """The ``_SUCCESS`` manifest read by the last sync when ``committed_only`` is set."""
        return self._manifest

    def sync(self) -> Path:
        """Make the input available locally and return its folder.

        Local: the folder itself (checked, not copied). S3: an incremental mirror in :attr:`cache_dir`.
        """
        started = time.monotonic()
        stats = self._sync_s3() if self.location.is_s3 else self._sync_local()
        self.last_sync = SyncStats(
            stats.downloaded, stats.skipped, stats.deleted, stats.bytes, round(time.monotonic() - started, 6)
        )
        return self.path

    def _sync_local(self) -> SyncStats:
        folder = self.location.path
        assert folder is not None
        if not folder.is_dir():
            raise DataError(f"batch input folder {str(folder)!r} does not exist or is not a folder")
        self._path = folder
        if self.committed_only:
            self._manifest = _require_manifest(folder, self.uri)
            missing = [p for p in self._manifest.paths if not (folder / p).is_file()]
            if missing:
                raise DataError(f"{self.uri}: _SUCCESS lists {missing[0]!r} but the file is missing")
        return SyncStats(skipped=len(self.files()))

    def _sync_s3(self) -> SyncStats:
        cache = self.cache_dir
        assert cache is not None
        cache.mkdir(parents=True, exist_ok=True)
        client = self._client or _s3.make_client(self._max_concurrency)
        with _dir_lock(cache):
            index = _SyncIndex.load(cache, self.uri)
            remote = self._list_remote(client)
            # Prune first: it also clears a local file where a folder must now go (and vice versa).
            deleted = _prune_mirror(cache, keep=set(remote))
            for rel in deleted:
                index.files.pop(rel, None)
            for rel in set(index.files) - set(remote):
                index.files.pop(rel, None)
            wanted: list[tuple[str, _s3.S3Object, Path]] = []
            skipped = 0
            for rel, obj in sorted(remote.items()):
                target = safe_join(cache, rel)
                if index.is_current(rel, obj, target):
                    skipped += 1
                else:
                    wanted.append((rel, obj, target))
            try:
                downloaded = self._download(client, wanted, index)
            finally:
                # Whatever finished is recorded, so an interrupted sync resumes instead of starting over.
                index.save()
        self._path = cache.resolve()
        return SyncStats(
            downloaded=len(downloaded),
            skipped=skipped,
            deleted=len(deleted),
            bytes=sum(obj.size for _, obj, _ in downloaded),
        )

    def _list_remote(self, client: Any) -> dict[str, _s3.S3Object]:
        loc = self.location
        prefix = f"{loc.prefix}/" if loc.prefix else ""
        remote: dict[str, _s3.S3Object] = {}
        for obj in _s3.list_objects(client, loc.bucket, prefix):
            rel = obj.key[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue  # "folder" placeholder objects made by consoles
            if any(part.startswith(RESERVED_PREFIX) for part in rel.split("/")):
                continue  # our own bookkeeping names: mirroring them would clobber the index/lock
            if safe_relpath(rel) != rel:  # PathEscapeError for "../", absolute, NUL
                raise DataError(
                    f"S3 key {obj.key!r} is not a clean relative path under {self.uri}; it cannot be mirrored"
                )
            remote[rel] = obj
        folders = {posixpath.dirname(rel) for rel in remote}
        ancestors = {"/".join(f.split("/")[:i]) for f in folders if f for i in range(1, f.count("/") + 2)}
        clash = sorted(ancestors & set(remote))
        if clash:
            raise DataError(f"{self.uri}: {clash[0]!r} is both an object and a folder; it cannot be mirrored")
        if self.committed_only:
            marker = remote.get(MANIFEST_NAME)
            body = _s3.get_bytes(client, loc.bucket, loc.key(MANIFEST_NAME)) if marker else None
            if body is None:
                raise DataError(f"{self.uri} has no {MANIFEST_NAME}: the partition is not committed")
            self._manifest = Manifest.from_json(body, source=self.uri + MANIFEST_NAME)
            listed = set(self._manifest.paths)
            for entry in self._manifest.files:
                found = remote.get(entry.path)
                if found is None or found.size != entry.size:
                    raise DataError(
                        f"{self.uri}: {MANIFEST_NAME} lists {entry.path!r} but the object is missing or has "
                        "another size (a commit may be in flight); retry"
                    )
            remote = {rel: obj for rel, obj in remote.items() if rel in listed or rel == MANIFEST_NAME}
        return remote

    def _download(
        self, client: Any, wanted: list[tuple[str, _s3.S3Object, Path]], index: _SyncIndex
    ) -> list[tuple[str, _s3.S3Object, Path]]:
        done: list[tuple[str, _s3.S3Object, Path]] = []
        if not wanted:
            return done
        loc = self.location
        config = _s3.transfer_config(self._max_concurrency, self._multipart_threshold)
        with _s3.transfer_manager(client, config) as manager:
            futures = []
            for rel, obj, target in wanted:
                target.parent.mkdir(parents=True, exist_ok=True)
                # s3transfer writes to a temporary name and renames: a killed sync never leaves a torn file.
                future = manager.download(
                    loc.bucket,
                    obj.key,
                    str(target),
                    subscribers=[_s3.KnownObjectSubscriber(obj.size, obj.etag)],
                )
                futures.append((rel, obj, target, future))
            for rel, obj, target, future in futures:
                try:
                    future.result()
                except Exception as exc:
                    if _s3.changed_while_downloading(exc):
                        raise DataError(
                            f"s3://{loc.bucket}/{obj.key} changed while it was being synced; sync again"
                        ) from exc
                    raise
                index.record(rel, obj, target)
                done.append((rel, obj, target))
        return done

    # -- reading --------------------------------------------------------------------------------

    def files(self) -> list[str]:
        """Relative POSIX paths of the input files, sorted; hidden files and ``_SUCCESS`` excluded.

        With ``committed_only`` these are exactly the files of the manifest.
        """
        root = self.path
        if self._manifest is not None:
            return sorted(p for p in self._manifest.paths if not is_hidden(p))
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not is_hidden(rel):
                    found.append(rel)
        return sorted(found)

    def resolve(self, relative: str) -> Path:
        """Local path of ``relative`` inside the input; escapes (``..``, absolute, symlinks out) raise."""
        return safe_join(self.path, relative)

    def read_bytes(self, relative: str) -> bytes:
        return self.resolve(relative).read_bytes()

    def read_text(self, relative: str, encoding: str = "utf-8") -> str:
        return self.resolve(relative).read_text(encoding=encoding)

    def read_json(self, relative: str) -> Any:
        text = self.read_text(relative)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{relative}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc

    def iter_json_lines(self, relative: str) -> Iterator[Any]:
        """Yield one parsed value per non-blank line of a JSON Lines file."""
        with self.resolve(relative).open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{relative}:{lineno}: invalid JSON: {exc.msg}") from exc


def _require_manifest(folder: Path, uri: str) -> Manifest:
    try:
        body = (folder / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{uri} has no {MANIFEST_NAME}: the partition is not committed") from None
    return Manifest.from_json(body, source=uri + MANIFEST_NAME)


def _prune_mirror(cache: Path, keep: set[str]) -> list[str]:
    """Delete everything in the mirror that is not in ``keep`` (bookkeeping files excepted)."""
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(cache, topdown=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(cache).as_posix()
        for name in filenames:
            if rel_dir == "." and name.startswith(RESERVED_PREFIX):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in keep:
                (here / name).unlink(missing_ok=True)
                removed.append(rel)
        for name in dirnames:
            sub = here / name
            if sub.is_symlink():  # a mirror never holds symlinks; one here was not put by us
                sub.unlink()
                removed.append(name if rel_dir == "." else f"{rel_dir}/{name}")
            elif not any(sub.iterdir()):
                sub.rmdir()
    return removed


class _SyncIndex:
    """The ``.genius-sync-index.json`` of a mirror: per file the listed size/ETag and the local stat."""

    def __init__(self, cache: Path, source: str, files: dict[str, dict[str, Any]]) -> None:
        self.cache = cache
        self.source = source
        self.files = files

    @classmethod
    def load(cls, cache: Path, source: str) -> _SyncIndex:
        path = cache / _INDEX_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            # Mirroring deletes files that are not on S3: never do that to a folder we did not create.
            strangers = [p.name for p in cache.iterdir() if not p.name.startswith(RESERVED_PREFIX)]
            if strangers:
                raise DataError(
                    f"cache folder {str(cache)!r} is not empty and is not a genius mirror; "
                    "refusing to delete its files (remove it or pick another cache_dir)"
                ) from None
            # Claim the folder before the first download: a sync killed half-way leaves a mirror
            # that the next sync resumes, not a "stranger" folder it refuses to touch.
            index = cls(cache, source, {})
            index.save()
            return index
        except (OSError, ValueError):
            return cls(cache, source, {})  # unreadable index: re-verify everything (slow but correct)
        if not isinstance(data, dict) or data.get("format") != _INDEX_FORMAT:
            return cls(cache, source, {})
        if data.get("source") != source:
            raise DataError(
                f"cache folder {str(cache)!r} mirrors {data.get('source')!r}, not {source!r}; "
                "remove it or pick another cache_dir"
            )
        files = data.get("files")
        return cls(cache, source, files if isinstance(files, dict) else {})

    def is_current(self, rel: str, obj: _s3.S3Object, target: Path) -> bool:
        entry = self.files.get(rel)
        if not entry or entry.get("size") != obj.size or entry.get("etag") != obj.etag:
            return False
        try:
            stat = target.stat()
        except OSError:
            return False
        # A local copy that was edited (size or mtime moved) is re-downloaded, not trusted.
        return stat.st_size == obj.size and stat.st_mtime_ns == entry.get("mtime_ns")

    def record(self, rel: str, obj: _s3.S3Object, target: Path) -> None:
        self.files[rel] = {"size": obj.size, "etag": obj.etag, "mtime_ns": target.stat().st_mtime_ns}

    def save(self) -> None:
        payload = {"format": _INDEX_FORMAT, "source": self.source, "files": self.files}
        tmp = self.cache / f"{_INDEX_NAME}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.cache / _INDEX_NAME)
