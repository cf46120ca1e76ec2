"""Nothing user-controlled that becomes a path or a key can leave its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_genius.core.data import BatchInput, BatchOutput, PartitionKey, read_manifest
from airflow_genius.core.errors import PathEscapeError

HOSTILE_FILENAMES = [
    "../escape.txt",
    "a/../../escape.txt",
    "/etc/passwd",
    "\\..\\..\\escape.txt",
    "c:/windows/escape.txt",
    "ok\x00.txt",
    "..",
    ".",
    "",
]

HOSTILE_IDENTITIES = [
    "../escape",
    "..",
    ".",
    "/abs",
    "a/b",
    "a\\b",
    "nul\x00byte",
    ".genius-staging",
    "",
]


def _one_line(exc: BaseException) -> None:
    assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_save_refuses_escaping_filenames(tmp_path: Path, filename: str) -> None:
    out = BatchOutput(tmp_path / "out", partition=PartitionKey("d", "t", "r"))
    with pytest.raises(PathEscapeError) as info:
        out.save(b"x", filename)
    _one_line(info.value)
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("relative", HOSTILE_FILENAMES)
def test_read_refuses_escaping_paths(tmp_path: Path, relative: str) -> None:
    (tmp_path / "escape.txt").write_text("secret")
    (tmp_path / "in").mkdir()
    inp = BatchInput(tmp_path / "in")
    for read in (inp.read_bytes, inp.read_text, inp.read_json, lambda rel: list(inp.iter_json_lines(rel))):
        with pytest.raises(PathEscapeError) as info:
            read(relative)
        _one_line(info.value)


@pytest.mark.parametrize("field", ["dag_id", "task_id", "run_id"])
@pytest.mark.parametrize("value", HOSTILE_IDENTITIES)
def test_identity_fields_cannot_escape(field: str, value: str) -> None:
    identity = {"dag_id": "d", "task_id": "t", "run_id": "r", field: value}
    with pytest.raises(PathEscapeError) as info:
        PartitionKey(identity["dag_id"], identity["task_id"], identity["run_id"])
    _one_line(info.value)
    assert field in str(info.value)


def test_odd_run_id_characters_are_escaped_not_refused() -> None:
    key = PartitionKey("my.dag", "group.task", "manual__2024-01-01T00:00:00+00:00 retry#2")
    assert key.relative_path() == (
        "my.dag/group.task/_unpartitioned/manual__2024-01-01T00~3A00~3A00+00~3A00~20retry~232"
    )


def test_symlink_in_input_pointing_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "in").mkdir()
    os.symlink(tmp_path / "secret.txt", tmp_path / "in/link.txt")
    os.symlink(tmp_path / "outside", tmp_path / "in/linkdir")
    inp = BatchInput(tmp_path / "in")
    assert "link.txt" in inp.files()  # listed, but reading it is refused
    with pytest.raises(PathEscapeError, match="resolves outside"):
        inp.read_text("link.txt")
    with pytest.raises(PathEscapeError, match="resolves outside"):
        inp.read_text("linkdir/anything.txt")


def test_symlinked_folder_in_staging_cannot_redirect_save(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    out = BatchOutput(tmp_path / "out", partition=PartitionKey("d", "t", "r"))
    os.symlink(tmp_path / "outside", out.path / "sub")
    with pytest.raises(PathEscapeError, match="resolves outside"):
        out.save(b"x", "sub/file.bin")
    assert not list((tmp_path / "outside").iterdir())


def test_symlink_in_staging_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    out = BatchOutput(tmp_path / "out", partition=PartitionKey("d", "t", "r"))
    out.save(b"fine", "fine.bin")
    os.symlink(tmp_path / "secret.txt", out.path / "leak.txt")
    with pytest.raises(PathEscapeError, match="outside the output"):
        out.commit()
    assert read_manifest(out.location) is None
    out.abort()
