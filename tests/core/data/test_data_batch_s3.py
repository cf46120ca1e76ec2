"""BatchOutput / BatchInput on S3 against the real moto_server of the test rig (no S3 mocks)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core.data import (
    MANIFEST_NAME,
    BatchInput,
    BatchOutput,
    DataError,
    PartitionKey,
    read_manifest,
)
from airflow_genius.core.errors import BackendUnavailableError, PathEscapeError

DATE = datetime(2024, 5, 17, 6, 0, tzinfo=timezone.utc)
RUN = "scheduled__2024-05-17T06:00:00+00:00"
RUN_SEGMENT = "scheduled__2024-05-17T06~3A00~3A00+00~3A00"
MB = 1024 * 1024


def _key(map_index: int = -1, run_id: str = RUN) -> PartitionKey:
    return PartitionKey("etl", "clean", run_id, map_index, DATE)


@pytest.fixture
def s3(aws_endpoint: str) -> Any:
    import boto3

    return boto3.client("s3")


def _objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix) :]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


pytestmark = pytest.mark.aws


# -- output ------------------------------------------------------------------------------------------


def test_s3_commit_layout_and_manifest(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    big = os.urandom(9 * MB)  # above the multipart threshold below: uploaded in parts
    out = BatchOutput(
        f"s3://{s3_bucket}/out", partition=_key(), staging_root=tmp_path, multipart_threshold=5 * MB
    )
    out.save({"rows": 2}, "summary.json")
    out.save("a\nb\n", "nested/lines.txt")
    out.save(big, "big.bin")
    manifest = out.commit()

    prefix = f"out/etl/clean/2024/05/17/{RUN_SEGMENT}/"
    assert out.location == f"s3://{s3_bucket}/{prefix}"
    stored = _objects(s3, s3_bucket, prefix)
    assert sorted(stored) == [MANIFEST_NAME, "big.bin", "nested/lines.txt", "summary.json"]
    assert json.loads(stored["summary.json"]) == {"rows": 2}
    assert stored["big.bin"] == big
    for entry in manifest.files:
        assert entry.size == len(stored[entry.path])
        assert entry.sha256 == hashlib.sha256(stored[entry.path]).hexdigest()
    # the big file really went through a multipart upload (its ETag is "<md5>-<parts>")
    assert "-" in s3.head_object(Bucket=s3_bucket, Key=prefix + "big.bin")["ETag"]
    assert s3.head_object(Bucket=s3_bucket, Key=prefix + "summary.json")["ContentType"] == "application/json"

    marker = json.loads(stored[MANIFEST_NAME])
    assert marker["run"]["run_id"] == RUN and marker["partition"] == "2024/05/17"
    assert read_manifest(out.location) == manifest
    assert not list(tmp_path.iterdir())  # staging removed after the upload


def test_s3_rerun_replaces_partition_exactly(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    root = f"s3://{s3_bucket}/out"
    first = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    first.save(b"v1", "keep.bin")
    first.save(b"old", "old/extra.bin")
    first.commit()

    second = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    second.save(b"v2", "keep.bin")
    second.save(b"new", "new.bin")
    manifest = second.commit()

    prefix = f"out/etl/clean/2024/05/17/{RUN_SEGMENT}/"
    stored = _objects(s3, s3_bucket, prefix)
    assert sorted(stored) == [MANIFEST_NAME, "keep.bin", "new.bin"]
    assert stored["keep.bin"] == b"v2"
    assert read_manifest(second.location) == manifest


def test_s3_partition_isolation(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    root = f"s3://{s3_bucket}/out"
    for map_index in (0, 1):
        out = BatchOutput(root, partition=_key(map_index), staging_root=tmp_path)
        out.save({"i": map_index}, "part.json")
        out.commit()
    # "r1" must not treat the keys of "r10" as its own leftovers (prefixes end with '/')
    for run_id in ("r1", "r10"):
        out = BatchOutput(root, partition=_key(run_id=run_id), staging_root=tmp_path)
        out.save(run_id, "run.txt")
        out.commit()

    rerun = BatchOutput(root, partition=_key(0), staging_root=tmp_path)
    rerun.save({"i": 0, "retry": True}, "other.json")
    rerun.commit()
    rerun_r1 = BatchOutput(root, partition=_key(run_id="r1"), staging_root=tmp_path)
    rerun_r1.save("again", "again.txt")
    rerun_r1.commit()

    base = "out/etl/clean/2024/05/17/"
    stored = _objects(s3, s3_bucket, base)
    assert sorted(stored) == [
        f"r1/{MANIFEST_NAME}",
        "r1/again.txt",
        f"r10/{MANIFEST_NAME}",
        "r10/run.txt",
        f"{RUN_SEGMENT}/map_index=0/{MANIFEST_NAME}",
        f"{RUN_SEGMENT}/map_index=0/other.json",
        f"{RUN_SEGMENT}/map_index=1/{MANIFEST_NAME}",
        f"{RUN_SEGMENT}/map_index=1/part.json",
    ]


@pytest.mark.parametrize("how", ["abort", "never_committed"])
def test_s3_crash_before_commit_keeps_previous_partition(
    s3: Any, s3_bucket: str, tmp_path: Path, how: str
) -> None:
    root = f"s3://{s3_bucket}/out"
    first = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    first.save(b"good", "data.bin")
    committed = first.commit()
    before = _objects(s3, s3_bucket, "out/")

    retry = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    retry.save(b"half", "data.bin")
    retry.save(b"junk", "junk.bin")
    if how == "abort":
        retry.abort()
        assert not list(tmp_path.iterdir())
    assert _objects(s3, s3_bucket, "out/") == before
    assert read_manifest(first.location) == committed


def test_s3_interrupted_commit_reads_as_uncommitted_then_retries(
    s3: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"s3://{s3_bucket}/out"
    first = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    first.save(b"v1", "a.bin")
    first.save(b"stale", "stale.bin")
    first.commit()

    from airflow_genius.core.data import _s3

    real_delete = _s3.delete_keys

    def dies(*args: Any, **kwargs: Any) -> None:  # failure injection: the worker dies mid-commit
        raise OSError("injected: worker lost")

    retry = BatchOutput(root, partition=_key(), staging_root=tmp_path)
    retry.save(b"v2", "a.bin")
    monkeypatch.setattr(_s3, "delete_keys", dies)
    with pytest.raises(OSError, match="injected"):
        retry.commit()
    # the old marker went first: readers see "not committed", never a mix of two attempts
    assert read_manifest(retry.location) is None
    with pytest.raises(DataError, match="not committed"):
        BatchInput(retry.location, cache_dir=tmp_path / "cache", committed_only=True).sync()

    monkeypatch.setattr(_s3, "delete_keys", real_delete)
    manifest = retry.commit()  # the same output can simply commit again
    assert manifest.paths == ["a.bin"]
    stored = _objects(s3, s3_bucket, "out/")
    assert sorted(k.rsplit("/", 1)[1] for k in stored) == [MANIFEST_NAME, "a.bin"]


def test_missing_boto3_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the [aws] extra looks like
    out = BatchOutput("s3://bucket/out", partition=_key(), staging_root=tmp_path)
    out.save(b"x", "x.bin")
    with pytest.raises(BackendUnavailableError, match=r"airflow-provider-genius\[aws\]"):
        out.commit()
    with pytest.raises(BackendUnavailableError, match=r"\[aws\]"):
        BatchInput("s3://bucket/in", cache_dir=tmp_path / "cache").sync()


# -- input -------------------------------------------------------------------------------------------


def test_s3_incremental_sync(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    big = os.urandom(12 * MB)
    objects = {
        "a.json": b'{"a": 1}',
        "sub/b.jsonl": b'{"n": 1}\n{"n": 2}\n',
        "sub/deeper/c.txt": b"c" * 100,
        "big.bin": big,
        MANIFEST_NAME: b"{}",
        ".hidden/x": b"x",
    }
    for rel, body in objects.items():
        s3.put_object(Bucket=s3_bucket, Key=f"in/{rel}", Body=body)
    s3.put_object(Bucket=s3_bucket, Key="in/folder-marker/", Body=b"")
    s3.put_object(Bucket=s3_bucket, Key="in-sibling/not-mine.txt", Body=b"no")

    def fresh() -> BatchInput:
        return BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path / "cache", multipart_threshold=5 * MB)

    inp = fresh()
    local = inp.sync()
    assert tmp_path / "cache" in local.parents
    assert inp.last_sync is not None
    assert (inp.last_sync.downloaded, inp.last_sync.skipped, inp.last_sync.deleted) == (6, 0, 0)
    assert inp.last_sync.bytes == sum(len(b) for b in objects.values())
    assert inp.files() == ["a.json", "big.bin", "sub/b.jsonl", "sub/deeper/c.txt"]
    assert inp.read_bytes("big.bin") == big
    assert [r["n"] for r in inp.iter_json_lines("sub/b.jsonl")] == [1, 2]

    # second sync (new instance, as in the next run): nothing downloaded
    again = fresh()
    again.sync()
    assert again.last_sync is not None
    assert (again.last_sync.downloaded, again.last_sync.skipped, again.last_sync.deleted) == (0, 6, 0)

    # a changed object (same size, new content → new ETag) is downloaded again; a deleted one removed
    s3.put_object(Bucket=s3_bucket, Key="in/sub/deeper/c.txt", Body=b"C" * 100)
    s3.delete_object(Bucket=s3_bucket, Key="in/a.json")
    third = fresh()
    third.sync()
    assert third.last_sync is not None
    assert (third.last_sync.downloaded, third.last_sync.skipped, third.last_sync.deleted) == (1, 4, 1)
    assert third.last_sync.bytes == 100
    assert third.read_bytes("sub/deeper/c.txt") == b"C" * 100
    assert not (local / "a.json").exists()
    assert third.files() == ["big.bin", "sub/b.jsonl", "sub/deeper/c.txt"]

    # a local copy edited by someone is not trusted; a stray local file is removed; empty folders go
    (local / "sub/b.jsonl").write_bytes(b"tampered")
    (local / "stray.txt").write_text("stray")
    s3.delete_object(Bucket=s3_bucket, Key="in/sub/deeper/c.txt")
    fourth = fresh()
    fourth.sync()
    assert fourth.last_sync is not None
    assert (fourth.last_sync.downloaded, fourth.last_sync.deleted) == (1, 2)
    assert fourth.read_bytes("sub/b.jsonl") == objects["sub/b.jsonl"]
    assert not (local / "sub/deeper").exists()
    assert fourth.files() == ["big.bin", "sub/b.jsonl"]


def test_s3_input_path_syncs_lazily(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="data/x.json", Body=b"[1]")
    s3.put_object(Bucket=s3_bucket, Key="data/empty.txt", Body=b"")
    inp = BatchInput(f"s3://{s3_bucket}/data", cache_dir=tmp_path)
    assert inp.last_sync is None
    assert inp.read_json("x.json") == [1]  # first access syncs
    assert inp.read_bytes("empty.txt") == b""
    assert inp.last_sync is not None and inp.last_sync.downloaded == 2


def test_s3_committed_only_input_trusts_the_manifest(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    out = BatchOutput(f"s3://{s3_bucket}/out", partition=_key(), staging_root=tmp_path / "stage")
    out.save({"ok": True}, "ok.json")
    manifest = out.commit()
    prefix = out.location.removeprefix(f"s3://{s3_bucket}/")
    # an object that is not in the manifest (e.g. from an attempt being committed) is invisible
    s3.put_object(Bucket=s3_bucket, Key=prefix + "in-flight.json", Body=b"{}")

    inp = BatchInput(out.location, cache_dir=tmp_path / "cache", committed_only=True)
    assert inp.files() == ["ok.json"]
    assert inp.manifest == manifest
    assert not (inp.path / "in-flight.json").exists()
    plain = BatchInput(out.location, cache_dir=tmp_path / "cache2")
    assert plain.files() == ["in-flight.json", "ok.json"]


def test_cache_folder_that_is_not_a_mirror_is_left_alone(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="in/x.txt", Body=b"x")
    inp = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path)
    assert inp.cache_dir is not None
    inp.cache_dir.mkdir(parents=True)
    (inp.cache_dir / "precious.txt").write_text("do not delete")
    with pytest.raises(DataError, match="not a genius mirror"):
        inp.sync()
    assert (inp.cache_dir / "precious.txt").read_text() == "do not delete"


def test_two_inputs_share_one_cache_root(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="one/x.txt", Body=b"1")
    s3.put_object(Bucket=s3_bucket, Key="two/y.txt", Body=b"2")
    one = BatchInput(f"s3://{s3_bucket}/one", cache_dir=tmp_path)
    two = BatchInput(f"s3://{s3_bucket}/two", cache_dir=tmp_path)
    assert one.sync() != two.sync()
    assert (one.files(), two.files()) == (["x.txt"], ["y.txt"])


@pytest.mark.parametrize(
    ("key", "error", "message"),
    [
        ("in//abs.txt", PathEscapeError, "absolute"),
        ("in/../escape.txt", PathEscapeError, "escapes its root"),
        ("in/sub/../../escape.txt", PathEscapeError, "escapes its root"),
        ("in/sub/./x.txt", DataError, "not a clean relative path"),
    ],
)
def test_hostile_s3_keys_are_refused(
    s3: Any, s3_bucket: str, tmp_path: Path, key: str, error: type[Exception], message: str
) -> None:
    s3.put_object(Bucket=s3_bucket, Key="in/ok.txt", Body=b"ok")
    try:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    except Exception as exc:  # S3 itself may refuse some keys: then there is nothing to mirror
        pytest.fail(f"moto_server refused key {key!r}: {exc}")
    inp = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path / "cache")
    with pytest.raises(error, match=message) as info:
        inp.sync()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache/escape.txt").exists()


def test_reserved_keys_are_not_mirrored(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="in/x.txt", Body=b"x")
    s3.put_object(Bucket=s3_bucket, Key="in/.genius-sync-index.json", Body=b"not our index")
    inp = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path)
    inp.sync()
    again = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path)
    again.sync()
    assert again.last_sync is not None and (again.last_sync.downloaded, again.last_sync.skipped) == (0, 1)


def test_object_and_folder_clash_is_refused(s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="in/a", Body=b"file")
    s3.put_object(Bucket=s3_bucket, Key="in/a/b", Body=b"child")
    with pytest.raises(DataError, match="both an object and a folder"):
        BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path).sync()


def test_missing_prefix_syncs_to_an_empty_folder(s3_bucket: str, tmp_path: Path) -> None:
    inp = BatchInput(f"s3://{s3_bucket}/nothing-here", cache_dir=tmp_path)
    assert inp.files() == []
    assert inp.last_sync is not None and inp.last_sync.downloaded == 0


def test_object_changing_during_sync_is_detected_and_next_sync_resumes(
    s3: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_genius.core.data import _s3

    bodies = {f"f{i}.txt": f"body {i}".encode() for i in range(5)}
    bodies["f3.txt"] = os.urandom(6 * MB)  # ranged download: every GET carries If-Match <listed ETag>
    for rel, body in bodies.items():
        s3.put_object(Bucket=s3_bucket, Key=f"in/{rel}", Body=body)
    real_list = _s3.list_objects

    def listed_before_a_change(client: Any, bucket: str, prefix: str) -> Any:
        # failure injection: the listing saw another version of f3 than the one S3 now holds
        for obj in real_list(client, bucket, prefix):
            yield (
                _s3.S3Object(obj.key, obj.size, '"0123456789abcdef0123456789abcdef"')
                if obj.key.endswith("f3.txt")
                else obj
            )

    monkeypatch.setattr(_s3, "list_objects", listed_before_a_change)
    first = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path, multipart_threshold=5 * MB)
    with pytest.raises(DataError, match=r"f3\.txt changed while it was being synced"):
        first.sync()

    monkeypatch.setattr(_s3, "list_objects", real_list)
    again = BatchInput(f"s3://{s3_bucket}/in", cache_dir=tmp_path)
    again.sync()  # the half-synced folder is a mirror already: resumed, not refused
    assert again.last_sync is not None
    assert again.last_sync.downloaded + again.last_sync.skipped == 5
    assert again.last_sync.downloaded >= 1
    assert {rel: again.read_bytes(rel) for rel in again.files()} == bodies
