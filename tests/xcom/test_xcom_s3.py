"""GeniusXComBackend on S3 (moto_server of the test rig, reached through AWS_ENDPOINT_URL)."""

from __future__ import annotations

import gzip
import json
import random
import string
import threading
from typing import Any

import boto3
import pytest
from xcom_helpers import Row, is_reference

from airflow_genius.xcom import GeniusXComBackend
from airflow_genius.xcom._store import XComStoreError

pytestmark = pytest.mark.aws


@pytest.fixture
def s3_root(s3_bucket: str, xcom_root, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """``xcom_path = s3://<fresh bucket>/airflow/xcom`` (threshold 1 KiB, gzip)."""
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_PATH", f"s3://{s3_bucket}/airflow/xcom")
    return s3_bucket, "airflow/xcom"


def _keys(bucket: str) -> list[str]:
    return [obj.key for obj in boto3.resource("s3").Bucket(bucket).objects.all()]


def _random_rows(n: int) -> list[str]:
    rng = random.Random(n)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rng.choices(alphabet, k=1000)) for _ in range(n)]


def test_large_value_round_trip_and_purge_on_s3(s3_root, push, pull):
    bucket, prefix = s3_root
    value = [{"id": i, "text": f"row {i} ✓"} for i in range(20000)]
    stored = push(value)
    assert is_reference(stored)
    key = f"{prefix}/etl/" + stored["uri"].split("/etl/", 1)[1]
    assert stored["uri"] == f"s3://{bucket}/{key}"
    assert _keys(bucket) == [key]
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == stored["stored_size"] and json.loads(gzip.decompress(body)) == value
    assert pull(stored) == value
    GeniusXComBackend.purge(Row(stored))
    assert _keys(bucket) == []
    with pytest.raises(XComStoreError, match="does not exist"):
        pull(stored)


def test_multipart_upload_and_ranged_download(s3_root, push, pull, monkeypatch):
    # ~24 MB of incompressible text, stored uncompressed: three 8 MiB parts up, three ranged GETs down.
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "none")
    value = _random_rows(24000)
    stored = push(value)
    assert stored["stored_size"] > 16 * 1024 * 1024
    head = boto3.client("s3").head_object(Bucket=s3_root[0], Key=stored["uri"].split("/", 3)[3])
    assert head["ContentLength"] == stored["stored_size"]
    assert "-" in head["ETag"], "uploaded in parts"
    assert pull(stored) == value


def test_hostile_identifiers_stay_under_the_prefix(s3_root, push, pull):
    bucket, prefix = s3_root
    refs = [
        push(["v"] * 600, run_id="../../escape", key="../../../other-prefix/x"),
        push(["w"] * 600, task_id="a/b", key="/abs\x00"),
        push(["x"] * 600, task_id="a_b"),
    ]
    assert all(key.startswith(prefix + "/") and "/../" not in key for key in _keys(bucket))
    assert len({ref["uri"] for ref in refs}) == 3
    assert [pull(ref)[0] for ref in refs] == ["v", "w", "x"]


def test_references_to_other_buckets_or_prefixes_are_refused(s3_root, push, pull):
    bucket, _ = s3_root
    stored = push(["v"] * 600)
    for uri in (
        stored["uri"].replace(f"s3://{bucket}/", "s3://other-bucket/"),
        f"s3://{bucket}/elsewhere/x.xcom",
        stored["uri"].replace("/airflow/xcom/", "/airflow/xcom/../"),
        stored["uri"].replace("/airflow/xcom/", "/airflow/xcom//"),
    ):
        with pytest.raises(XComStoreError, match="not under the configured store"):
            pull({**stored, "uri": uri})
        GeniusXComBackend.purge(Row({**stored, "uri": uri}))  # skipped, never deletes elsewhere
    assert pull(stored) == ["v"] * 600


def test_upload_failure_is_raised_not_hung(aws_endpoint, xcom_root, push, monkeypatch, unique_name):
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_PATH", f"s3://{unique_name}-missing/xcom")
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            push(_random_rows(12000))  # more than one part: the pipe must not block a dead uploader
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the push hung after the upload failed"
    assert "NoSuchBucket" in str(outcome.get("error")) or "does not exist" in str(outcome.get("error"))
