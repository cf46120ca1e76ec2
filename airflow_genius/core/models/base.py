"""What every model manager shares: the version record, name/version rules, folder walking, staging.

A backend implements three primitives (``_save``, ``_load_into``, ``_list_versions``); the public
methods of :class:`ModelManager` validate their arguments once, here, so every backend refuses the same
bad names, the same escaping files and the same non-JSON metadata with the same one-line errors.

>>> validate_name("bert-base_v2.1")
'bert-base_v2.1'
>>> format_version(3), parse_version("v3"), parse_version("v000003"), parse_version("latest")
('v000003', 3, 3, None)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_genius.core.errors import GeniusError, PathEscapeError
from airflow_genius.core.paths import safe_join, safe_relpath

#: The alias every backend understands: the newest complete version.
LATEST = "latest"

# One path segment that is also a valid git ref component and a valid W&B artifact name: no "/",
# no "..", no ".lock" suffix, no leading "." or "-" (a leading "-" would read as an option to a CLI).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_RE = re.compile(r"v?([0-9]{1,12})")

#: Width of the zero-padded number in version ids: ``v000001`` sorts as text up to 999999 versions;
#: beyond that ids simply grow wider and every backend still orders them by number.
VERSION_WIDTH = 6

_CHUNK = 1024 * 1024


class ModelError(GeniusError):
    """A model store could not do what was asked (bad URI, bad name, backend failure)."""


class ModelNotFoundError(ModelError, LookupError):
    """The model or the requested version does not exist (or has no complete version)."""


class ModelIntegrityError(ModelError):
    """Downloaded files do not match the sizes/checksums recorded when the version was saved."""


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model, as listed by :meth:`ModelManager.list_versions`.

    ``files`` are POSIX paths relative to the model folder, ``size`` is their total in bytes and
    ``location`` says where the version lives in backend terms (an ``s3://`` prefix, a git commit,
    a W&B qualified artifact name).
    """

    name: str
    version: str
    created_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    size: int = 0
    location: str = ""


@dataclass(frozen=True)
class SavedModel:
    """A version saved through a manager (:attr:`ModelManager.saved`): where, which, and its content.

    ``digest`` is :func:`content_digest` of the saved folder: the same files give the same digest in
    every store, and an S3 version's manifest (path, size, sha256 of each file) gives it back.
    """

    uri: str
    name: str
    version: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        """JSON for the run record (``{"uri", "name", "version", "digest"}``)."""
        return {"uri": self.uri, "name": self.name, "version": self.version, "digest": self.digest}


@dataclass(frozen=True)
class LocalFile:
    """A file of a folder being saved: its relative POSIX path, absolute path, size, exec bit and
    SHA-256 (filled by :meth:`ModelManager.save` before the backend stores the files)."""

    relpath: str
    path: Path
    size: int
    executable: bool
    sha256: str = ""


def validate_name(name: object) -> str:
    """A model name: 1-128 of ``[A-Za-z0-9._-]``, starting with a letter or digit, no ``..``.

    The same rule serves every backend: it is one S3 key segment, one git ref component and a valid
    W&B artifact name, so a model can move between stores under the same name.
    """
    if (
        not isinstance(name, str)
        or not _NAME_RE.fullmatch(name)
        or ".." in name
        or name.endswith((".", ".lock"))
    ):
        raise ModelError(
            f"invalid model name {name!r}: expected 1-128 characters of [A-Za-z0-9._-] starting with a "
            "letter or digit, without '..' and not ending in '.' or '.lock'"
        )
    return name


def format_version(number: int) -> str:
    """The version id of the ``number``-th version: ``v000001``."""
    return f"v{number:0{VERSION_WIDTH}d}"


def parse_version(version: object) -> int | None:
    """``"latest"`` → None, ``"v3"``/``"v000003"``/``"3"`` → 3; anything else is a ModelError."""
    if version is None or version == LATEST:
        return None
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ModelError(f"invalid model version {version!r}: expected 'latest' or an id such as 'v000001'")
    return int(match.group(1))


