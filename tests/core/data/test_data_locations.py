"""Batch location URIs and partition paths: parsing, clear errors, strftime schemes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_genius.core.data import BatchInput, BatchOutput, DataError, DataURIError, PartitionKey
from airflow_genius.core.data.locations import parse_data_uri
from airflow_genius.core.errors import GeniusError

RUN = "scheduled__2024-03-09T17:00:00+00:00"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/data/in", ("file", Path("/data/in"), "", "")),
        ("/data/in/../in2/", ("file", Path("/data/in2"), "", "")),
        ("file:///data/in", ("file", Path("/data/in"), "", "")),
        ("file://localhost/data/my%20in", ("file", Path("/data/my in"), "", "")),
        ("s3://bucket", ("s3", None, "bucket", "")),
        ("s3://bucket/", ("s3", None, "bucket", "")),
        ("s3://bucket/raw//events/", ("s3", None, "bucket", "raw/events")),
        ("S3://bucket/raw", ("s3", None, "bucket", "raw")),
    ],
)
def test_parse_good_uris(uri: str, expected: tuple) -> None:
    loc = parse_data_uri(uri)
    assert (loc.scheme, loc.path, loc.bucket, loc.prefix) == expected


def test_canonical_uris_round_trip() -> None:
    assert parse_data_uri("/data/my in").uri == "file:///data/my%20in/"
    assert parse_data_uri(parse_data_uri("/data/my in").uri).path == Path("/data/my in")
    assert parse_data_uri("s3://b/x/y").uri == "s3://b/x/y/"
    assert parse_data_uri("s3://b").uri == "s3://b/"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bucket/x", "unsupported batch URI scheme 'gs'"),
        ("https://example.com/x", "unsupported batch URI scheme 'https'"),
        ("data/in", "is a relative path"),
        ("./in", "is a relative path"),
        ("c:/data", "is a relative path"),
        ("s3:///prefix/only", "has no bucket"),
        ("s3://", "has no bucket"),
        ("s3://bucket/a/../b", "'.' or '..' segment"),
        ("s3://user:pw@bucket/x", "invalid bucket name"),
        ("s3://bucket/x?versionId=1", "query string"),
        ("file://otherhost/data", "names host 'otherhost'"),
        ("file:relative/path", "relative path"),
        ("", "non-empty"),
        ("/data/\x00in", "NUL"),
    ],
)
def test_bad_uris_give_one_line_errors(uri: str, message: str) -> None:
    with pytest.raises(DataURIError, match=message) as info:
        parse_data_uri(uri)
    assert isinstance(info.value, GeniusError)
    assert "\n" not in str(info.value)


def test_bad_uris_fail_in_the_managers_too(tmp_path: Path) -> None:
    with pytest.raises(DataURIError, match="relative path"):
        BatchInput("relative/in")
    with pytest.raises(DataURIError, match="unsupported"):
        BatchOutput("ftp://host/out", partition=PartitionKey("d", "t", "r"))
    with pytest.raises(DataError, match="must be a PartitionKey"):
        BatchOutput(str(tmp_path), partition=("d", "t", "r"))  # type: ignore[arg-type]


def test_partition_path_from_logical_date_and_scheme() -> None:
    key = PartitionKey("etl", "clean", RUN, logical_date=datetime(2024, 3, 9, 17, 30, tzinfo=timezone.utc))
    assert key.relative_path("%Y/%m/%d") == "etl/clean/2024/03/09/scheduled__2024-03-09T17~3A00~3A00+00~3A00"
    assert (
        key.relative_path("%Y-%m-%d/%H")
        == "etl/clean/2024-03-09/17/scheduled__2024-03-09T17~3A00~3A00+00~3A00"
    )
    assert key.relative_path("dt=%Y%m%d").startswith("etl/clean/dt=20240309/")
    # ':' from a time scheme is not a safe folder character everywhere: it becomes '_'
    assert key.relative_path("%H:%M").startswith("etl/clean/17_30/")


def test_aware_dates_are_partitioned_in_utc() -> None:
    cest = timezone(timedelta(hours=2))
    late = PartitionKey("d", "t", "r", logical_date=datetime(2024, 3, 10, 1, 0, tzinfo=cest))
    assert late.relative_path("%Y/%m/%d") == "d/t/2024/03/09/r"


def test_unpartitioned_and_map_index() -> None:
    assert PartitionKey("d", "t", "r").relative_path() == "d/t/_unpartitioned/r"
    assert PartitionKey("d", "t", "r", 0).relative_path() == "d/t/_unpartitioned/r/map_index=0"
    assert PartitionKey("d", "t", "r", 12).relative_path() == "d/t/_unpartitioned/r/map_index=12"


def test_output_location_uri(tmp_path: Path) -> None:
    key = PartitionKey("etl", "clean", "manual__1", 2, datetime(2024, 1, 2))
    assert BatchOutput("s3://b/out", partition=key).location == (
        "s3://b/out/etl/clean/2024/01/02/manual__1/map_index=2/"
    )
    local = BatchOutput(f"file://{tmp_path}/out", partition=key)
    assert local.location == (tmp_path / "out/etl/clean/2024/01/02/manual__1/map_index=2").as_uri() + "/"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"map_index": -2}, "map_index"),
        ({"map_index": "0"}, "map_index"),
        ({"logical_date": "2024-01-01"}, "logical_date"),
    ],
)
def test_bad_partition_keys(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        PartitionKey("d", "t", "r", **kwargs)


@pytest.mark.parametrize("scheme", ["", "/", "/%Y/%m", "%Y/../../x", "../%Y"])
def test_bad_schemes(scheme: str) -> None:
    key = PartitionKey("d", "t", "r", logical_date=datetime(2024, 1, 1))
    with pytest.raises(GeniusError) as info:
        BatchOutput("s3://b/out", partition=key, scheme=scheme)
    assert "\n" not in str(info.value)
