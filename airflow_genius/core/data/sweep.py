"""Staging folders of batch outputs: who owns one, and sweeping those their writers left behind.

A :class:`~airflow_genius.core.data.batch_output.BatchOutput` writes into ``<staging>/<uuid>/``
(``<root>/.genius-staging`` for a local root, ``<tmp>/genius-staging`` for S3) and, while publishing
over an earlier commit, moves that commit aside to ``<uuid>.replaced-N``. A writer killed with SIGKILL
(OOM killer, pod eviction, ``scancel``) never cleans up, so these pile up. Every writer therefore holds an exclusive ``flock`` on
``<uuid>.lock`` from the moment its staging exists until it is published or dropped. The kernel releases
that lock when the process dies, so a sweeper that takes it without waiting knows the writer is gone;
a lock it cannot take belongs to a live writer and is never touched.

:func:`sweep_staging` removes the leftovers of dead writers: the staging folder, its ``.replaced-N``
copies and the lock file. It runs after every successful commit (for the staging folder that commit
used) and from ``genius data sweep ROOT``. Leftovers younger than a grace period (default one hour,
``GENIUS_STAGING_GRACE_SECONDS``; age = newest mtime in the leftover) are kept too: flock is reliable on
local disks, but some network filesystems only lock per host. Should a writer have died in the middle
of replacing a partition (the earlier commit moved aside, the new one not yet in place), the sweep puts
the earlier commit back instead of deleting it.

>>> import tempfile
>>> report = sweep_staging(Path(tempfile.mkdtemp()) / STAGING_DIR, grace=0)
>>> report.summary()
'nothing to sweep'
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_genius.core.data.locations import DataError, parse_data_uri
from airflow_genius.core.data.manifest import MANIFEST_NAME, Manifest
from airflow_genius.core.errors import GeniusError
from airflow_genius.core.paths import safe_join, safe_relpath

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, leftovers are told apart by age only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Folder (under a local output root) that holds staging folders; hidden from readers by its dot.
STAGING_DIR = ".genius-staging"
#: Environment variable with the default grace period of sweeps, in seconds.
GRACE_ENV = "GENIUS_STAGING_GRACE_SECONDS"
#: Grace period when neither the caller nor :data:`GRACE_ENV` sets one.
DEFAULT_GRACE_SECONDS = 3600.0
_LOCK_FORMAT = "genius-staging-lock/1"
#: ``<uuid>``, ``<uuid>.lock``, ``<uuid>.replaced-N``: nothing else in a staging folder is ever touched.
_ENTRY = re.compile(r"^(?P<id>[0-9a-f]{32})(?:\.lock|\.replaced-(?P<n>[0-9]{1,4}))?$")
#: Staging folders of this process that are still being written (guards against network filesystems
#: whose flock is a per-process POSIX lock, which this process would not conflict with).
_LIVE: set[str] = set()


def default_s3_staging_dir() -> Path:
    """Where S3 outputs stage when no ``staging_root`` is given: ``<tmp>/genius-staging``."""
    return Path(tempfile.gettempdir()) / "genius-staging"


def resolve_grace(
    value: float | str | None = None, *, env: Mapping[str, str] | None = None, what: str = "grace"
) -> float:
    """The grace period in seconds: ``value``, else ``GENIUS_STAGING_GRACE_SECONDS``, else one hour.

    A bad value raises :class:`DataError` naming ``what`` (or the environment variable).

    >>> resolve_grace(None, env={}), resolve_grace("90", env={}), resolve_grace(None, env={GRACE_ENV: "0"})
    (3600.0, 90.0, 0.0)
    >>> resolve_grace("-1", env={})
    Traceback (most recent call last):
    ...
    airflow_genius.core.data.locations.DataError: grace must be a number of seconds >= 0, got '-1'
    """
    source = what
    if value is None:
        text = (os.environ if env is None else env).get(GRACE_ENV, "").strip()
        if not text:
            return DEFAULT_GRACE_SECONDS
        value, source = text, GRACE_ENV
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise DataError(f"{source} must be a number of seconds >= 0, got {value!r}")
    return seconds


class StagingClaim:
    """A writer's hold on ``<base>/<uuid>/``: the staging folder plus the flocked ``<uuid>.lock``.

    >>> import tempfile
    >>> claim = StagingClaim.create(Path(tempfile.mkdtemp()), target="etl/clean/_unpartitioned/r")
    >>> claim.path.is_dir(), claim.lock_path.exists()
    (True, True)
    >>> claim.release(); claim.lock_path.exists()
    False
    """

    def __init__(self, path: Path, lock_path: Path, fd: int | None) -> None:
        self.path = path
        self.lock_path = lock_path
        self._fd = fd
        self._key = os.path.realpath(path)
        _LIVE.add(self._key)

    @classmethod
    def create(cls, base: Path, *, target: str = "", root: str = "") -> StagingClaim:
        """Make a fresh staging folder in ``base``, locked.

        ``target`` is the partition it will become, relative to the local output ``root``; a sweep uses
        them to put a partition back should this writer die half-way through replacing it.
        """
        base.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            name = uuid.uuid4().hex
            lock_path = base / f"{name}.lock"
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    # A sweep may have taken the fresh (empty) lock file and deleted it before our flock.
                    if os.fstat(fd).st_ino != _inode(lock_path):
                        os.close(fd)
                        continue
                info = {
                    "format": _LOCK_FORMAT,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "root": root,
                    "target": target,
                }
                os.write(fd, json.dumps(info).encode("utf-8"))
                path = base / name
                path.mkdir()
            except BaseException:
                with contextlib.suppress(OSError):
                    lock_path.unlink()
                os.close(fd)
                raise
            return cls(path, lock_path, fd)
        raise DataError(f"could not create a staging folder in {str(base)!r}: its lock files kept vanishing")

    def release(self) -> None:
        """Drop the lock file and the lock (the staging folder must be published or deleted first)."""
        _LIVE.discard(self._key)
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_ino == _inode(self.lock_path):
                self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:  # an output dropped without commit/abort: its staging becomes sweepable
        with contextlib.suppress(Exception):
            if self._fd is not None:
                _LIVE.discard(self._key)
                os.close(self._fd)
                self._fd = None


@dataclass(frozen=True)
class SweptEntry:
    """One leftover removed (or, in a dry run, to be removed): ``kind`` is staging, replaced or lock."""

    path: str
    kind: str
    files: int
    bytes: int


@dataclass
class SweepReport:
    """What :func:`sweep_staging` did in one staging folder."""

    staging_dir: str
    grace: float
    dry_run: bool = False
    removed: list[SweptEntry] = field(default_factory=list)
    #: ``(replaced copy, partition folder)``: an earlier commit put back where a dead writer left none.
    restored: list[tuple[str, str]] = field(default_factory=list)
    kept_live: int = 0
    kept_young: int = 0

    @property
    def bytes(self) -> int:
        return sum(entry.bytes for entry in self.removed)

    def count(self, kind: str | None = None) -> int:
        return sum(1 for entry in self.removed if kind is None or entry.kind == kind)

    def summary(self) -> str:
        """One line: what was (or would be) removed and kept.

        >>> gone = SweptEntry("/o/.genius-staging/a", "staging", 2, 10)
        >>> SweepReport("/o/.genius-staging", 60.0, removed=[gone], kept_live=1).summary()  # doctest: +ELLIPSIS
        'swept 1 staging folder, 0 replaced copies, 0 lock files (10 bytes); kept 1 in use, 0 younger...'
        """
        if not self.removed and not self.restored and not self.kept_live and not self.kept_young:
            return "nothing to sweep"
        staging, replaced, locks = self.count("staging"), self.count("replaced"), self.count("lock")
        text = (
            f"{'would sweep' if self.dry_run else 'swept'} "
            f"{staging} staging folder{'' if staging == 1 else 's'}, "
            f"{replaced} replaced cop{'y' if replaced == 1 else 'ies'}, "
            f"{locks} lock file{'' if locks == 1 else 's'} ({self.bytes} bytes)"
        )
        if self.restored:
            text += f"; {'would restore' if self.dry_run else 'restored'} {len(self.restored)} partition(s)"
        return text + f"; kept {self.kept_live} in use, {self.kept_young} younger than {self.grace:g}s"


def sweep_staging(
    staging_dir: str | os.PathLike[str],
    *,
    grace: float | str | None = None,
    root: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
) -> SweepReport:
    """Remove the leftovers of dead writers from ``staging_dir``; live writers' staging is never touched.

    ``root`` is the local output root the staging folder serves (it lets a dead writer's interrupted
    replace be undone). Only names a writer makes (``<uuid>``, ``<uuid>.lock``, ``<uuid>.replaced-N``)
    are considered; symlinks are unlinked, never followed.

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp())
    >>> claim = StagingClaim.create(base)                   # a live writer
    >>> _ = (claim.path / "part.json").write_text("{}")
    >>> sweep_staging(base, grace=0).kept_live
    1
    >>> claim.__del__()                                     # the writer dies without cleaning up
    >>> report = sweep_staging(base, grace=0)
    >>> report.count("staging"), report.count("lock"), claim.path.exists(), os.listdir(base)
    (1, 1, False, [])
    """
    folder = Path(staging_dir).absolute()
    report = SweepReport(str(folder), resolve_grace(grace), dry_run)
    if folder.is_symlink():
        raise DataError(f"staging folder {str(folder)!r} is a symlink; refusing to sweep through it")
    if not folder.is_dir():
        return report
    groups: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        match = _ENTRY.match(entry.name)
        if match:
            groups.setdefault(match.group("id"), []).append(entry)
    root_path = Path(root).absolute() if root is not None else None
    for name, entries in sorted(groups.items()):
        _sweep_one(folder, name, entries, root_path, report)
    return report


def sweep_root(
    root: str | os.PathLike[str], *, grace: float | str | None = None, dry_run: bool = False
) -> SweepReport:
    """Sweep the staging of an output root: ``<root>/.genius-staging``, or for ``s3://`` roots the local
    S3 staging folder of this machine (``<tmp>/genius-staging``: S3 outputs stage on local disk).

    >>> sweep_root("/nonexistent/out")
    Traceback (most recent call last):
    ...
    airflow_genius.core.data.locations.DataError: output root '/nonexistent/out' does not exist
    """
    location = parse_data_uri(root)
    if location.is_s3:
        return sweep_staging(default_s3_staging_dir(), grace=grace, dry_run=dry_run)
    assert location.path is not None
    if not location.path.exists():
        raise DataError(f"output root {str(location.path)!r} does not exist")
    if not location.path.is_dir():
        raise DataError(f"output root {str(location.path)!r} is not a folder")
    return sweep_staging(location.path / STAGING_DIR, grace=grace, root=location.path, dry_run=dry_run)


# ---------------------------------------------------------------------- internals
def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _sweep_one(folder: Path, name: str, entries: list[Path], root: Path | None, report: SweepReport) -> None:
    """Sweep one writer's leftovers (staging folder, replaced copies, lock file) if the writer is gone."""
    lock_path = folder / f"{name}.lock"
    if os.path.realpath(folder / name) in _LIVE:
        report.kept_live += 1
        return
    fd = None
    if lock_path in entries and not lock_path.is_symlink():
        try:
            fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return  # its writer just finished (or another sweep took it)
        except OSError as exc:
            log.warning("cannot open staging lock %s (%s); left alone", lock_path, exc)
            return
    try:
        info: dict[str, Any] = {}
        if fd is not None:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    report.kept_live += 1
                    return
                if os.fstat(fd).st_ino != _inode(lock_path):
                    return  # taken and removed by another sweep meanwhile
            info = _read_lock(fd)
        cutoff = time.time() - report.grace
        if report.grace > 0 and _newest_mtime(entries, enough=cutoff) > cutoff:
            report.kept_young += 1
            return
        asides = sorted(
            (e for e in entries if ".replaced-" in e.name), key=lambda e: int(e.name.rpartition("-")[2])
        )
        restored = _restore_interrupted_replace(asides, info, root, report) if root and asides else None
        found = []
        for entry in entries:
            if entry == restored or not os.path.lexists(entry):
                continue
            kind = "lock" if entry == lock_path else "replaced" if ".replaced-" in entry.name else "staging"
            found.append(SweptEntry(str(entry), kind, *_usage(entry)))
        if not report.dry_run:
            # The lock file goes last, while still held: no other sweep can start on a half-removed set.
            for entry in sorted(entries, key=lambda e: e == lock_path and fd is not None):
                if entry != restored:
                    _remove(entry)
        report.removed.extend(found)
    finally:
        if fd is not None:
            os.close(fd)


