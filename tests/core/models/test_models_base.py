"""Rules shared by every model store: URIs, names, versions, metadata, which files make a model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_genius.core.errors import GeniusError, PathEscapeError
from airflow_genius.core.models import (
    MODEL_SCHEMES,
    ModelError,
    open_model_manager,
)
from airflow_genius.core.models.base import (
    collect_files,
    format_version,
    parse_version,
    validate_metadata,
    validate_name,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ftp://host/models", "unknown model store scheme 'ftp'"),
        ("/srv/models", "unknown model store scheme ''"),
        ("git://host/models.git", "unknown model store scheme 'git'"),
        ("s3:///models", "has no bucket"),
        ("s3://bucket/models?region=x", "must not have a query"),
        ("wandb://entity", "expected wandb://entity/project"),
        ("wandb:///project", "expected wandb://entity/project"),
        ("git+https://user:s3cret@git.example.com/m.git", "embeds a password"),
    ],
)
def test_bad_uris_give_one_line_errors(uri: str, expected: str) -> None:
    with pytest.raises(GeniusError) as info:
        open_model_manager(uri)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "s3cret" not in message


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ModelError) as info:
        open_model_manager("hdfs://nn/models")
    for scheme in MODEL_SCHEMES:
        assert scheme in str(info.value)


def test_uris_open_the_right_backend(tmp_path: Path) -> None:
    with open_model_manager(f"git+file://{tmp_path}/repo.git") as git:
        assert type(git).__name__ == "GitModelManager"
        assert git.uri == f"git+file://{tmp_path}/repo.git"
    s3 = open_model_manager("s3://bucket/some//prefix/")
    assert type(s3).__name__ == "S3ModelManager"
    assert s3.uri == "s3://bucket/some/prefix"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",
        "../x",
        "..",
        ".hidden",
        "-rf",
        "x.lock",
        "trailing.",
        "a..b",
        "sp ace",
        "tab\t",
        "é",
        "x" * 129,
    ],
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ModelError, match="invalid model name"):
        validate_name(name)


@pytest.mark.parametrize("name", ["bert", "bert-base_v2.1", "A1", "x" * 128])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


def test_versions_parse_and_format() -> None:
    assert format_version(1) == "v000001"
    assert format_version(1234567) == "v1234567"
    assert [parse_version(v) for v in ("latest", "v7", "v000007", "7")] == [None, 7, 7, 7]
    for bad in ("v0", "vx", "", "v-1", "latest2", "1.0"):
        with pytest.raises(ModelError, match="invalid model version"):
            parse_version(bad)


def test_metadata_must_survive_json() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({"acc": 0.9, "tags": ("a", "b")}) == {"acc": 0.9, "tags": ["a", "b"]}
    with pytest.raises(ModelError, match="JSON"):
        validate_metadata({"when": object()})
    with pytest.raises(ModelError, match="JSON"):
        validate_metadata({"loss": float("nan")})
    with pytest.raises(ModelError, match="string keys"):
        validate_metadata({1: "x"})  # type: ignore[dict-item]


def test_collect_files_follows_inner_symlinks_and_refuses_escapes(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.bin").write_bytes(b"w")
    (model / "alias.bin").symlink_to(model / "sub" / "w.bin")
    files = collect_files(model)
    assert [(f.relpath, f.size) for f in files] == [("alias.bin", 1), ("sub/w.bin", 1)]

    (tmp_path / "secret").write_text("s")
    (model / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(PathEscapeError, match="leak"):
        collect_files(model)


def test_collect_files_refuses_empty_missing_and_symlinked_dirs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ModelError, match="holds no files"):
        collect_files(tmp_path / "empty")
    with pytest.raises(ModelError, match="does not exist"):
        collect_files(tmp_path / "missing")
    model = tmp_path / "model"
    model.mkdir()
    (model / "f").write_bytes(b"1")
    os.symlink(tmp_path / "empty", model / "linked")
    with pytest.raises(ModelError, match="symlinked directory 'linked'"):
        collect_files(model)
