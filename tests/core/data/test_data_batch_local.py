"""BatchOutput / BatchInput on local folders: commit layout, manifest, idempotent re-runs, crashes."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_genius.core.data import (
    MANIFEST_NAME,
    BatchInput,
    BatchOutput,
    DataError,
    PartitionKey,
    read_manifest,
)
from airflow_genius.core.data.locations import parse_data_uri

DATE = datetime(2024, 5, 17, 6, 0, tzinfo=timezone.utc)
RUN = "scheduled__2024-05-17T06:00:00+00:00"


def _key(map_index: int = -1, run_id: str = RUN) -> PartitionKey:
    return PartitionKey("etl", "clean", run_id, map_index, DATE)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _local(location: str) -> Path:
    path = parse_data_uri(location).path
    assert path is not None
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_save_and_commit_layout_and_manifest(tmp_path: Path) -> None:
    root = tmp_path / "out"
    out = BatchOutput(str(root), partition=_key())
    assert out.save(b"\x00\x01binary", "raw/blob.bin").read_bytes() == b"\x00\x01binary"
    out.save("héllo\n", "notes.txt")
    out.save({"rows": 3, "name": "ü"}, "summary.json")
    out.save([1, 2, 3], "nested/deeper/list.json")
    (out.path / "direct.csv").write_text("a,b\n1,2\n")  # tasks may also write into out.path directly
    manifest = out.commit()

    partition = root / "etl/clean/2024/05/17/scheduled__2024-05-17T06~3A00~3A00+00~3A00"
    assert out.location == partition.as_uri() + "/"
    files = _tree(partition)
    assert sorted(files) == sorted(
        [MANIFEST_NAME, "direct.csv", "nested/deeper/list.json", "notes.txt", "raw/blob.bin", "summary.json"]
    )
    assert json.loads(files["summary.json"]) == {"rows": 3, "name": "ü"}
    assert files["notes.txt"].decode("utf-8") == "héllo\n"

    # the manifest lists every file with its size and sha256, plus the run identity
    assert manifest.paths == [
        "direct.csv",
        "nested/deeper/list.json",
        "notes.txt",
        "raw/blob.bin",
        "summary.json",
    ]
    for entry in manifest.files:
        assert entry.size == len(files[entry.path])
        assert entry.sha256 == _sha(files[entry.path])
    assert manifest.run == _key()
    assert manifest.partition == "2024/05/17"
    assert manifest.location == out.location
    assert manifest.committed_at.tzinfo is not None

    # _SUCCESS holds exactly that manifest, readable back through read_manifest (path or URI)
    raw = json.loads(files[MANIFEST_NAME])
    assert raw["format"] == "genius-batch-manifest/1"
    assert raw["run"] == {
        "dag_id": "etl",
        "task_id": "clean",
        "run_id": RUN,
        "map_index": -1,
        "logical_date": DATE.isoformat(),
    }
    assert read_manifest(out.location) == manifest
    assert read_manifest(str(partition)) == manifest

    # staging is gone, nothing else was left next to the partition
    assert not list((root / ".genius-staging").iterdir())
    assert out.committed
    with pytest.raises(DataError, match="already committed"):
        out.save(b"late", "late.bin")


def test_read_back_through_batch_input(tmp_path: Path) -> None:
    out = BatchOutput(tmp_path / "out", partition=_key())
    out.save({"a": 1}, "a.json")
    out.save('{"x": 1}\n\n{"x": 2}\n', "rows.jsonl")
    out.commit()
    inp = BatchInput(out.location, committed_only=True)
    assert inp.sync() == tmp_path / "out/etl/clean/2024/05/17/scheduled__2024-05-17T06~3A00~3A00+00~3A00"
    assert inp.files() == ["a.json", "rows.jsonl"]
    assert inp.read_json("a.json") == {"a": 1}
    assert list(inp.iter_json_lines("rows.jsonl")) == [{"x": 1}, {"x": 2}]
    assert inp.manifest is not None and inp.manifest.paths == ["a.json", "rows.jsonl"]
    assert inp.last_sync is not None and inp.last_sync.downloaded == 0 and inp.last_sync.skipped == 2


def test_map_index_isolation(tmp_path: Path) -> None:
    root = tmp_path / "out"
    outs = [BatchOutput(root, partition=_key(i)) for i in range(3)]
    for i, out in enumerate(outs):
        out.save({"index": i}, "part.json")
    for out in outs:
        out.commit()
    # re-running map index 1 with other files touches neither 0 nor 2
    again = BatchOutput(root, partition=_key(1))
    again.save({"index": 1, "retry": True}, "other.json")
    again.commit()
    base = root / "etl/clean/2024/05/17/scheduled__2024-05-17T06~3A00~3A00+00~3A00"
    assert sorted(p.name for p in base.iterdir()) == ["map_index=0", "map_index=1", "map_index=2"]
    assert sorted(_tree(base / "map_index=0")) == [MANIFEST_NAME, "part.json"]
    assert sorted(_tree(base / "map_index=1")) == [MANIFEST_NAME, "other.json"]
    assert json.loads((base / "map_index=2/part.json").read_text()) == {"index": 2}


def test_rerun_replaces_the_partition_exactly(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = BatchOutput(root, partition=_key())
    first.save(b"v1", "keep.bin")
    first.save(b"old", "old/extra.bin")
    first.commit()

    second = BatchOutput(root, partition=_key())
    second.save(b"v2", "keep.bin")
    second.save(b"new", "new.bin")
    manifest = second.commit()

    partition = _local(second.location)
    assert _tree(partition) == {
        "keep.bin": b"v2",
        "new.bin": b"new",
        MANIFEST_NAME: (partition / MANIFEST_NAME).read_bytes(),
    }
    assert read_manifest(second.location) == manifest
    # the previous partition was moved aside and deleted: nothing accumulates in staging
    assert not list((root / ".genius-staging").iterdir())


@pytest.mark.parametrize("how", ["abort", "never_committed", "exception_in_with"])
def test_crash_before_commit_keeps_previous_partition(tmp_path: Path, how: str) -> None:
    root = tmp_path / "out"
    first = BatchOutput(root, partition=_key())
    first.save(b"good", "data.bin")
    committed = first.commit()
    partition = _local(first.location)
    before = _tree(partition)

    retry = BatchOutput(root, partition=_key())
    if how == "exception_in_with":
        with pytest.raises(RuntimeError), retry:
            retry.save(b"half", "data.bin")
            retry.save(b"junk", "junk.bin")
            raise RuntimeError("task died")
    else:
        retry.save(b"half", "data.bin")
        retry.save(b"junk", "junk.bin")
        if how == "abort":
            retry.abort()
            retry.abort()  # idempotent
    assert _tree(partition) == before
    assert read_manifest(first.location) == committed
    if how != "never_committed":
        assert not list((root / ".genius-staging").iterdir())


def test_with_block_commits(tmp_path: Path) -> None:
    with BatchOutput(tmp_path, partition=_key()) as out:
        out.save(b"x", "x.bin")
    assert out.committed and read_manifest(out.location) is not None
    out.abort()  # no-op after a commit: a committed partition is never undone
    assert read_manifest(out.location) is not None


def test_empty_output_commits_an_empty_partition(tmp_path: Path) -> None:
    out = BatchOutput(tmp_path, partition=PartitionKey("d", "t", "r"))
    manifest = out.commit()
    assert manifest.files == ()
    assert read_manifest(out.location) == manifest
    assert out.location.endswith("/d/t/_unpartitioned/r/")


def test_uncommitted_partition_reads_as_none(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "nothing") is None
    assert read_manifest(f"file://{tmp_path}/nothing/") is None
    with pytest.raises(DataError, match="not committed"):
        BatchInput(tmp_path, committed_only=True).sync()


def test_staging_on_another_filesystem_is_refused(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than tmp_path (not an engine: safe to skip)")
    out = BatchOutput(tmp_path / "out", partition=_key(), staging_root=shm / "genius-test-staging")
    with pytest.raises(DataError, match="same filesystem"):
        out.save(b"x", "x.bin")


def test_custom_staging_root_on_same_filesystem(tmp_path: Path) -> None:
    out = BatchOutput(tmp_path / "out", partition=_key(), staging_root=tmp_path / "stage")
    out.save(b"x", "x.bin")
    assert tmp_path / "stage" in out.path.parents
    out.commit()
    assert read_manifest(out.location).paths == ["x.bin"]  # type: ignore[union-attr]
    assert not list((tmp_path / "stage").iterdir())


def test_save_rejects_reserved_and_unserialisable(tmp_path: Path) -> None:
    out = BatchOutput(tmp_path, partition=_key())
    with pytest.raises(DataError, match="reserved"):
        out.save(b"x", MANIFEST_NAME)
    with pytest.raises(DataError, match="JSON-serialisable"):
        out.save({1, 2}, "set.json")
    with pytest.raises(DataError, match="JSON-serialisable"):
        out.save(float("nan"), "nan.json")
    (out.path / MANIFEST_NAME).write_text("forged")
    with pytest.raises(DataError, match="reserved"):
        out.commit()


def test_local_input_lists_and_reads(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text('{"k": "v"}')
    (tmp_path / "sub/b.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    (tmp_path / "sub/bad.jsonl").write_text('{"n": 1}\n{oops\n')
    (tmp_path / MANIFEST_NAME).write_text("{}")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / ".genius-staging/abc").mkdir(parents=True)
    (tmp_path / ".genius-staging/abc/partial.json").write_text("{}")
    (tmp_path / "sub/_SUCCESS").write_text("{}")

    inp = BatchInput(f"file://{tmp_path}")
    assert inp.path == tmp_path  # local input is used in place, not copied
    assert inp.files() == ["a.json", "sub/b.jsonl", "sub/bad.jsonl"]
    assert inp.read_json("a.json") == {"k": "v"}
    assert inp.read_bytes("sub/../a.json") == b'{"k": "v"}'
    assert [row["n"] for row in inp.iter_json_lines("sub/b.jsonl")] == [1, 2]
    with pytest.raises(DataError, match=r"sub/bad.jsonl:2: invalid JSON"):
        list(inp.iter_json_lines("sub/bad.jsonl"))
    with pytest.raises(DataError, match="invalid JSON at line 1"):
        inp.read_json(".hidden")


def test_missing_local_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        BatchInput(tmp_path / "missing").sync()


@pytest.mark.parametrize(
    "module", ["airflow_genius.core.data.batch_input", "airflow_genius.core.data.batch_output"]
)
def test_module_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
