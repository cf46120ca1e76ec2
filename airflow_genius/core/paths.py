"""Paths built from user data stay inside their root.

Two ways to turn an identifier into one folder name:

- :func:`escape_segment` is injective and reversible (:func:`unescape_segment`): every character
  outside ``[A-Za-z0-9._=+-]`` becomes ``~XX`` (the hex of each UTF-8 byte), ``~`` itself included, so
  ``c:1`` and ``c_1`` stay two folders. Output partitions name their dag_id, task_id and run_id folders
  with it.
- :func:`safe_segment` folds odd characters to ``_`` (several identifiers may share one name); use it
  only where that is harmless.
"""

from __future__ import annotations

import os
import posixpath
import re
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


#: Characters kept as they are by :func:`escape_segment` (the same set :func:`safe_segment` keeps).
SEGMENT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._=+-")
#: Escape character of :func:`escape_segment`: unreserved in URIs, so ``~3A`` survives any URL layer
#: unchanged (a ``%3A`` would be decoded by anyone who reads the folder's ``file://`` URI).
SEGMENT_ESCAPE = "~"
#: Longest file name most filesystems accept (ext4, xfs, btrfs, APFS), in bytes.
MAX_SEGMENT_BYTES = 255
_ESCAPED_BYTE = re.compile(r"~([0-9A-F]{2})")


def _shown(value: object, limit: int = 60) -> str:
    """``repr`` of ``value``, cut to ``limit`` characters (an error message stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escape_segment(value: str, what: str = "path segment") -> str:
    """One folder name for ``value``, distinct for distinct values; :func:`unescape_segment` reverses it.

    Characters in ``[A-Za-z0-9._=+-]`` stay; any other character becomes ``~`` followed by the two
    upper-case hex digits of each of its UTF-8 bytes (``:`` -> ``~3A``, ``~`` -> ``~7E``, ``é`` ->
    ``~C3~A9``). A name made only of safe characters is its own folder name. Refused with one line
    (:class:`PathEscapeError`, naming ``what``): an empty value, ``.``, ``..``, and a value whose
    folder name would exceed 255 bytes.

    >>> escape_segment("manual__2024-01-01T00:00:00+00:00")
    'manual__2024-01-01T00~3A00~3A00+00~3A00'
    >>> escape_segment("c:1"), escape_segment("c_1"), escape_segment("c~3A1")
    ('c~3A1', 'c_1', 'c~7E3A1')
    >>> escape_segment("..", "run_id")
    Traceback (most recent call last):
    ...
    airflow_genius.core.errors.PathEscapeError: run_id '..' cannot be a folder name
    """
    if not isinstance(value, str):
        raise PathEscapeError(f"{what} must be a string, got {_shown(value)}")
    if value in {"", ".", ".."}:
        raise PathEscapeError(f"{what} {value!r} cannot be a folder name")
    parts = []
    for ch in value:
        if ch in SEGMENT_SAFE:
            parts.append(ch)
        else:
            # surrogatepass: a lone surrogate (possible in JSON text) still gets a distinct name.
            parts.extend(f"~{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))
    escaped = "".join(parts)
    if len(escaped) > MAX_SEGMENT_BYTES:
        raise PathEscapeError(
            f"{what} {_shown(value)} becomes a folder name of {len(escaped)} bytes; "
            f"the limit is {MAX_SEGMENT_BYTES}"
        )
    return escaped


def unescape_segment(name: str) -> str:
    """The value :func:`escape_segment` turned into the folder name ``name``.

    Only names :func:`escape_segment` can produce are accepted (anything else raises
    :class:`PathEscapeError`), so ``escape_segment(unescape_segment(name)) == name`` too.

    >>> unescape_segment("manual__2024-01-01T00~3A00~3A00+00~3A00")
    'manual__2024-01-01T00:00:00+00:00'
    >>> unescape_segment(escape_segment("évé~1 /x"))
    'évé~1 /x'
    >>> unescape_segment("a:b")
    Traceback (most recent call last):
    ...
    airflow_genius.core.errors.PathEscapeError: 'a:b' is not a folder name made by escape_segment
    """
    if not isinstance(name, str):
        raise PathEscapeError(f"folder name must be a string, got {_shown(name)}")
    try:
        raw = bytearray()
        position = 0
        for match in _ESCAPED_BYTE.finditer(name):
            raw += name[position : match.start()].encode("ascii")
            raw.append(int(match.group(1), 16))
            position = match.end()
        raw += name[position:].encode("ascii")
        value = raw.decode("utf-8", "surrogatepass")
        canonical = escape_segment(value) == name
    except (UnicodeError, PathEscapeError):
        canonical = False
    if not canonical:
        raise PathEscapeError(f"{_shown(name)} is not a folder name made by escape_segment")
    return value
