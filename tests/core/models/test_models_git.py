"""Git model store against real bare repositories created in tmp_path (the real git CLI, no mocks)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from models_testutil import SMALL_MODEL, random_bytes, read_tree

from airflow_genius.core.models import (
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    open_model_manager,
)
from airflow_genius.core.models.git import GitModelManager


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "models.git"
    git("init", "--bare", "--quiet", str(repo))
    return repo


@pytest.fixture
def git_uri(bare_repo: Path) -> str:
    return f"git+file://{bare_repo}"


@pytest.fixture
def mm(git_uri: str) -> Iterator[GitModelManager]:
    manager = open_model_manager(git_uri)
    assert isinstance(manager, GitModelManager)
    with manager:
        yield manager


def test_save_list_load(
    mm: GitModelManager, bare_repo: Path, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    first = {**SMALL_MODEL, "bin/run.sh": b"#!/bin/sh\necho hi\n", "big.bin": random_bytes(300_000, seed=2)}
    # A model may carry its own .gitignore/.gitattributes: they must not filter or convert anything.
    second = {
        **SMALL_MODEL,
        ".gitignore": b"*.bin\n",
        ".gitattributes": b"*.txt text eol=crlf\n* filter=lfs\n",
        "weights.bin": b"ignored? no\n",
        "tokenizer/vocab.txt": b"x\ny\n",
    }
    assert mm.list_versions("bert") == []
    v1 = mm.save(
        make_model(first, executable=("bin/run.sh",)), "bert", {"accuracy": 0.8, "nested": {"k": [1]}}
    )
    v2 = mm.save(make_model(second), "bert", {"accuracy": 0.9})
    assert (v1, v2) == ("v000001", "v000002")

    versions = mm.list_versions("bert")
    assert [v.version for v in versions] == ["v000001", "v000002"]
    assert versions[0].metadata == {"accuracy": 0.8, "nested": {"k": [1]}}
    assert versions[1].metadata == {"accuracy": 0.9}
    assert versions[1].files == tuple(sorted(second))
    assert versions[0].size == sum(len(c) for c in first.values())
    assert versions[0].created_at is not None and versions[1].created_at is not None
    assert versions[0].created_at <= versions[1].created_at
    commit = git("--git-dir", str(bare_repo), "rev-parse", "bert/v000002^{commit}").strip()
    assert versions[1].location == f"git+file://{bare_repo}@{commit}"

    latest = mm.load("bert")
    assert read_tree(latest) == second
    explicit = mm.load("bert", "v1", dest=tmp_path / "out" / "v1")
    assert read_tree(explicit) == first
    assert os.access(explicit / "bin" / "run.sh", os.X_OK)
    assert not os.access(explicit / "config.json", os.X_OK)


def test_repository_layout_branch_and_annotated_tags(
    mm: GitModelManager, bare_repo: Path, make_model: Callable[..., Path]
) -> None:
    mm.save(make_model({"a.txt": b"1"}), "lora", {"rank": 8})
    mm.save(make_model({"a.txt": b"2"}), "lora", {"rank": 16})
    gd = ("--git-dir", str(bare_repo))
    assert git(*gd, "tag", "--list").split() == ["lora/v000001", "lora/v000002"]
    # One commit per version on models/<name>, each tag on its commit.
    log = git(*gd, "log", "--format=%H %s", "models/lora").splitlines()
    assert [line.split(" ", 1)[1] for line in log] == ["lora v000002", "lora v000001"]
    assert git(*gd, "rev-parse", "lora/v000002^{commit}").strip() == log[0].split()[0]
    assert git(*gd, "cat-file", "-t", "lora/v000001").strip() == "tag"  # annotated
    message = json.loads(git(*gd, "tag", "--list", "--format=%(contents)", "lora/v000001"))
    assert message["metadata"] == {"rank": 8}
    assert message["name"] == "lora" and message["version"] == "v000001"
    assert git(*gd, "show", "lora/v000001:a.txt") == "1"


def test_two_models_in_one_repository_are_isolated(
    mm: GitModelManager, git_uri: str, make_model: Callable[..., Path]
) -> None:
    mm.save(make_model({"w": b"alpha-1"}), "alpha", {"m": "a"})
    mm.save(make_model({"w": b"alpha-2"}), "alpha")
    mm.save(make_model({"w": b"alpha-large"}), "alpha-large")
    assert mm.save(make_model({"w": b"beta-1", "x": b"only beta"}), "beta", {"m": "b"}) == "v000001"

    with open_model_manager(git_uri) as other:  # a second manager (fresh cache) sees the same state
        assert [v.version for v in other.list_versions("alpha")] == ["v000001", "v000002"]
        assert [v.version for v in other.list_versions("beta")] == ["v000001"]
        assert other.list_versions("beta")[0].metadata == {"m": "b"}
        assert read_tree(other.load("beta")) == {"w": b"beta-1", "x": b"only beta"}
        assert read_tree(other.load("alpha")) == {"w": b"alpha-2"}
        assert read_tree(other.load("alpha-large")) == {"w": b"alpha-large"}
        assert other.list_versions("gamma") == []
        with pytest.raises(ModelNotFoundError, match="'gamma' has no version"):
            other.load("gamma")
        with pytest.raises(ModelNotFoundError, match="no version v000003"):
            other.load("alpha", "v3")


@pytest.mark.parametrize("name", ["bad/name", "..", "x.lock", "-rf", "a b", "HEAD^1", "x~1", "x:y"])
def test_invalid_names_are_rejected(mm: GitModelManager, make_model: Callable[..., Path], name: str) -> None:
    folder = make_model({"a": b"1"})
    with pytest.raises(ModelError, match="invalid model name"):
        mm.save(folder, name)
    with pytest.raises(ModelError, match="invalid model name"):
        mm.load(name)


def test_works_without_any_git_identity(
    git_uri: str,
    bare_repo: Path,
    make_model: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    with open_model_manager(git_uri) as mm:
        assert mm.save(make_model({"a": b"1"}), "m") == "v000001"
    gd = ("--git-dir", str(bare_repo))
    assert (
        git(*gd, "log", "-1", "--format=%an <%ae>", "models/m").strip()
        == "airflow-genius <airflow-genius@localhost>"
    )
    assert "airflow-genius" in git(*gd, "tag", "--list", "--format=%(taggername)", "m/v000001")


def test_explicit_author(git_uri: str, bare_repo: Path, make_model: Callable[..., Path]) -> None:
    with open_model_manager(git_uri, author=("Model Bot", "bot@example.com")) as mm:
        mm.save(make_model({"a": b"1"}), "m")
    log = git("--git-dir", str(bare_repo), "log", "-1", "--format=%an <%ae>|%cn", "models/m").strip()
    assert log == "Model Bot <bot@example.com>|Model Bot"


def test_concurrent_saves_retry_on_push_races(git_uri: str, make_model: Callable[..., Path]) -> None:
    folders = [make_model({"w": f"writer {i}".encode()}) for i in range(3)]

    def save(folder: Path) -> str:
        with open_model_manager(git_uri) as own:  # separate caches, like separate workers
            return own.save(folder, "shared")

    with ThreadPoolExecutor(max_workers=3) as pool:
        versions = list(pool.map(save, folders))
    assert sorted(versions) == ["v000001", "v000002", "v000003"]
    with open_model_manager(git_uri) as mm:
        listed = mm.list_versions("shared")
        assert [v.version for v in listed] == ["v000001", "v000002", "v000003"]
        contents = {read_tree(mm.load("shared", v))["w"] for v in versions}
    assert contents == {f"writer {i}".encode() for i in range(3)}


def test_foreign_tag_with_symlink_is_refused(mm: GitModelManager, bare_repo: Path, tmp_path: Path) -> None:
    # Somebody pushed a tag shaped like a version whose tree holds a symlink: load must not follow it.
    work = tmp_path / "work"
    git("init", "--quiet", str(work))
    (work / "link").symlink_to("/etc/passwd")
    git("add", "link", cwd=work)
    git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet", "-m", "evil", cwd=work)
    git("-c", "user.name=x", "-c", "user.email=x@x", "tag", "-a", "-m", "not json", "evil/v000001", cwd=work)
    git("push", "--quiet", str(bare_repo), "evil/v000001", cwd=work)

    listed = mm.list_versions("evil")
    assert [(v.version, v.metadata) for v in listed] == [("v000001", {})]
    dest = tmp_path / "dest"
    with pytest.raises(ModelIntegrityError, match="'link' is not a regular file"):
        mm.load("evil", dest=dest)
    assert not dest.exists()


def test_unreachable_repository_is_a_model_error(tmp_path: Path, make_model: Callable[..., Path]) -> None:
    with open_model_manager(f"git+file://{tmp_path}/missing.git") as mm:
        with pytest.raises(ModelError, match=r"git ls-remote on file://.*failed: fatal:"):
            mm.list_versions("m")
        with pytest.raises(ModelError, match="failed"):
            mm.save(make_model({"a": b"1"}), "m")


def test_close_removes_the_private_cache(git_uri: str, make_model: Callable[..., Path]) -> None:
    mm = open_model_manager(git_uri)
    assert isinstance(mm, GitModelManager)
    mm.save(make_model({"a": b"1"}), "m")
    cache = mm._cache
    assert cache.is_dir()
    mm.close()
    assert not cache.exists()