def validate_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``metadata`` that is guaranteed to survive a JSON round trip unchanged in meaning."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise ModelError(f"model metadata must be a dict with string keys, got {type(metadata).__name__}")
    try:
        # allow_nan=False: NaN/Infinity are not JSON and other readers of the manifest would choke.
        return json.loads(json.dumps(dict(metadata), allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model metadata must be JSON-serialisable: {exc}") from None


def collect_files(local_dir: str | os.PathLike[str]) -> list[LocalFile]:
    """The regular files under ``local_dir``, sorted by relative path.

    Symlinks are followed only when they resolve inside ``local_dir`` (a task's output folder must not
    be able to smuggle ``/etc/shadow`` into a model); symlinked directories, sockets and devices are
    refused, and so are names with control characters. Empty directories are not part of a model.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise ModelError(f"model folder {str(root)!r} does not exist or is not a directory")
    files: list[LocalFile] = []
    for current, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(current)
        for dirname in dirnames:
            if (base / dirname).is_symlink():
                rel = (base / dirname).relative_to(root).as_posix()
                raise ModelError(f"model folder {str(root)!r} contains a symlinked directory {rel!r}")
        for filename in filenames:
            rel = (base / filename).relative_to(root).as_posix()
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel):
                raise ModelError(f"file name {rel!r} in {str(root)!r} contains a control character")
            try:
                real = safe_join(root, rel)  # resolves symlinks and refuses any that lead outside
            except PathEscapeError as exc:
                raise PathEscapeError(f"model folder {str(root)!r}: {exc}") from None
            info = real.stat()
            if not stat.S_ISREG(info.st_mode):
                raise ModelError(f"{rel!r} in {str(root)!r} is not a regular file")
            files.append(LocalFile(rel, real, info.st_size, bool(info.st_mode & stat.S_IXUSR)))
    if not files:
        raise ModelError(f"model folder {str(root)!r} holds no files")
    files.sort(key=lambda f: f.relpath)
    return files


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (hashlib releases the GIL: threads help)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(files: Iterable[tuple[str, int, str]]) -> str:
    """SHA-256 of a model folder's content: over its files' ``relpath\\0size\\0sha256\\n`` lines, sorted
    by path. Names, sizes and bytes count; where and when the version was stored do not.

    >>> content_digest([("b.bin", 0, "e3b0c442"), ("a.json", 2, "ca3d163b")])[:12]
    'd85cff89a076'
    """
    lines = sorted(f"{relpath}\0{size}\0{sha256}\n" for relpath, size, sha256 in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def sha256_files(paths: list[Path], workers: int = 8) -> list[str]:
    """SHA-256 of many files concurrently, in the order given."""
    if len(paths) <= 1:
        return [sha256_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        return list(pool.map(sha256_file, paths))


class ModelManager(ABC):
    """Save, list and load versioned model folders in one store.

    Usage::

        mm = open_model_manager("s3://bucket/models")
        version = mm.save("out/model", "bert", metadata={"accuracy": 0.91})
        folder = mm.load("bert")                     # latest complete version, in a fresh temp dir
        folder = mm.load("bert", version, dest=Path("/models/bert"))
        [v.version for v in mm.list_versions("bert")]  # oldest -> newest

    A manager is a context manager; ``close()`` releases local caches (the git backend's clone).
    ``saved`` lists the versions it saved, with their content digest (a task's run record carries
    them, docs/lineage.md#model-versions)::

        mm.saved[-1].version, mm.saved[-1].digest
    """

    #: The URI the manager was opened with (never carries a password).
    uri: str = ""

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: str, **options: Any) -> ModelManager:
        """Build the manager from its URI (each backend parses its own scheme)."""

    # -- public API: validation here, storage in the backends -------------------------------------

    def save(
        self, local_dir: str | os.PathLike[str], name: str, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Store every file under ``local_dir`` as a new version of ``name``; returns the version id
        (and appends it to :attr:`saved`)."""
        name = validate_name(name)
        clean = validate_metadata(metadata)
        files = collect_files(local_dir)
        digests = sha256_files([f.path for f in files])
        files = [replace(f, sha256=digest) for f, digest in zip(files, digests, strict=True)]
        version = self._save(Path(local_dir), files, name, clean)
        digest = content_digest((f.relpath, f.size, f.sha256) for f in files)
        self.saved.append(SavedModel(self.uri, name, version, digest))
        return version

    @property
    def saved(self) -> list[SavedModel]:
        """The versions saved through this manager, oldest first."""
        # Kept in the instance dict: backends define their own __init__ without calling a base one.
        return self.__dict__.setdefault("_saved_versions", [])  # type: ignore[no-any-return]

    def load(self, name: str, version: str = LATEST, dest: str | os.PathLike[str] | None = None) -> Path:
        """Fetch a version (default: the latest) into ``dest`` and return that folder.

        ``dest`` must not exist or be an empty directory; without it a fresh temporary directory is
        created (the caller owns it). Files are fetched into a hidden sibling and moved into place only
        once complete and verified, so ``dest`` never holds a half-downloaded model.
        """
        name = validate_name(name)
        version = self._check_version(version)
        if dest is None:
            target = Path(tempfile.mkdtemp(prefix=f"genius-model-{name}-"))
            try:
                self._load_into(name, version, target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            return target
        target = Path(dest).absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ModelError(f"load destination {str(target)!r} exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            self._load_into(name, version, staging)
            # rename(2) replaces an empty directory atomically: readers see nothing or everything.
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Complete versions of ``name``, oldest first; an unknown model has none (``[]``)."""
        return self._list_versions(validate_name(name))

    def close(self) -> None:  # noqa: B027 - an optional hook: most backends hold nothing to release
        """Release local resources (caches, clients). The manager must not be used afterwards."""

    def __enter__(self) -> ModelManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # -- backend primitives -------------------------------------------------------------------------

    def _check_version(self, version: str) -> str:
        """Normalise a requested version; numbered backends accept ``v3``, ``v000003`` and ``3``."""
        number = parse_version(version)
        return LATEST if number is None else format_version(number)

    @abstractmethod
    def _save(self, root: Path, files: list[LocalFile], name: str, metadata: dict[str, Any]) -> str:
        """Store ``files`` (already validated) as a new version; return its id."""

    @abstractmethod
    def _load_into(self, name: str, version: str, dest: Path) -> None:
        """Write the files of ``version`` (or the latest) into the existing empty folder ``dest``."""

    @abstractmethod
    def _list_versions(self, name: str) -> list[ModelVersion]:
        """Complete versions, oldest first."""


def write_under(root: Path, relpath: str) -> Path:
    """The path to write a file named by stored (untrusted) data under ``root``, parents created."""
    target = safe_join(root, safe_relpath(relpath))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
