"""Fixtures for the genius XCom backend tests.

The unit tests call the backend in this process (it only needs the task SDK's serde and config); the
tests marked ``airflow`` run real Airflow in child processes with their own AIRFLOW_HOME.

    def test_round_trip(xcom_root, push, pull):
        ref = push(["x" * 100] * 100)          # a reference: the value went to xcom_root
        assert pull(ref) == ["x" * 100] * 100
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xcom_helpers import COORDS, THRESHOLD, Row, through_db

for _name in [name for name in os.environ if name.startswith("AIRFLOW__GENIUS__XCOM")]:
    del os.environ[_name]


@pytest.fixture
def xcom_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local store in a temp folder, threshold 1 KiB, gzip (AIRFLOW__GENIUS__* as Airflow reads it)."""
    root = tmp_path / "xcom"
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_PATH", root.as_uri())
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_THRESHOLD_BYTES", str(THRESHOLD))
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "gzip")
    monkeypatch.delenv("AIRFLOW__GENIUS__XCOM_COMPRESSION_LEVEL", raising=False)
    return root


@pytest.fixture
def push() -> Callable[..., Any]:
    """``push(value, **coords)``: what GeniusXComBackend stores in the XCom row, after the DB round trip."""
    from airflow_genius.xcom import GeniusXComBackend

    def _push(value: Any, **coords: Any) -> Any:
        return through_db(GeniusXComBackend.serialize_value(value, **{**COORDS, **coords}))

    return _push


@pytest.fixture
def pull() -> Callable[[Any], Any]:
    """``pull(stored)``: the value a downstream task receives for a stored row value."""
    from airflow_genius.xcom import GeniusXComBackend

    return lambda stored: GeniusXComBackend.deserialize_value(Row(stored))


@pytest.fixture
def base_round_trip() -> Callable[[Any], Any]:
    """What Airflow's default BaseXCom returns after storing ``value`` in the DB and reading it back."""
    from airflow.sdk.bases.xcom import BaseXCom

    return lambda value: BaseXCom.deserialize_value(Row(through_db(BaseXCom.serialize_value(value))))
