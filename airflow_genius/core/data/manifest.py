"""Run partitions and the ``_SUCCESS`` manifest that marks one as committed.

A run's output lives in its own partition ``<root>/<dag_id>/<task_id>/<partition>/<run_id>[/map_index=N]/``
and is *committed* when ``_SUCCESS`` exists there. ``_SUCCESS`` holds the manifest: every file of the
partition (relative path, size, sha256), the run identity, and when it was committed.

**Readers must trust only the files the manifest lists.** On S3 the partition prefix can, for a moment,
hold files of an attempt being committed (or of one that died mid-upload); the manifest is written last
and names exactly the files of the committed attempt.

>>> key = PartitionKey("etl", "clean", "manual__2024-01-02T00:00:00+00:00", logical_date=datetime(2024, 1, 2))
>>> key.relative_path("%Y/%m/%d")
'etl/clean/2024/01/02/manual__2024-01-02T00~3A00~3A00+00~3A00'

**Folder names.** The dag_id, task_id and run_id folders are made by
:func:`~airflow_genius.core.paths.escape_segment`: characters outside ``[A-Za-z0-9._=+-]`` become
``~XX`` (hex of each UTF-8 byte, ``~`` itself included), so two distinct run ids never share a
partition (``c:1`` -> ``c~3A1``, ``c_1`` -> ``c_1``) and
:func:`~airflow_genius.core.paths.unescape_segment` gives the identifier back. A run id made only of
those characters is its own folder name. The map index folder is ``map_index=N``; date folders are
rendered from the strftime scheme (odd characters there become ``_``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_genius.core.data import _s3
from airflow_genius.core.data.locations import DataError, parse_data_uri
from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.paths import MAX_SEGMENT_BYTES, escape_segment, safe_relpath, safe_segment

#: Name of the commit marker written last into a committed partition.
MANIFEST_NAME = "_SUCCESS"
#: Version tag of the manifest JSON layout.
MANIFEST_FORMAT = "genius-batch-manifest/1"
#: Folder name used when a run has no logical date.
UNPARTITIONED = "_unpartitioned"
#: Default strftime scheme for date partitions.
DEFAULT_SCHEME = "%Y/%m/%d"


def identity_segment(field_name: str, value: object) -> str:
    """One folder name made from a run identity field (dag_id, task_id, run_id), distinct per value.

    Refused with one line (:class:`PathEscapeError` naming the field): anything but a non-empty string,
    NUL, path separators, a leading dot (it would hide the folder from readers or reach into
    ``.genius-staging``) and a name longer than 255 bytes. Other characters are escaped by
    :func:`~airflow_genius.core.paths.escape_segment` (``:`` -> ``~3A``); reverse with
    :func:`~airflow_genius.core.paths.unescape_segment`.

    >>> identity_segment("run_id", "scheduled__2024-01-01T00:00:00+00:00")
    'scheduled__2024-01-01T00~3A00~3A00+00~3A00'
    >>> identity_segment("run_id", "c:1"), identity_segment("run_id", "c_1")
    ('c~3A1', 'c_1')
    """
    if not isinstance(value, str) or not value:
        raise PathEscapeError(f"{field_name} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise PathEscapeError(f"{field_name} {value!r} contains a NUL byte")
    if "/" in value or "\\" in value:
        raise PathEscapeError(f"{field_name} {value!r} contains a path separator; it must be one folder name")
    if value.startswith("."):
        raise PathEscapeError(f"{field_name} {value!r} starts with '.'; it would become a hidden folder")
    return escape_segment(value, field_name)


def _date_segment(part: str) -> str:
    """One folder of a rendered date scheme: odd characters fold to ``_`` (``%H:%M`` -> ``17_30``).

    Folding is harmless here (one scheme renders distinct dates to distinct digits) and keeps the folder
    names that existing date partitions already have.
    """
    if part.startswith("."):
        raise PathEscapeError(
            f"partition scheme segment {part!r} starts with '.'; it would become a hidden folder"
        )
    folded = safe_segment(part)
    if len(folded) > MAX_SEGMENT_BYTES:
        raise PathEscapeError(
            f"partition scheme segment {folded[:40]!r}... is {len(folded)} bytes; "
            f"the limit is {MAX_SEGMENT_BYTES}"
        )
    return folded


def partition_segments(logical_date: datetime | None, scheme: str) -> list[str]:
    """The partition folders for ``logical_date`` rendered with the strftime ``scheme``.

    An aware date is converted to UTC first, so one instant always lands in one partition whatever
    zone the caller used; a naive date is taken as UTC. Without a date the partition is
    ``_unpartitioned``.

    >>> partition_segments(datetime(2024, 3, 9, 17, tzinfo=timezone.utc), "%Y/%m/%d/%H")
    ['2024', '03', '09', '17']
    """
    if not isinstance(scheme, str) or not scheme.strip("/"):
        raise DataError(
            f"partition scheme must be a non-empty strftime pattern such as '%Y/%m/%d', got {scheme!r}"
        )
    if logical_date is None:
        return [UNPARTITIONED]
    if logical_date.tzinfo is not None:
        logical_date = logical_date.astimezone(timezone.utc)
    rendered = logical_date.strftime(scheme)
    segments = []
    for part in safe_relpath(rendered).split("/"):
        segments.append(_date_segment(part))
    return segments


@dataclass(frozen=True)
class PartitionKey:
    """Identity of one run's output partition.

    >>> PartitionKey("etl", "clean", "manual__1", map_index=3).relative_path()
    'etl/clean/_unpartitioned/manual__1/map_index=3'
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    logical_date: datetime | None = None

    def __post_init__(self) -> None:
        # Validate eagerly so a hostile identity fails when the key is built, not at commit time.
        for name in ("dag_id", "task_id", "run_id"):
            identity_segment(name, getattr(self, name))
        if isinstance(self.map_index, bool) or not isinstance(self.map_index, int) or self.map_index < -1:
            raise DataError(f"map_index must be an integer >= -1, got {self.map_index!r}")
        if self.logical_date is not None and not isinstance(self.logical_date, datetime):
            raise DataError(f"logical_date must be a datetime or None, got {self.logical_date!r}")

    def relative_path(self, scheme: str = DEFAULT_SCHEME) -> str:
        """``<dag_id>/<task_id>/<partition…>/<run_id>[/map_index=N]`` as a relative POSIX path."""
        parts = [identity_segment("dag_id", self.dag_id), identity_segment("task_id", self.task_id)]
        parts += partition_segments(self.logical_date, scheme)
        parts.append(identity_segment("run_id", self.run_id))
        if self.map_index >= 0:
            parts.append(f"map_index={self.map_index}")
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "logical_date": self.logical_date.isoformat() if self.logical_date else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionKey:
        date = data.get("logical_date")
        return cls(
            dag_id=data["dag_id"],
            task_id=data["task_id"],
            run_id=data["run_id"],
            map_index=int(data.get("map_index", -1)),
            logical_date=datetime.fromisoformat(date) if date else None,
        )


