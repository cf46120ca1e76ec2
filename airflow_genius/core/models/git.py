"""Models in a git repository: one branch per model, one annotated tag per version.

Layout in the repository (bare or not, local or remote)::

    refs/heads/models/<name>       one commit per saved version; its tree is the model folder
    refs/tags/<name>/v000001       annotated tag on that commit; message = JSON (name, version,
                                   created_at, metadata)

Everything goes through the ``git`` CLI with argument lists (no shell, no GitPython) against a private
bare cache repository, then ``git push --atomic`` of the branch and the tag together. The push is the
commit point: if another writer took the same version number (tag exists) or advanced the branch (not
a fast-forward), the push is refused as a whole, and the save retries on top of the new state. So
concurrent saves are safe on any server that supports atomic pushes (file, ssh, smart http).

Trees are written with plumbing (``hash-object --no-filters`` + a temporary index + ``write-tree``) and
read back with ``ls-tree`` + ``cat-file --batch``: ``.gitignore``/``.gitattributes`` files inside a model,
LFS filters and line-ending settings never alter its bytes. Git suits small models (configs, adapters,
tokenizers); large weights belong on S3.

>>> mm = GitModelManager("file:///srv/models.git")              # doctest: +SKIP
>>> mm.save("out/adapter", "lora-en", {"rank": 8})                # doctest: +SKIP
'v000001'
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from airflow_genius.core.clock import parse_time, utcnow
from airflow_genius.core.models.base import (
    LATEST,
    LocalFile,
    ModelError,
    ModelIntegrityError,
    ModelManager,
    ModelNotFoundError,
    ModelVersion,
    format_version,
    write_under,
)

TAG_FORMAT = "airflow-genius/model-tag"
#: Identity used when neither the environment nor git config provides one (fresh CI machines, pods).
DEFAULT_IDENTITY = ("airflow-genius", "airflow-genius@localhost")
#: How often a save rebuilds its commit on top of a concurrent writer's push before giving up.
MAX_PUSH_ATTEMPTS = 10

_TAG_VERSION = re.compile(r"v([0-9]+)")
_RACE_REASON = re.compile(
    r"\[remote rejected\] \((atomic transaction failed|cannot lock ref|failed to update ref)"
)
_CHUNK = 1024 * 1024
_BLOB_MODES = {b"100644": False, b"100755": True}


def _summary(stderr: bytes) -> str:
    """The line of git's stderr worth showing: the first fatal/error, else the last non-hint line."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    useful = [ln for ln in lines if not ln.startswith("hint:")]
    return useful[-1] if useful else "(no output)"


