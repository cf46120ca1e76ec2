"""Staging leftovers of killed writers are swept; live writers and committed partitions never are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_genius.core import cli
from airflow_genius.core.data import BatchOutput, DataError, PartitionKey, read_manifest
from airflow_genius.core.data.sweep import GRACE_ENV, STAGING_DIR, resolve_grace, sweep_root, sweep_staging

KEY = PartitionKey("etl", "clean", "manual__2024-01-01T00:00:00+00:00")
HEX = "0123456789abcdef0123456789abcdef"

# A writer in its own process that SIGKILLs itself at a chosen moment of the commit protocol.
DYING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from airflow_genius.core.data import BatchOutput, PartitionKey

    root, moment, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    out = BatchOutput(root, partition=PartitionKey("etl", "clean", "manual__2024-01-01T00:00:00+00:00"))
    for i in range(20):
        out.save(payload * 100, f"part-{i:02d}.bin")
    if moment == "writing":
        os.kill(os.getpid(), signal.SIGKILL)
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        moved_aside = ".replaced-" in os.fspath(dst)  # the committed partition moved out of the way
        published = os.fspath(dst).endswith("T00~3A00~3A00+00~3A00")  # the new one put in its place
        if (moment == "aside" and moved_aside) or (moment == "published" and published):
            os.kill(os.getpid(), signal.SIGKILL)

    os.rename = rename
    if moment == "live":
        print("ready", flush=True)
        sys.stdin.read()  # stays alive, staging open, until the test kills it
    out.commit()
    """
)


def _dying_writer(root: Path, moment: str, payload: str = "new") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", DYING_WRITER, str(root), moment, payload],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def _commit(root: Path, payload: bytes, **kwargs: object) -> BatchOutput:
    out = BatchOutput(root, partition=KEY, **kwargs)  # type: ignore[arg-type]
    for i in range(20):
        out.save(payload * 100, f"part-{i:02d}.bin")
    out.commit()
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file and symlink under ``folder`` (symlinks as their target text, never followed)."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}".encode()
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def _leftover_bytes(staging: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(staging):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _age(folder: Path, seconds: float) -> None:
    """Make everything under ``folder`` look ``seconds`` old."""
    then = time.time() - seconds
    for dirpath, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.utime(os.path.join(dirpath, name), (then, then), follow_symlinks=False)


def _published(root: Path) -> dict[str, bytes]:
    """Everything under ``root`` but staging: the committed partitions."""
    return {rel: data for rel, data in _tree(root).items() if not rel.startswith(STAGING_DIR)}


def _partition(root: Path) -> Path:
    return root / KEY.relative_path()


def _payload_of(root: Path) -> bytes | None:
    manifest = read_manifest(_partition(root))
    if manifest is None:
        return None
    return (_partition(root) / "part-00.bin").read_bytes()[:3]


@pytest.fixture(autouse=True)
def _no_grace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GRACE_ENV, raising=False)


# -- who is alive ------------------------------------------------------------------------------------


def test_live_writer_in_this_process_is_never_swept(tmp_path: Path) -> None:
    root = tmp_path / "out"
    live = BatchOutput(root, partition=PartitionKey("etl", "clean", "live"), staging_grace=0)
    live.save(b"still writing", "a.bin")
    _commit(root, b"old", staging_grace=0)  # a commit to the same root sweeps with grace 0
    assert (live.path / "a.bin").read_bytes() == b"still writing"
    assert sweep_root(root, grace=0).kept_live == 1
    live.commit()
    assert read_manifest(live.location) is not None
    assert not list((root / STAGING_DIR).iterdir())