@dataclass(frozen=True)
class ManifestFile:
    """One committed file: path relative to the partition, size in bytes, hex sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Content of ``_SUCCESS``: the files of a committed partition and who committed them.

    >>> m = Manifest(run=PartitionKey("d", "t", "r"), partition="_unpartitioned", location="s3://b/d/t/_unpartitioned/r/",
    ...              files=(ManifestFile("a.json", 2, "44136fa3"),))
    >>> Manifest.from_json(m.to_json()) == m
    True
    """

    run: PartitionKey
    partition: str
    location: str
    files: tuple[ManifestFile, ...] = ()
    committed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    format: str = MANIFEST_FORMAT

    @property
    def paths(self) -> list[str]:
        """Relative paths of the committed files, sorted."""
        return [entry.path for entry in self.files]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def get(self, path: str) -> ManifestFile | None:
        """The entry for ``path``, if the manifest lists it."""
        return next((entry for entry in self.files if entry.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "run": self.run.to_dict(),
            "partition": self.partition,
            "location": self.location,
            "committed_at": self.committed_at.isoformat(),
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "_SUCCESS") -> Manifest:
        """Parse a manifest; anything malformed raises :class:`DataError` naming ``source``."""
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            files = tuple(
                ManifestFile(path=safe_relpath(f["path"]), size=int(f["size"]), sha256=str(f["sha256"]))
                for f in data["files"]
            )
            return cls(
                run=PartitionKey.from_dict(data["run"]),
                partition=str(data["partition"]),
                location=str(data["location"]),
                files=files,
                committed_at=datetime.fromisoformat(data["committed_at"]),
            )
        except (DataError, PathEscapeError):
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{source} is not a valid genius manifest: {exc}") from exc


def read_manifest(location: str | os.PathLike[str], *, client: Any = None) -> Manifest | None:
    """The manifest of the committed partition at ``location``, or ``None`` if it is not committed.

    ``location`` is a partition URI as returned by ``BatchOutput.location`` (local path, ``file://`` or
    ``s3://``). ``client`` is an optional boto3 S3 client.

    >>> read_manifest("/nonexistent/partition") is None
    True
    """
    loc = parse_data_uri(location)
    source = loc.uri + MANIFEST_NAME
    if loc.is_s3:
        body = _s3.get_bytes(client or _s3.make_client(), loc.bucket, loc.key(MANIFEST_NAME))
        return None if body is None else Manifest.from_json(body, source=source)
    assert loc.path is not None
    marker: Path = loc.path / MANIFEST_NAME
    try:
        text = marker.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    return Manifest.from_json(text, source=source)