class GitModelManager(ModelManager):
    """Versioned model folders in a git repository reached by ``url`` (``file://``, ``ssh://``, ``https://``).

    ``url`` is handed to git unchanged, so authentication is git's own: ssh keys/agent, credential
    helpers, ``GIT_ASKPASS``. Prompts are disabled (``GIT_TERMINAL_PROMPT=0``): a worker never hangs.
    Commits and tags need an identity: ``author=(name, email)``, else the ``GIT_AUTHOR_*``/
    ``GIT_COMMITTER_*`` environment, else git config, else ``airflow-genius <airflow-genius@localhost>``.

    ``cache_dir`` (default: a private temporary directory removed by :meth:`close`) holds the bare clone
    the manager works in; only the refs of the model at hand are fetched, with ``--depth 1`` for loads.
    A ``cache_dir`` you pass is kept for reuse; use it from one manager at a time.

    >>> with GitModelManager("ssh://git@git.example.com/ml/models.git") as mm:   # doctest: +SKIP
    ...     folder = mm.load("lora-en")
    """

    def __init__(
        self,
        url: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        author: tuple[str, str] | None = None,
        timeout: float = 600.0,
    ) -> None:
        if shutil.which("git") is None:
            raise ModelError("the git model store needs the 'git' command on PATH")
        if not url or url.startswith("-"):
            raise ModelError(f"invalid git repository URL {url!r}")
        self.url = url
        self.uri = f"git+{url}"
        self.timeout = timeout
        self._lock = threading.RLock()  # one cache, one index at a time: saves/loads serialise per manager
        self._cleanup: Callable[[], object] | None = None
        if cache_dir is None:
            self._cache = Path(tempfile.mkdtemp(prefix="genius-git-models-"))
            # Removed on close(), or when the manager is garbage-collected / at interpreter exit.
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._cache), ignore_errors=True)
        else:
            self._cache = Path(cache_dir).absolute()
        self._env = self._base_env(author)
        if not (self._cache / "HEAD").exists():
            self._git("init", "--bare", "--quiet", str(self._cache), git_dir=False)
        self._identity_checked = author is not None
        self._checked_names: set[str] = set()

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> GitModelManager:
        """``git+file:///srv/models.git`` (or ``git+ssh://…``, ``git+https://…``) → manager."""
        if not uri.startswith("git+"):
            raise ModelError(
                f"not a git model URI: {uri!r}; expected git+file://, git+ssh:// or git+https://"
            )
        return cls(uri[len("git+") :], **options)

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()

    # -- running git ------------------------------------------------------------------------------------

    @staticmethod
    def _base_env(author: tuple[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_TERMINAL_PROMPT"] = "0"  # a password prompt would hang a worker forever
        # Variables meant for some other repository must not redirect ours.
        for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_NAMESPACE", "GIT_OBJECT_DIRECTORY"):
            env.pop(var, None)
        if author is not None:
            name, email = author
            for role in ("AUTHOR", "COMMITTER"):
                env[f"GIT_{role}_NAME"], env[f"GIT_{role}_EMAIL"] = name, email
        return env

    def _git(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        git_dir: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["git", f"--git-dir={self._cache}", *args] if git_dir else ["git", *args]
        try:
            proc = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                env=dict(env) if env is not None else self._env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelError(f"git {args[0]} on {self.url} timed out after {self.timeout:g}s") from None
        if check and proc.returncode != 0:
            raise ModelError(f"git {args[0]} on {self.url} failed: {_summary(proc.stderr)}")
        return proc

    def _ensure_identity(self) -> None:
        """Fall back to the default identity only where env and git config give none."""
        if self._identity_checked:
            return
        for role in ("AUTHOR", "COMMITTER"):
            if self._git("var", f"GIT_{role}_IDENT", check=False).returncode != 0:
                self._env.setdefault(f"GIT_{role}_NAME", DEFAULT_IDENTITY[0])
                self._env.setdefault(f"GIT_{role}_EMAIL", DEFAULT_IDENTITY[1])
        self._identity_checked = True

    def _check_ref_names(self, name: str) -> None:
        """Let git itself confirm the refs built from ``name`` are valid (on top of validate_name)."""
        if name in self._checked_names:
            return
        for ref in (f"refs/heads/models/{name}", f"refs/tags/{name}/{format_version(1)}"):
            if self._git("check-ref-format", ref, check=False, git_dir=False).returncode != 0:
                raise ModelError(f"model name {name!r} does not make a valid git ref ({ref})")
        self._checked_names.add(name)

    # -- remote state -------------------------------------------------------------------------------------

    def _remote_refs(self, name: str) -> tuple[str | None, dict[int, str]]:
        """(tip of ``models/<name>`` or None, {version number: tag ref}) as the remote has them now."""
        branch_ref = f"refs/heads/models/{name}"
        tag_prefix = f"refs/tags/{name}/"
        out = self._git("ls-remote", "--refs", self.url, branch_ref, f"{tag_prefix}*").stdout
        branch: str | None = None
        tags: dict[int, str] = {}
        for line in out.decode().splitlines():
            sha, _, ref = line.partition("\t")
            if ref == branch_ref:
                branch = sha
            elif ref.startswith(tag_prefix):  # ls-remote patterns match tails: filter exactly here
                match = _TAG_VERSION.fullmatch(ref[len(tag_prefix) :])
                if match:
                    tags[int(match.group(1))] = ref
        return branch, tags

    # -- save -----------------------------------------------------------------------------------------------

    def _write_tree(self, files: list[LocalFile]) -> str:
        """Store the files as blobs and build the tree from a throwaway index (no work tree needed)."""
        paths = [os.fsencode(f.path) for f in files]
        if any(b"\n" in p for p in paths):
            raise ModelError("a file path of the model contains a newline; git hash-object cannot take it")
        out = self._git("hash-object", "-w", "--no-filters", "--stdin-paths", input=b"\n".join(paths) + b"\n")
        shas = out.stdout.split()
        if len(shas) != len(files):
            raise ModelError(f"git hash-object returned {len(shas)} ids for {len(files)} files")
        index_info = b"".join(
            (b"100755 " if f.executable else b"100644 ") + sha + b"\t" + os.fsencode(f.relpath) + b"\0"
            for f, sha in zip(files, shas, strict=True)
        )
        with tempfile.TemporaryDirectory(prefix="genius-git-index-") as tmp:
            env = {**self._env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("update-index", "--add", "-z", "--index-info", input=index_info, env=env)
            return self._git("write-tree", env=env).stdout.decode().strip()

    def _fetch_parent(self, name: str) -> str:
        local = f"refs/genius/parents/{name}"
        # depth 1: the tip is all commit-tree needs, however long the model's history is.
        self._git(
            "fetch", "--quiet", "--no-tags", "--depth", "1", self.url, f"+refs/heads/models/{name}:{local}"
        )
        return self._git("rev-parse", "--verify", f"{local}^{{commit}}").stdout.decode().strip()

    def _make_tag(self, commit: str, name: str, version: str, message: str) -> str:
        tagger = self._git("var", "GIT_COMMITTER_IDENT").stdout.decode().strip()
        body = (
            f"object {commit}\ntype commit\ntag {name}/{version}\ntagger {tagger}\n\n{message}\n"
        ).encode()
        # mktag writes the tag object without creating a local ref: the push creates the only ref.
        return self._git("mktag", input=body).stdout.decode().strip()

    def _push(self, name: str, version: str, commit: str, tag: str) -> bool:
        """Push branch + tag atomically; False when a concurrent writer won (caller retries)."""
        proc = self._git(
            "push",
            "--atomic",
            "--porcelain",
            self.url,
            f"{commit}:refs/heads/models/{name}",
            f"{tag}:refs/tags/{name}/{version}",
            check=False,
        )
        if proc.returncode == 0:
            return True
        rejected = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("!")]
        # "[rejected] (already exists | non-fast-forward | fetch first)": the client saw it lost a race.
        # "[remote rejected] (atomic transaction failed | cannot lock ref …)": the server saw the same race
        # (another push updated the ref between our ls-remote and its lock). Hooks declining, hidden refs
        # etc. are real errors and are raised.
        if rejected and all("[rejected]" in ln or _RACE_REASON.search(ln) for ln in rejected):
            return False
        raise ModelError(f"git push to {self.url} failed: {_summary(proc.stderr)}")

    def _save(self, root: Path, files: list[LocalFile], name: str, metadata: dict[str, Any]) -> str:
        self._check_ref_names(name)
        with self._lock:
            self._ensure_identity()
            tree = self._write_tree(files)
            for attempt in range(MAX_PUSH_ATTEMPTS):
                branch, tags = self._remote_refs(name)
                parent = self._fetch_parent(name) if branch else None
                version = format_version(max(tags, default=0) + 1)
                message = json.dumps(
                    {
                        "format": TAG_FORMAT,
                        "name": name,
                        "version": version,
                        "created_at": utcnow().isoformat(),
                        "metadata": metadata,
                    },
                    indent=1,
                    sort_keys=True,
                )
                parents = ["-p", parent] if parent else []
                commit = (
                    self._git(
                        "commit-tree", tree, *parents, "-m", f"{name} {version}\n\nSaved by airflow-genius."
                    )
                    .stdout.decode()
                    .strip()
                )
                tag = self._make_tag(commit, name, version, message)
                if self._push(name, version, commit, tag):
                    return version
                # Lost a race: back off a little (jittered) so a crowd of writers does not collide again.
                time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))  # noqa: S311 - jitter, not crypto
        raise ModelError(
            f"could not save {name!r} to {self.url}: other writers won the race {MAX_PUSH_ATTEMPTS} times"
        )

    # -- reading objects ------------------------------------------------------------------------------------

    def _cat_batch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["git", f"--git-dir={self._cache}", "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self._env,
        )

    @staticmethod
    def _next_object(proc: subprocess.Popen[bytes], oid: bytes) -> tuple[bytes, int]:
        """Ask ``cat-file --batch`` for ``oid``; returns (type, size) with the content next on stdout."""
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(oid + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) != 3:
            raise ModelIntegrityError(f"git object {oid.decode()} is missing from the fetched data")
        return header[1], int(header[2])

    @staticmethod
    def _copy_content(source: IO[bytes], size: int, sink: IO[bytes] | None) -> bytes:
        """Move ``size`` bytes (+ the trailing LF cat-file adds) to ``sink``, or return them."""
        kept = bytearray()
        remaining = size
        while remaining:
            chunk = source.read(min(remaining, _CHUNK))
            if not chunk:
                raise ModelIntegrityError("git cat-file ended in the middle of an object")
            if sink is None:
                kept += chunk
            else:
                sink.write(chunk)
            remaining -= len(chunk)
        source.read(1)
        return bytes(kept)

    def _read_objects(self, oids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """Small objects (tags) by id: {oid: (type, raw content)}."""
        found: dict[str, tuple[str, bytes]] = {}
        proc = self._cat_batch()
        try:
            for oid in oids:
                kind, size = self._next_object(proc, oid.encode())
                assert proc.stdout is not None
                found[oid] = (kind.decode(), self._copy_content(proc.stdout, size, None))
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        return found

    def _ls_tree(self, rev: str) -> list[tuple[bytes, bytes, bytes, int, bytes]]:
        """(mode, type, oid, size) of every entry of ``rev``'s tree, recursively; paths as raw bytes."""
        out = self._git("ls-tree", "-r", "-l", "-z", "--full-tree", rev).stdout
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid, size = meta.split()
            entries.append((mode, kind, oid, int(size) if size != b"-" else 0, path))
        return entries

    # -- load -----------------------------------------------------------------------------------------------

    def _load_into(self, name: str, version: str, dest: Path) -> None:
        self._check_ref_names(name)
        with self._lock:
            _, tags = self._remote_refs(name)
            if not tags:
                raise ModelNotFoundError(f"model {name!r} has no version in {self.url}")
            number = max(tags) if version == LATEST else int(version[1:])
            if number not in tags:
                raise ModelNotFoundError(
                    f"model {name!r} has no version {format_version(number)} in {self.url}"
                )
            ref = tags[number]
            self._git("fetch", "--quiet", "--no-tags", "--depth", "1", self.url, f"+{ref}:{ref}")
            self._export(f"{ref}^{{commit}}", dest, f"{name} {format_version(number)}")

    def _export(self, rev: str, dest: Path, label: str) -> None:
        """Write the blobs of ``rev``'s tree under ``dest`` byte for byte (no filters, no attributes)."""
        entries = self._ls_tree(rev)
        proc = self._cat_batch()
        try:
            assert proc.stdout is not None
            for mode, kind, oid, size, raw_path in entries:
                path = os.fsdecode(raw_path)
                if kind != b"blob" or mode not in _BLOB_MODES:
                    # save never writes symlinks or submodules; a tree that has them was not made by us
                    raise ModelIntegrityError(
                        f"{label}: {path!r} is not a regular file (mode {mode.decode()})"
                    )
                target = write_under(dest, path)  # stored paths are untrusted: never leave `dest`
                kind_read, size_read = self._next_object(proc, oid)
                if kind_read != b"blob" or size_read != size:
                    raise ModelIntegrityError(f"{label}: object of {path!r} is not the blob ls-tree listed")
                with open(target, "wb") as sink:
                    self._copy_content(proc.stdout, size_read, sink)
                if _BLOB_MODES[mode]:
                    target.chmod(target.stat().st_mode | 0o111)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()

    # -- list -----------------------------------------------------------------------------------------------

    def _list_versions(self, name: str) -> list[ModelVersion]:
        self._check_ref_names(name)
        with self._lock:
            _, tags = self._remote_refs(name)
            if not tags:
                return []
            # --prune drops local copies of tags deleted remotely (only within this model's namespace).
            self._git(
                "fetch",
                "--quiet",
                "--no-tags",
                "--prune",
                self.url,
                f"+refs/tags/{name}/*:refs/tags/{name}/*",
            )
            numbers = sorted(tags)
            refs = [tags[n] for n in numbers]
            # One rev-parse for all: the tag objects, then the commits they point to.
            resolved = (
                self._git("rev-parse", *refs, *(f"{r}^{{commit}}" for r in refs)).stdout.decode().split()
            )
            oids, commits = resolved[: len(refs)], resolved[len(refs) :]
            objects = self._read_objects(oids)
            versions = []
            for number, oid, commit in zip(numbers, oids, commits, strict=True):
                info = self._tag_info(*objects[oid])
                entries = self._ls_tree(commit)
                versions.append(
                    ModelVersion(
                        name=name,
                        version=format_version(number),
                        created_at=info[0],
                        metadata=info[1],
                        files=tuple(os.fsdecode(e[4]) for e in entries),
                        size=sum(e[3] for e in entries),
                        location=f"{self.uri}@{commit}",
                    )
                )
            return versions

    @staticmethod
    def _tag_info(kind: str, raw: bytes) -> tuple[datetime | None, dict[str, Any]]:
        """(created_at, metadata) of a version tag; tags not written by us give what git knows."""
        if kind != "tag":  # a lightweight tag: no message, no date
            return None, {}
        header, _, message = raw.partition(b"\n\n")
        tagged: datetime | None = None
        for line in header.decode(errors="replace").splitlines():
            if line.startswith("tagger "):
                try:
                    tagged = datetime.fromtimestamp(int(line.rsplit(" ", 2)[1]), tz=timezone.utc)
                except (ValueError, IndexError):
                    tagged = None
        try:
            data = json.loads(message.decode())
        except ValueError:
            return tagged, {}
        if not isinstance(data, dict) or data.get("format") != TAG_FORMAT:
            return tagged, {}
        metadata = data.get("metadata")
        return parse_time(data.get("created_at")) or tagged, metadata if isinstance(metadata, dict) else {}