def test_live_writer_in_another_process_is_kept_until_it_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    writer = subprocess.Popen(
        [sys.executable, "-c", DYING_WRITER, str(root), "live", "abc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        staged = _leftover_bytes(root / STAGING_DIR)
        assert staged > 20 * 300
        report = sweep_root(root, grace=0)
        assert (report.kept_live, report.removed) == (1, [])
        assert _leftover_bytes(root / STAGING_DIR) == staged
    finally:
        writer.kill()
        writer.wait()
    report = sweep_root(root, grace=0)
    assert report.count("staging") == 1 and report.count("lock") == 1
    assert report.bytes == staged
    assert _leftover_bytes(root / STAGING_DIR) == 0 and not list((root / STAGING_DIR).iterdir())


# -- what is swept, and when ---------------------------------------------------------------------------


def test_next_commit_sweeps_dead_leftovers_older_than_the_grace(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _commit(root, b"v1")
    _dying_writer(root, "writing")
    _dying_writer(root, "published")  # v2 in place, its replaced copy (v1) left behind
    staging = root / STAGING_DIR
    before = _leftover_bytes(staging)
    assert before > 2 * 20 * 300
    assert any(".replaced-" in p.name for p in staging.iterdir())

    _commit(root, b"v3")  # default grace: one hour; the leftovers are seconds old
    assert _leftover_bytes(staging) == before

    _age(staging, 2 * 3600)
    _commit(root, b"v4")
    assert _leftover_bytes(staging) == 0 and not list(staging.iterdir())
    assert _payload_of(root) == b"v4v"


def test_grace_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "out"
    _dying_writer(root, "writing")
    monkeypatch.setenv(GRACE_ENV, "0")
    _commit(root, b"v1")
    assert not list((root / STAGING_DIR).iterdir())
    monkeypatch.setenv(GRACE_ENV, "7.5")
    assert resolve_grace() == 7.5


def test_interrupted_replace_puts_the_previous_partition_back(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _commit(root, b"v1")
    committed = _tree(_partition(root))
    _dying_writer(root, "aside")  # killed after moving v1 aside, before putting v2 in place
    assert read_manifest(_partition(root)) is None  # the committed partition is gone ... for now

    report = sweep_root(root, grace=0)
    assert len(report.restored) == 1
    assert _tree(_partition(root)) == committed  # v1 is back, byte for byte, with its _SUCCESS
    assert not list((root / STAGING_DIR).iterdir())


def test_interrupted_replace_is_restored_by_the_next_commit_of_another_run(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _commit(root, b"v1")
    committed = _tree(_partition(root))
    _dying_writer(root, "aside")
    other = BatchOutput(root, partition=PartitionKey("etl", "clean", "other"), staging_grace=0)
    other.save(b"x", "x.bin")
    other.commit()
    assert _tree(_partition(root)) == committed
    assert not list((root / STAGING_DIR).iterdir())


def test_dry_run_removes_nothing_and_the_cli_reports_what_it_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "out"
    _commit(root, b"v1")
    _dying_writer(root, "writing")
    _dying_writer(root, "published")
    staging = root / STAGING_DIR
    before, tree = _leftover_bytes(staging), _tree(tmp_path)

    assert cli.main(["data", "sweep", str(root), "--grace", "0", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert _tree(tmp_path) == tree
    assert "would remove" in dry and f"({before} bytes)" in dry

    assert cli.main(["data", "sweep", f"file://{root}", "--grace", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("removed ") for line in out) == 2  # a staging folder, a replaced copy
    assert out[-1].endswith(
        f"swept 1 staging folder, 1 replaced copy, 2 lock files ({before} bytes); "
        "kept 0 in use, 0 younger than 0s"
    )
    assert _leftover_bytes(staging) == 0
    assert _payload_of(root) == b"new"


def test_leftovers_without_lock_files_are_swept_by_age_and_strangers_are_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _commit(root, b"v1")
    staging = root / STAGING_DIR
    for name in (HEX, f"{HEX}.replaced-0"):  # what older versions left: no lock file
        (staging / name).mkdir()
        (staging / name / "part.bin").write_bytes(b"x" * 1000)
    for stranger in ("notes.txt", HEX.upper(), f"{HEX}.tmp", f"{HEX}.replaced-x"):
        (staging / stranger).write_text("not ours")
    assert sweep_root(root).kept_young == 1  # too young for the default grace
    _age(staging, 7200)
    report = sweep_root(root)
    assert (report.count("staging"), report.count("replaced"), report.bytes) == (1, 1, 2000)
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        ["notes.txt", HEX.upper(), f"{HEX}.tmp", f"{HEX}.replaced-x"]
    )
    assert _payload_of(root) == b"v1v"


def test_custom_staging_root_is_swept_too(tmp_path: Path) -> None:
    root, stage = tmp_path / "out", tmp_path / "stage"
    dead = BatchOutput(root, partition=KEY, staging_root=stage)
    dead.save(b"x" * 500, "x.bin")
    dead._claim.__del__()  # type: ignore[union-attr]  # what a killed process leaves: lock released
    _commit(root, b"v1", staging_root=stage, staging_grace=0)
    assert not list(stage.iterdir())


# -- hostile staging contents: nothing outside the root moves --------------------------------------


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A root with a committed partition, and a folder outside the root with files in it."""
    root = tmp_path / "out"
    _commit(root, b"v1")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret")
    (outside / "sub/data.bin").write_bytes(b"data")
    (outside / "_SUCCESS").write_text("{}")
    return root, outside, _tree(outside)


def _aside_of_partition(root: Path, lock: object = None) -> Path:
    """A committed copy of the partition in staging, as if a dead writer moved it aside (and its lock)."""
    staging = root / STAGING_DIR
    if lock is not None:
        (staging / f"{HEX}.lock").write_text(lock if isinstance(lock, str) else json.dumps(lock))
    aside = staging / f"{HEX}.replaced-0"
    aside.mkdir()
    for path in _partition(root).iterdir():
        (aside / path.name).write_bytes(path.read_bytes())
    return aside


def _lock_info(root: Path | str, target: str) -> dict[str, str]:
    return {"format": "genius-staging-lock/1", "root": str(root), "target": target}


def _manifest_points_outside(root: Path, out: Path) -> None:
    marker = _aside_of_partition(root) / "_SUCCESS"
    text = marker.read_text().replace(_partition(root).as_uri(), (out / "p").as_uri())
    marker.write_text(text)


HOSTILE_SCENES: dict[str, Callable[[Path, Path], object]] = {
    "staging folder is a symlink out": lambda root, out: (root / STAGING_DIR / HEX).symlink_to(out),
    "replaced copy is a symlink out": lambda root, out: (root / STAGING_DIR / f"{HEX}.replaced-0").symlink_to(
        out
    ),
    "lock file is a symlink out": lambda root, out: (root / STAGING_DIR / f"{HEX}.lock").symlink_to(
        out / "secret.txt"
    ),
    "lock target climbs out": lambda root, out: _aside_of_partition(root, _lock_info(root, "../outside/new")),
    "lock target is absolute": lambda root, out: _aside_of_partition(root, _lock_info(root, str(out / "x"))),
    "lock target is in staging": lambda root, out: _aside_of_partition(
        root, _lock_info(root, ".genius-staging/x")
    ),
    "lock of another root": lambda root, out: _aside_of_partition(root, _lock_info(out, "etl/x")),
    "lock is garbage": lambda root, out: _aside_of_partition(root, "\x00{not json"),
    "manifest points outside": _manifest_points_outside,
}


@pytest.mark.parametrize("what", sorted(HOSTILE_SCENES))
def test_hostile_leftovers_never_reach_outside_the_root(
    scene: tuple[Path, Path, dict[str, bytes]], what: str
) -> None:
    root, outside, before = scene
    published = _published(root)
    HOSTILE_SCENES[what](root, outside)
    report = sweep_root(root, grace=0)
    assert report.restored == []  # the partition is in place: nothing to put back
    assert _tree(outside) == before and sorted(p.name for p in outside.parent.iterdir()) == ["out", "outside"]
    assert _published(root) == published
    assert not list((root / STAGING_DIR).iterdir())  # the links themselves are gone


def test_symlinked_staging_folder_is_refused_in_one_line(scene: tuple[Path, Path, dict[str, bytes]]) -> None:
    root, outside, before = scene
    (outside / HEX).mkdir()
    (outside / HEX / "precious.bin").write_bytes(b"precious")
    before = _tree(outside)
    os.rename(root / STAGING_DIR, root / ".old-staging")
    (root / STAGING_DIR).symlink_to(outside)
    with pytest.raises(DataError, match="is a symlink; refusing") as info:
        sweep_root(root, grace=0)
    assert "\n" not in str(info.value)
    assert _tree(outside) == before


BAD_CLI = {
    # id: (arguments after "genius data sweep", GENIUS_STAGING_GRACE_SECONDS or None, message)
    "grace negative": (
        ["{root}", "--grace", "-1"],
        None,
        "--grace must be a number of seconds >= 0, got '-1'",
    ),
    "grace text": (["{root}", "--grace", "abc"], None, "--grace must be a number of seconds >= 0, got 'abc'"),
    "grace nan": (["{root}", "--grace", "nan"], None, "--grace must be a number"),
    "grace inf": (["{root}", "--grace", "inf"], None, "--grace must be a number"),
    "grace empty": (["{root}", "--grace", ""], None, "--grace must be a number"),
    "env negative": (["{root}"], "-5", f"{GRACE_ENV} must be a number of seconds >= 0, got '-5'"),
    "env text": (["{root}"], "soon", f"{GRACE_ENV} must be a number"),
    "root empty": (["", "--grace", "0"], None, "non-empty"),
    "root missing": (["{root}/missing", "--grace", "0"], None, "does not exist"),
    "root is a file": (["{top}/file", "--grace", "0"], None, "is not a folder"),
    "root with query": (["file://{root}?x=1", "--grace", "0"], None, "query string"),
    "root on ftp": (["ftp://host/out", "--grace", "0"], None, "unsupported batch URI scheme"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLI))
def test_bad_sweep_input_is_one_line_and_removes_nothing(
    scene: tuple[Path, Path, dict[str, bytes]],
    case: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, outside, _ = scene
    args, env, message = BAD_CLI[case]
    _dying_writer(root, "writing")  # a real leftover: a refused command must not sweep it either
    (outside.parent / "file").write_text("a file")
    before = _tree(outside.parent)
    if env is not None:
        monkeypatch.setenv(GRACE_ENV, env)
    argv = ["data", "sweep", *(arg.format(root=root, top=outside.parent) for arg in args)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genius: error:") and "\n" not in err and message in err
    assert _tree(outside.parent) == before


@pytest.mark.parametrize("value", ["-1", "nope", "nan", "1e400"])
def test_bad_grace_environment_fails_before_anything_is_written(
    scene: tuple[Path, Path, dict[str, bytes]], value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside, _ = scene
    before = _tree(outside.parent)
    monkeypatch.setenv(GRACE_ENV, value)
    with pytest.raises(DataError) as info:
        BatchOutput(root, partition=KEY)
    assert str(info.value).startswith(GRACE_ENV) and "\n" not in str(info.value)
    assert _tree(outside.parent) == before


# -- the measurement: a bolt SIGKILLed at random moments, many times ----------------------------------

WRITER_TASK = textwrap.dedent(
    """
    import os
    from airflow_genius.core import Bolt

    class ManyFiles(Bolt):
        def write(self, files: int = 200, size: int = 32768) -> int:
            for i in range(files):
                self.output.save(os.urandom(size), f"part-{i:04d}.bin")
            return files
    """
)


def _rise(tmp_path: Path, root: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_genius.core.cli",
            "rise",
            "killtasks:ManyFiles",
            "write",
            "--kind",
            "bolt",
            "--input",
            str(tmp_path / "in"),
            "--output",
            root,
            "--dag-id",
            "etl",
            "--task-id",
            "many",
            "--run-id",
            "manual__2024-01-01T00:00:00+00:00",
            "--state",
            "memory://",
        ],
        env={**os.environ, "PYTHONPATH": str(tmp_path), **(env or {})},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_at_random_moments(tmp_path: Path, root: str, staging: Path, kills: int, seed: int) -> int:
    """Start writers and SIGKILL each at a random point of its progress; returns the kills.

    The point is a number of staged files (or, one time in eight, the moment all 200 are staged,
    when the writer hashes and publishes), not a time: a machine under load slows the writer and
    this loop alike, so nearly every kill lands before the writer ends.
    """
    import random

    rng = random.Random(seed)
    done = 0
    for _ in range(kills * 3):
        known = {p.name for p in staging.iterdir()} if staging.exists() else set()
        writer = _rise(tmp_path, root)
        folder = _wait_for_new_staging(staging, known, writer)
        if folder is None:
            continue
        target = rng.randrange(1, 229)
        _wait_for_staged_files(folder, min(target, 200), writer)
        if target > 200:
            time.sleep(rng.uniform(0, 0.02))
        writer.send_signal(signal.SIGKILL)
        if writer.wait(60) == -signal.SIGKILL:
            done += 1
        if done == kills:
            break
    return done


def _wait_for_new_staging(staging: Path, known: set[str], writer: subprocess.Popen[bytes]) -> Path | None:
    """The staging folder the writer made, or None when it ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if staging.exists():
            new = sorted({p.name for p in staging.iterdir() if "." not in p.name} - known)
            if new:
                return staging / new[0]
        if writer.poll() is not None:
            return None
        time.sleep(0.002)
    raise AssertionError("the writer never started staging")


def _wait_for_staged_files(folder: Path, count: int, writer: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and writer.poll() is None:
        if sum(len(files) for _dirs, _sub, files in os.walk(folder)) >= count:
            return
        time.sleep(0.001)


def _verify_committed(partition: Path) -> None:
    import hashlib

    manifest = read_manifest(partition)
    assert manifest is not None and len(manifest.files) == 200
    for entry in manifest.files:
        assert hashlib.sha256((partition / entry.path).read_bytes()).hexdigest() == entry.sha256


@pytest.mark.slow
def test_sigkilled_bolts_leave_nothing_after_the_next_commit_and_after_genius_data_sweep(
    tmp_path: Path,
) -> None:
    (tmp_path / "killtasks.py").write_text(WRITER_TASK)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/seed.txt").write_text("seed")
    root = tmp_path / "out"
    staging = root / STAGING_DIR
    partition_of = lambda: next(root.glob("etl/many/*/*/*/manual__2024-01-01T00~3A00~3A00+00~3A00"))  # noqa: E731

    # Round 1: >= 10 kills, then the next commit (grace 0) sweeps everything.
    kills = _kill_at_random_moments(tmp_path, str(root), staging, 12, seed=1)
    assert kills >= 10
    round1 = _leftover_bytes(staging)
    assert round1 > 0
    assert _rise(tmp_path, str(root)).wait(120) == 0  # default grace: the leftovers are too young
    assert _leftover_bytes(staging) == round1
    assert _rise(tmp_path, str(root), {GRACE_ENV: "0"}).wait(120) == 0
    after1 = _leftover_bytes(staging)
    assert after1 == 0 and not list(staging.iterdir())
    _verify_committed(partition_of())

    # Round 2: >= 10 kills, then `genius data sweep ROOT --grace 0`.
    kills2 = _kill_at_random_moments(tmp_path, str(root), staging, 12, seed=2)
    assert kills2 >= 10
    round2 = _leftover_bytes(staging)
    assert round2 > 0
    swept = subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", "data", "sweep", str(root), "--grace", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert swept.returncode == 0, swept.stderr
    assert f"({round2} bytes)" in swept.stdout.splitlines()[-1]
    after2 = _leftover_bytes(staging)
    assert after2 == 0 and not list(staging.iterdir())
    _verify_committed(partition_of())  # also when a kill hit between moving aside and publishing
    print(
        f"\nSIGKILL leftovers: round 1 {kills} kills -> {round1} bytes, after next commit {after1}; "
        f"round 2 {kills2} kills -> {round2} bytes, after genius data sweep {after2}\n"
        f"sweep said: {swept.stdout.splitlines()[-1]}"
    )


@pytest.mark.aws
def test_killed_s3_writer_leaves_nothing_in_local_staging(
    tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "killtasks.py").write_text(WRITER_TASK)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/seed.txt").write_text("seed")
    tmp = tmp_path / "tmp"  # S3 outputs stage in $TMPDIR/genius-staging
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    staging = tmp / "genius-staging"
    uri = f"s3://{s3_bucket}/out"
    kills = _kill_at_random_moments(tmp_path, uri, staging, 3, seed=3)
    assert kills >= 1 and _leftover_bytes(staging) > 0
    assert _rise(tmp_path, uri, {GRACE_ENV: "0"}).wait(120) == 0
    assert _leftover_bytes(staging) == 0 and not list(staging.iterdir())

    _kill_at_random_moments(tmp_path, uri, staging, 2, seed=4)
    assert _leftover_bytes(staging) > 0
    swept = subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", "data", "sweep", uri, "--grace", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines()[-1].startswith(str(staging))
    assert _leftover_bytes(staging) == 0


def test_sweep_of_a_missing_staging_folder_is_a_no_op(tmp_path: Path) -> None:
    assert sweep_staging(tmp_path / "nothing", grace=0).summary() == "nothing to sweep"