def _read_lock(fd: int) -> dict[str, Any]:
    """The JSON a writer put in its lock file; ``{}`` if it is empty or not ours."""
    try:
        raw = os.pread(fd, 64 * 1024, 0)
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == _LOCK_FORMAT else {}


def _newest_mtime(entries: Iterable[Path], enough: float = math.inf) -> float:
    """Newest mtime of anything in ``entries`` (walked, symlinks not followed): when a writer last wrote.

    Stops early once something newer than ``enough`` is found (that already decides the age).
    """
    newest = 0.0
    for entry in entries:
        with contextlib.suppress(OSError):
            newest = max(newest, entry.lstat().st_mtime)
        if newest > enough:
            return newest
        if entry.is_dir() and not entry.is_symlink():
            for dirpath, dirnames, filenames in os.walk(entry):
                for child in (*dirnames, *filenames):
                    with contextlib.suppress(OSError):
                        newest = max(newest, os.lstat(os.path.join(dirpath, child)).st_mtime)
                if newest > enough:
                    return newest
    return newest


def _usage(entry: Path) -> tuple[int, int]:
    """(files, bytes) of a leftover, symlinks counted as links (never followed)."""
    try:
        if entry.is_symlink() or not entry.is_dir():
            return 1, entry.lstat().st_size
    except OSError:
        return 0, 0
    files = size = 0
    for dirpath, _dirnames, filenames in os.walk(entry):
        for child in filenames:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, child)).st_size
                files += 1
    return files, size


