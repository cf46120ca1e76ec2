"""Paths from user data never leave their root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.paths import (
    MAX_SEGMENT_BYTES,
    escape_segment,
    safe_join,
    safe_relpath,
    safe_segment,
    unescape_segment,
)

HOSTILE = ["../x", "a/../../x", "/etc/passwd", "C:/Windows", "..\\..\\x", "a/\x00b", "", ".", "..", "./.."]


@pytest.mark.parametrize("relative", HOSTILE)
def test_hostile_relative_paths_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(PathEscapeError) as caught:
        safe_join(tmp_path, relative)
    assert "\n" not in str(caught.value)


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    with pytest.raises(PathEscapeError, match="resolves outside"):
        safe_join(root, "link/secret.txt")


def test_normal_paths_are_normalised(tmp_path: Path) -> None:
    assert safe_relpath("a//b/./c") == "a/b/c"
    assert safe_join(tmp_path, "a/b/../c.txt") == tmp_path.resolve() / "a" / "c.txt"


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_segments_never_climb(value: str) -> None:
    with pytest.raises(PathEscapeError):
        safe_segment(value)


def test_segment_replaces_separators() -> None:
    assert safe_segment("../../etc") == ".._.._etc"
    assert "/" not in safe_segment("a/b\\c")


def test_escaped_segments_are_distinct_where_folded_ones_collide() -> None:
    assert safe_segment("c:1") == safe_segment("c_1")  # why partitions do not use safe_segment
    assert escape_segment("c:1") != escape_segment("c_1")
    assert unescape_segment(escape_segment("c:1")) == "c:1"


@pytest.mark.parametrize("value", ["", ".", "..", "x" * (MAX_SEGMENT_BYTES + 1), "/" * 86, None])
def test_escaped_segments_refuse_what_cannot_be_a_folder(value: object) -> None:
    with pytest.raises(PathEscapeError) as caught:
        escape_segment(value, "run_id")  # type: ignore[arg-type]
    assert "\n" not in str(caught.value) and str(caught.value).startswith("run_id")


def test_escape_character_is_escaped_and_separators_never_survive() -> None:
    assert escape_segment("~") == "~7E"
    assert escape_segment("../../etc") == "..~2F..~2Fetc"
    assert escape_segment("a\\b\x00c") == "a~5Cb~00c"


@pytest.mark.parametrize(
    "module",
    ["airflow_genius.core.paths", "airflow_genius.core.data.manifest", "airflow_genius.core.data.sweep"],
)
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
