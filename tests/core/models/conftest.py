"""Fixtures for model manager tests."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from models_testutil import Tree, write_tree


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    """``make_model(files, executable=(...))`` writes a fresh model folder under tmp_path and returns it."""
    counter = itertools.count()

    def make(files: Tree, executable: tuple[str, ...] = ()) -> Path:
        return write_tree(tmp_path / "src" / f"m{next(counter)}", files, executable)

    return make


@pytest.fixture(autouse=True)
def _private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temp dirs made by the managers (``load`` without ``dest``, git caches) land under tmp_path."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
