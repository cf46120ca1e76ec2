"""Run identities become partition folder names one to one: distinct runs never share a partition."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_genius.core.data import BatchInput, BatchOutput, PartitionKey, read_manifest
from airflow_genius.core.data.locations import parse_data_uri
from airflow_genius.core.data.manifest import identity_segment
from airflow_genius.core.errors import GeniusError, PathEscapeError
from airflow_genius.core.paths import MAX_SEGMENT_BYTES, escape_segment, safe_segment, unescape_segment

TESTS_DIR = Path(__file__).resolve().parents[2]

# Pairs of run ids that the old folding (odd characters -> "_") mapped to one folder.
FOLDED_PAIRS = [
    ("c:1", "c_1"),
    ("a b", "a_b"),
    ("x#y", "x_y"),
    ("é", "_"),
    ("manual__2024-01-01T00:00:00+00:00", "manual__2024-01-01T00_00_00+00_00"),
    ("a~3Ab", "a:b"),  # the escape character itself is escaped
    ("a%3Ab", "a:b"),
]

AIRFLOW_RUN_IDS = {
    "manual__2024-01-01T00:00:00+00:00": "manual__2024-01-01T00~3A00~3A00+00~3A00",
    "scheduled__2024-05-17T06:00:00+00:00": "scheduled__2024-05-17T06~3A00~3A00+00~3A00",
    "asset_triggered__2024-05-17T06:00:00.123456+00:00": "asset_triggered__2024-05-17T06~3A00~3A00.123456+00~3A00",
    "backfill__2024-01-01T00:00:00+00:00": "backfill__2024-01-01T00~3A00~3A00+00~3A00",
}


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _commit(root: Path, run_id: str, payload: bytes) -> BatchOutput:
    out = BatchOutput(root, partition=PartitionKey("etl", "clean", run_id))
    out.save(payload, "data.bin")
    out.commit()
    return out


# -- the defect: two runs, one folder ----------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), FOLDED_PAIRS)
def test_runs_that_used_to_fold_together_keep_their_own_partitions(
    tmp_path: Path, first: str, second: str
) -> None:
    one = _commit(tmp_path, first, b"first run")
    two = _commit(tmp_path, second, b"second run")
    assert one.location != two.location
    # the first run's committed partition survived the second run's commit
    for out, run_id, payload in ((one, first, b"first run"), (two, second, b"second run")):
        manifest = read_manifest(out.location)
        assert manifest is not None and manifest.run.run_id == run_id
        assert BatchInput(out.location, committed_only=True).read_bytes("data.bin") == payload
    runs = sorted(p.name for p in (tmp_path / "etl/clean/_unpartitioned").iterdir())
    assert sorted(unescape_segment(name) for name in runs) == sorted([first, second])


# -- the mapping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("run_id", "folder"), sorted(AIRFLOW_RUN_IDS.items()))
def test_airflow_run_ids_stay_readable_and_portable(run_id: str, folder: str) -> None:
    assert escape_segment(run_id) == folder
    assert identity_segment("run_id", run_id) == folder
    assert ":" not in folder and "%" not in folder
    assert unescape_segment(folder) == run_id


@pytest.mark.parametrize(
    "plain", ["manual__1", "rise__20240101T000000_abc123", "my.dag", "group.task", "a=b+c-d_e.f", "X" * 255]
)
def test_plain_names_keep_their_folder_name(plain: str) -> None:
    # backward compatible: partitions of plain identifiers are where they always were
    assert escape_segment(plain) == safe_segment(plain) == plain


def test_mapping_is_injective_and_reversible_on_random_identifiers() -> None:
    alphabet = "aZ09._=+-~:%/ \\#?*\x00\x01\t\né€😀\ud800~3A%3A"
    rng = random.Random(20240517)
    values = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20_000)}
    values -= {".", ".."}
    names: dict[str, str] = {}
    for value in values:
        name = escape_segment(value)
        assert set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._=+-~")
        assert name not in names, f"{value!r} and {names[name]!r} share the folder {name!r}"
        names[name] = value
        assert unescape_segment(name) == value
    assert len(names) == len(values) > 15_000


def test_escaped_names_stay_within_the_filesystem_limit(tmp_path: Path) -> None:
    longest = ":" * (MAX_SEGMENT_BYTES // 3)  # 85 colons -> 255 bytes
    out = _commit(tmp_path, longest, b"x")
    assert read_manifest(out.location) is not None  # the filesystem accepted the name


def test_map_index_folders_are_distinct() -> None:
    names = {PartitionKey("d", "t", "r", index).relative_path() for index in range(-1, 50)}
    assert len(names) == 51


@pytest.mark.parametrize("name", ["a:b", "a~3a", "a~41", "a~", "a~3", "a~ZZ", "a~C3", "é", "", "a/b"])
def test_unescape_refuses_names_escape_never_makes(name: str) -> None:
    with pytest.raises(PathEscapeError) as info:
        unescape_segment(name)
    assert "\n" not in str(info.value)


# -- bad input: one line, and nothing on disk moves ------------------------------------------------

TOO_LONG = [
    "x" * (MAX_SEGMENT_BYTES + 1),  # 256 safe characters
    ":" * 86,  # 86 * 3 = 258 bytes once escaped
    "é" * 43,  # 43 * 6 = 258 bytes once escaped
]
HOSTILE_RUN_IDS = [
    "",
    ".",
    "..",
    ".hidden",
    ".genius-staging",
    "a/b",
    "../../outside",
    "a\\b",
    "nul\x00",
    *TOO_LONG,
]


@pytest.fixture
def committed(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """An output root with one committed partition, and a file next to (outside) the root."""
    root = tmp_path / "out"
    out = _commit(root, "manual__2024-01-01T00:00:00+00:00", b"committed")
    (tmp_path / "outside.txt").write_text("outside")
    assert read_manifest(out.location) is not None
    return root, tmp_path, _tree(tmp_path)


@pytest.mark.parametrize("field", ["dag_id", "task_id", "run_id"])
@pytest.mark.parametrize("value", [*HOSTILE_RUN_IDS, None, 5], ids=repr)
def test_hostile_identities_fail_in_one_line_and_touch_nothing(
    committed: tuple[Path, Path, dict[str, bytes]], field: str, value: object
) -> None:
    root, top, before = committed
    identity: dict[str, object] = {"dag_id": "etl", "task_id": "clean", "run_id": "r", field: value}
    with pytest.raises(GeniusError) as info:
        out = BatchOutput(root, partition=PartitionKey(**identity))  # type: ignore[arg-type]
        out.save(b"evil", "data.bin")
        out.commit()
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 200
    assert field in message
    if isinstance(value, str) and value in TOO_LONG:
        assert f"limit is {MAX_SEGMENT_BYTES}" in message
    assert _tree(top) == before  # outside file, committed partition, staging: all as they were


@pytest.mark.parametrize("run_id", ["..", "x" * 300, ":" * 86])
def test_hostile_run_id_through_genius_rise_is_one_line_exit_2(
    committed: tuple[Path, Path, dict[str, bytes]], run_id: str
) -> None:
    root, top, before = committed
    inp = top / "in"
    inp.mkdir()
    (inp / "a.txt").write_text("a")
    before = _tree(top)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_genius.core.cli",
            "rise",
            "genius_samples.tasks:Copier",
            "copy",
            "--kind",
            "bolt",
            "--input",
            str(inp),
            "--output",
            str(root),
            "--dag-id",
            "etl",
            "--task-id",
            "clean",
            "--run-id",
            run_id,
            "--state",
            "memory://",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        cwd=top,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("genius: error:")]
    assert len(errors) == 1 and "run_id" in errors[0], done.stderr
    assert _tree(top) == before


def test_committed_manifest_names_the_real_run_id(tmp_path: Path) -> None:
    out = _commit(tmp_path, "c:1", b"x")
    folder = parse_data_uri(out.location).path
    assert folder is not None and folder.name == "c~3A1"
    raw = json.loads((folder / "_SUCCESS").read_text())
    assert raw["run"]["run_id"] == "c:1"
    assert hashlib.sha256(b"x").hexdigest() == raw["files"][0]["sha256"]