def _remove(path: Path) -> None:
    """Delete a file, symlink (the link only) or folder tree; a missing path is fine."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _restore_interrupted_replace(
    asides: list[Path], info: Mapping[str, Any], root: Path, report: SweepReport
) -> Path | None:
    """Put a committed partition back if its writer died after moving it aside and before replacing it.

    Returns the replaced copy that was (or, in a dry run, would be) moved back into place.
    """
    for aside in reversed(asides):  # the newest copy is the last one that was in place
        if aside.is_symlink() or not (aside / MANIFEST_NAME).is_file():
            continue
        relative = _aside_target(aside, info, root)
        if relative is None:
            continue
        try:
            target = safe_join(root, relative)
        except GeniusError:
            continue
        if os.path.lexists(target):
            return None  # a newer partition is in place: the copies are just leftovers
        if not report.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(aside, target)
            except OSError as exc:
                log.warning("could not restore %s to %s (%s)", aside, target, exc)
                return None
        report.restored.append((str(aside), str(target)))
        return aside
    return None


def _aside_target(aside: Path, info: Mapping[str, Any], root: Path) -> str | None:
    """The partition (relative to ``root``) a replaced copy came from, from the lock file or the manifest."""
    candidate = info.get("target")
    if info.get("root") and info.get("root") != os.path.realpath(root):
        return None  # a shared staging_root: this writer published under another root
    if not isinstance(candidate, str) or not candidate:
        try:
            manifest = Manifest.from_json((aside / MANIFEST_NAME).read_bytes())
            where = parse_data_uri(manifest.location).path
            candidate = where.relative_to(root).as_posix() if where is not None else None
        except (OSError, ValueError, GeniusError):
            return None
    if not candidate:
        return None
    try:
        relative = safe_relpath(candidate)
    except GeniusError:
        return None
    # A partition is never hidden: a target in .genius-staging (or any dot folder) is not one of ours.
    if any(part.startswith(".") for part in relative.split("/")):
        return None
    return relative
