"""Paths built from user data stay inside their root."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from airflow_genius.core.errors import PathEscapeError


def safe_relpath(relative: str) -> str:
    """Normalise a relative POSIX path taken from user data, refusing anything that escapes.

    Absolute paths, drive letters, NUL bytes and any ``..`` that climbs above the root are refused.

    >>> safe_relpath("a/./b//c.json")
    'a/b/c.json'
    >>> safe_relpath("../etc/passwd")
    Traceback (most recent call last):
    ...
    airflow_genius.core.errors.PathEscapeError: path '../etc/passwd' escapes its root
    """
    if not isinstance(relative, str) or not relative:
        raise PathEscapeError(f"path must be a non-empty string, got {relative!r}")
    if "\x00" in relative:
        raise PathEscapeError(f"path {relative!r} contains a NUL byte")
    candidate = relative.replace("\\", "/")
    if candidate.startswith("/") or (len(candidate) > 1 and candidate[1] == ":"):
        raise PathEscapeError(f"path {relative!r} is absolute; a relative path is expected")
    normal = posixpath.normpath(candidate)
    if normal == "." or normal == ".." or normal.startswith("../"):
        raise PathEscapeError(f"path {relative!r} escapes its root")
    return normal


def safe_join(root: str | os.PathLike[str], relative: str) -> Path:
    """Join ``relative`` (from user data) under ``root``; symlinks that lead outside are refused too.

    >>> str(safe_join("/data/out", "2024/part-0.json"))
    '/data/out/2024/part-0.json'
    """
    base = Path(root).resolve()
    target = (base / safe_relpath(relative)).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"path {relative!r} resolves outside {str(base)!r}")
    return target


def safe_segment(value: str) -> str:
    """Make one path segment out of an identifier such as an Airflow run_id.

    Characters outside ``[A-Za-z0-9._=+-]`` are replaced by ``_`` and the result never is ``.``/``..``.

    >>> safe_segment("manual__2024-01-01T00:00:00+00:00")
    'manual__2024-01-01T00_00_00+00_00'
    """
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._=+-") else "_" for ch in value)
    if cleaned in {"", ".", ".."}:
        raise PathEscapeError(f"{value!r} cannot be used as a path segment")
    return cleaned
