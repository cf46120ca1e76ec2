"""Store configuration and endpoint problems are one line, bounded in time, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.private_stores import silent_endpoint

from airflow_genius.core import open_state
from airflow_genius.core.data import BatchInput
from airflow_genius.core.errors import GeniusError, StateError

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_silent_s3_endpoint_fails_the_input_sync_within_30s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with silent_endpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            BatchInput("s3://bucket/prefix", cache_dir=tmp_path).sync()
        took = time.monotonic() - started
    assert took <= 30, took
    assert "timeout" in str(caught.value).lower() and endpoint in str(caught.value)


def test_an_unknown_aws_profile_is_one_line_for_dynamodb() -> None:
    with pytest.raises(StateError) as caught:
        open_state("dynamodb://table?region=us-east-1&profile=no-such-profile")
    message = str(caught.value)
    assert message == (
        "cannot open dynamodb state table 'table': The config profile (no-such-profile) could not be found"
    )


def test_an_unknown_aws_profile_is_one_line_for_s3_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(GeniusError) as caught:
        BatchInput("s3://bucket/prefix", cache_dir=tmp_path).sync()
    assert (
        str(caught.value)
        == "cannot make an S3 client: The config profile (no-such-profile) could not be found"
    )


@pytest.mark.parametrize("database", ["abc", "1x", "-1", "0/1"])
def test_a_redis_database_that_is_not_a_number_is_refused(database: str) -> None:
    with pytest.raises(StateError) as caught:
        open_state(f"redis://127.0.0.1:6379/{database}")
    assert str(caught.value).startswith("redis state URI 'redis://127.0.0.1:6379/")
    assert "the database must be a number" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"\xff\xfe{}", "byte 0"), ('{"spec_version": 1, "x": "caf\u00e9"}'.encode("latin-1"), "byte 29")],
    ids=["bom-like", "latin-1"],
)
def test_a_spec_file_that_is_not_utf8_is_one_line(tmp_path: Path, content: bytes, what: str) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(content)
    for args, given in ((["--spec", str(spec)], None), (["--spec", "-"], content)):
        done = subprocess.run(
            [sys.executable, "-m", "airflow_genius.core.cli", "run", *args],
            input=given, capture_output=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        )  # fmt: skip
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "is not UTF-8 text" in lines[0] and what in lines[0]
