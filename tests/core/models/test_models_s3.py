"""S3 model store against the real moto_server of the test rig (no mocks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from models_testutil import SMALL_MODEL, random_bytes, read_tree, sha256

from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.models import (
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    open_model_manager,
)
from airflow_genius.core.models.s3 import S3ModelManager

pytestmark = pytest.mark.aws

MiB = 1024 * 1024


@pytest.fixture
def s3_uri(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/team/models"


@pytest.fixture
def mm(s3_uri: str) -> S3ModelManager:
    # A low multipart threshold makes the ~6 MiB file go through multipart upload and ranged downloads.
    manager = open_model_manager(s3_uri, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    assert isinstance(manager, S3ModelManager)
    return manager


def _keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_save_list_and_load_versions(
    mm: S3ModelManager, s3_bucket: str, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    first = {**SMALL_MODEL, "weights/big.bin": random_bytes(6 * MiB + 123, seed=1)}
    second = {**SMALL_MODEL, "config.json": b'{"hidden": 16}\n', "extra/deep/er/notes.md": b"# v2\n"}

    assert mm.list_versions("bert") == []
    v1 = mm.save(make_model(first), "bert", {"accuracy": 0.8, "tags": ["base"]})
    v2 = mm.save(make_model(second), "bert", metadata={"accuracy": 0.9})
    assert (v1, v2) == ("v000001", "v000002")

    versions = mm.list_versions("bert")
    assert [v.version for v in versions] == ["v000001", "v000002"]
    assert versions[0].metadata == {"accuracy": 0.8, "tags": ["base"]}
    assert versions[1].metadata == {"accuracy": 0.9}
    assert versions[0].files == tuple(sorted(first))
    assert versions[0].size == sum(len(c) for c in first.values())
    assert versions[0].created_at is not None and versions[0].created_at <= versions[1].created_at  # type: ignore[operator]
    assert versions[1].location == f"s3://{s3_bucket}/team/models/bert/v000002/"

    # Layout: files under files/, one claim and one manifest per version.
    keys = _keys(s3_bucket, "team/models/bert/v000002/")
    assert "team/models/bert/v000002/manifest.json" in keys
    assert "team/models/bert/v000002/_claim.json" in keys
    assert "team/models/bert/v000002/files/extra/deep/er/notes.md" in keys

    latest = mm.load("bert")
    assert read_tree(latest) == second
    explicit = mm.load("bert", "v1", dest=tmp_path / "out" / "bert-v1")
    assert explicit == tmp_path / "out" / "bert-v1"
    assert read_tree(explicit) == first
    # No staging folder is left next to the destination.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["bert-v1"]

    # The manifest's checksums are the real ones.
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key="team/models/bert/v000001/manifest.json")[
        "Body"
    ]
    manifest = json.loads(body.read())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {p: sha256(c) for p, c in first.items()}
    assert manifest["metadata"] == {"accuracy": 0.8, "tags": ["base"]}


def test_incomplete_version_is_invisible_and_its_id_is_not_reused(
    mm: S3ModelManager, s3_bucket: str, make_model: Callable[..., Path]
) -> None:
    mm.save(make_model({"w.bin": b"one"}), "gpt")
    # A save that crashed after uploading files: no manifest.
    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="team/models/gpt/v000002/_claim.json", Body=b"{}")
    s3.put_object(Bucket=s3_bucket, Key="team/models/gpt/v000002/files/w.bin", Body=b"half")

    assert [v.version for v in mm.list_versions("gpt")] == ["v000001"]
    assert read_tree(mm.load("gpt")) == {"w.bin": b"one"}
    with pytest.raises(ModelNotFoundError, match="no complete version v000002"):
        mm.load("gpt", "v000002")

    assert mm.save(make_model({"w.bin": b"three"}), "gpt") == "v000003"
    assert [v.version for v in mm.list_versions("gpt")] == ["v000001", "v000003"]
    assert read_tree(mm.load("gpt", "latest")) == {"w.bin": b"three"}


def test_concurrent_saves_get_distinct_versions(s3_uri: str, make_model: Callable[..., Path]) -> None:
    folders = [make_model({"w.bin": f"writer {i}".encode()}) for i in range(4)]

    def save(folder: Path) -> str:
        return open_model_manager(s3_uri).save(folder, "shared")  # one manager per writer, like 4 workers

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(save, folders))
    assert sorted(versions) == ["v000001", "v000002", "v000003", "v000004"]
    mm = open_model_manager(s3_uri)
    contents = {read_tree(mm.load("shared", v))["w.bin"] for v in versions}
    assert contents == {f"writer {i}".encode() for i in range(4)}


def test_load_verifies_checksums(
    mm: S3ModelManager, s3_bucket: str, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    mm.save(make_model({"a.bin": b"good", "b.bin": b"fine"}), "t5")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="team/models/t5/v000001/files/b.bin", Body=b"evil")
    dest = tmp_path / "t5"
    with pytest.raises(ModelIntegrityError, match=r"'b.bin' does not match its manifest"):
        mm.load("t5", dest=dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".t5.partial-*")) == []


def test_manifest_paths_cannot_escape_dest(
    mm: S3ModelManager, s3_bucket: str, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    mm.save(make_model({"a.bin": b"x"}), "evil")
    s3 = boto3.client("s3")
    key = "team/models/evil/v000001/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    manifest["files"][0]["path"] = "../../escaped.bin"
    s3.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(manifest).encode())
    with pytest.raises(PathEscapeError):
        mm.load("evil", dest=tmp_path / "deep" / "dest")
    assert not list(tmp_path.rglob("escaped.bin"))


def test_load_errors(mm: S3ModelManager, make_model: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no complete version"):
        mm.load("nothing")
    mm.save(make_model({"a": b"1"}), "m")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ModelError, match="not an empty directory"):
        mm.load("m", dest=busy)
    assert read_tree(busy) == {"keep.txt": b"mine"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_tree(mm.load("m", dest=empty)) == {"a": b"1"}


def test_names_are_isolated(mm: S3ModelManager, make_model: Callable[..., Path]) -> None:
    mm.save(make_model({"a": b"bert"}), "bert")
    mm.save(make_model({"a": b"bert-large"}), "bert-large")
    assert [v.files for v in mm.list_versions("bert")] == [("a",)]
    assert read_tree(mm.load("bert-large")) == {"a": b"bert-large"}
    with pytest.raises(ModelError, match="invalid model name"):
        mm.save(make_model({"a": b"x"}), "../bert")
