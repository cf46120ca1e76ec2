"""Paths from user data never leave their root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.paths import safe_join, safe_relpath, safe_segment

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
