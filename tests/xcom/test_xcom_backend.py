"""GeniusXComBackend on a local store: inline like BaseXCom when small, a reference when large.

Every large value is compared with what Airflow's own BaseXCom returns after a trip through the
metadata DB, types included (tuples stay tuples, datetimes stay datetimes...).
"""

from __future__ import annotations

import datetime as dt
import enum
import gzip
import hashlib
import json
import os
import uuid
import zlib
from collections import OrderedDict, namedtuple
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from xcom_helpers import COORDS, THRESHOLD, Row, files_under, is_reference, through_db

from airflow_genius.xcom import GeniusXComBackend, XComStoreError, _codec, _store
from airflow_genius.xcom.backend import XComSettings, object_path

Point = namedtuple("Point", "x y")


class Color(enum.IntEnum):
    RED = 1
    BLUE = 2


class Size(str, enum.Enum):
    SMALL = "s"


def typed(value: Any) -> Any:
    """``value`` with the type of every node spelled out, so 1 != True != Color.RED and () != []."""
    if isinstance(value, dict):
        return (type(value).__name__, [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else [typed(v) for v in value]
        return (type(value).__name__, items)
    return (type(value).__name__, value)


def path_of(stored: dict[str, Any]) -> Path:
    return Path(unquote(urlsplit(stored["uri"]).path))


@pytest.fixture
def small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny lines, groups, pieces and read blocks: every chunk boundary case shows up in small values."""
    monkeypatch.setattr(_codec, "LINE_BYTES", 200)
    monkeypatch.setattr(_codec, "GROUP_BYTES", 700)
    monkeypatch.setattr(_codec, "TEXT_PIECE", 333)
    monkeypatch.setattr(_codec, "JSON_PIECE", 500)
    monkeypatch.setattr(_store, "READ_BLOCK", 97)
    monkeypatch.setattr(_store, "MAX_PIECE", 211)


# ----------------------------------------------------------------------------------------- small values
SMALL = [
    0,
    -7,
    2.5,
    True,
    None,
    "",
    "hello ✓",
    [],
    {},
    [1, "a", None, 2.5, False],
    {"a": {"b": [1, {"c": None}]}},
    (1, "two", 3.0),
    {1, 2, 3},
    frozenset({"x"}),
    Point(1, 2),
    dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    dt.date(2024, 5, 6),
    dt.timedelta(seconds=90),
    Decimal("1.25"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {1: "int key", None: "none key", 2.5: "float key"},
    [Color.RED, Size.SMALL],
    {"when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "pair": (1, 2)},
    [{"__type": "dict", "__var": {"a": 1}}],  # old-style serde marker: BaseXCom converts it on read
]


@pytest.mark.parametrize("value", SMALL, ids=lambda v: type(v).__name__)
def test_small_values_are_stored_exactly_like_basexcom(value, xcom_root, push, pull, base_round_trip):
    from airflow.sdk.bases.xcom import BaseXCom

    stored = push(value)
    assert stored == through_db(BaseXCom.serialize_value(value))
    assert not is_reference(stored)
    assert typed(pull(stored)) == typed(base_round_trip(value))
    assert files_under(xcom_root) == []


@pytest.mark.parametrize(
    ("value", "error"),
    [({"__classname__": "x"}, AttributeError), ([object()], TypeError), ({"a": object()}, TypeError)],
)
def test_values_basexcom_refuses_are_refused_the_same_way(value, error, xcom_root, push):
    from airflow.sdk.bases.xcom import BaseXCom

    with pytest.raises(error):
        BaseXCom.serialize_value(value)
    with pytest.raises(error):
        push(value)


def test_threshold_is_the_compact_json_size(xcom_root, push):
    # '["xx..x"]' is the payload + 4 bytes; a str is judged by its JSON (escapes count), stored as text.
    assert not is_reference(push(["x" * (THRESHOLD - 4)]))
    assert is_reference(push(["x" * (THRESHOLD - 3)]))
    assert not is_reference(push("x" * (THRESHOLD - 2)))
    assert is_reference(push("x" * (THRESHOLD - 1)))
    assert is_reference(push("\n" * (THRESHOLD // 2 + 1)))  # 513 chars, 1028 bytes of JSON
    assert not is_reference(push({"k": "v" * (THRESHOLD - 8)}))
    assert is_reference(push({"k": "v" * (THRESHOLD - 7)}))


def test_threshold_minus_one_never_offloads_and_zero_always(xcom_root, push, pull, monkeypatch):
    from airflow.sdk.bases.xcom import BaseXCom

    big = ["y" * 1000] * 100
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_THRESHOLD_BYTES", "-1")
    assert push(big) == through_db(BaseXCom.serialize_value(big))
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_THRESHOLD_BYTES", "0")
    stored = push([1])
    assert is_reference(stored) and pull(stored) == [1]


# ----------------------------------------------------------------------------------------- large values
def _records(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"user {i}",
            "score": i / 3,
            "ok": i % 2 == 0,
            "tags": ["a", f"t{i % 7}"],
            "x": None,
        }
        for i in range(n)
    ]


class Tagged(list):
    """A list subclass: serde stores it as a list."""


class Loud(str):
    """A str subclass whose str() is not its characters: XCom stores the characters."""

    def __str__(self) -> str:
        return self.upper()


LARGE = {
    "records": lambda: _records(3000),
    "big strings": lambda: [f"{i}:" + "z" * 500 for i in range(300)],
    "dict of many items": lambda: {f"key{i}": {"v": i, "s": "é" * (i % 5)} for i in range(3000)},
    "dict holding a big list": lambda: {"rows": _records(2000), "count": 2000},
    "ascii text": lambda: "line of text\n" * 20000,
    "unicode text": lambda: "Zürich ✓ 😀 " * 20000 + "\ud800",  # astral chars and a lone surrogate
    "tuple of records": lambda: tuple(_records(1000)),
    "records with datetimes": lambda: [
        {"at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i), "n": i}
        for i in range(1500)
    ],
    "nested tuples and sets": lambda: [
        {"pair": (i, i + 1), "set": {i}, "pt": Point(i, -i)} for i in range(1500)
    ],
    "non-string keys": lambda: {i: f"v{i}" for i in range(3000)} | {None: "n", 2.5: "f"},
    "enums": lambda: [Color.RED, Color.BLUE, Size.SMALL] * 1000,
    "old-style serde dicts": lambda: [{"__type": "dict", "__var": {"a": i}} for i in range(1000)],
    "list subclass": lambda: Tagged(range(5000)),
    "str subclass": lambda: Loud("quiet " * 1000),
    "ordered dict": lambda: OrderedDict((f"k{i}", i) for i in range(3000)),
    "big numbers": lambda: [10**30 + i for i in range(2000)] + [float("inf"), -0.0, 1e-300],
    "empty containers inside": lambda: [[], {}, "", [[]], {"a": {}}] * 1000,
    "mixed plain and not": lambda: [*_records(1500), (1, 2), *_records(1500)],
}


@pytest.mark.parametrize("buffers", ["default", "small"])
@pytest.mark.parametrize("name", list(LARGE))
def test_large_values_round_trip_exactly_like_basexcom(
    name, buffers, xcom_root, push, pull, base_round_trip, request
):
    if buffers == "small":
        request.getfixturevalue("small_buffers")
    value = LARGE[name]()
    stored = push(value)
    assert is_reference(stored), "the value must have been offloaded"
    assert len(json.dumps(stored)) < 600, "the XCom row holds a small reference only"
    assert typed(pull(stored)) == typed(base_round_trip(value))


def test_reference_describes_the_stored_object(xcom_root, push):
    stored = push(_records(500))
    path = path_of(stored)
    data = path.read_bytes()
    assert path.is_relative_to(xcom_root.resolve())
    assert path.relative_to(xcom_root.resolve()).as_posix() == object_path(**COORDS)
    assert stored["stored_size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    raw = gzip.decompress(data)
    assert stored["size"] == len(raw)
    assert (stored["compression"], stored["layout"], stored["serde"]) == ("gzip", "list", False)
    assert json.loads(raw) == _records(500)  # the object is one valid JSON document
    assert files_under(xcom_root) == [path], "no temporary files are left behind"


@pytest.mark.parametrize(
    ("compression", "magic"), [("gzip", b"\x1f\x8b"), ("zlib", b"\x78"), ("none", b"[\n")]
)
def test_compression_setting(compression, magic, xcom_root, push, pull, monkeypatch):
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", compression)
    value = _records(2000)
    stored = push(value)
    data = path_of(stored).read_bytes()
    assert data.startswith(magic)
    raw = {"gzip": gzip.decompress, "zlib": zlib.decompress, "none": bytes}[compression](data)
    assert json.loads(raw) == value
    assert stored["compression"] == compression
    # Readable whatever the setting is now: the reference records its own compression.
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "zlib" if compression == "none" else "none")
    assert pull(stored) == value


def test_compressed_objects_are_smaller_and_level_is_honoured(xcom_root, push, monkeypatch):
    value = _records(3000)
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "none")
    plain = push(value, key="plain")["stored_size"]
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "gzip")
    fast = push(value, key="fast")["stored_size"]
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION_LEVEL", "9")
    best = push(value, key="best")["stored_size"]
    assert best < fast < plain / 4


def test_text_is_stored_as_raw_utf8(xcom_root, push, pull, monkeypatch):
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "none")
    text = "a,b\nZürich,✓\n" * 1000
    stored = push(text)
    assert stored["layout"] == "text"
    assert path_of(stored).read_bytes() == text.encode()
    assert pull(stored) == text


# ------------------------------------------------------------------------------------------------ purge
def test_purge_removes_the_object_and_empty_folders(xcom_root, push):
    stored = push(_records(500))
    other = push(_records(500), task_id="other")
    path = path_of(stored)
    GeniusXComBackend.purge(Row(stored))
    assert not path.exists()
    assert not path.parent.exists(), "empty folders are pruned"
    assert path_of(other).exists(), "objects of other XComs stay"
    GeniusXComBackend.purge(Row(other))
    assert xcom_root.is_dir() and files_under(xcom_root) == [] and list(xcom_root.iterdir()) == []
    GeniusXComBackend.purge(Row(stored))  # twice: nothing to do, no error
    GeniusXComBackend.purge(Row({"inline": 1}))  # an inline value: nothing to do


def test_pull_after_purge_says_the_object_is_gone(xcom_root, push, pull):
    stored = push(_records(500))
    GeniusXComBackend.purge(Row(stored))
    with pytest.raises(XComStoreError, match="does not exist"):
        pull(stored)


# ----------------------------------------------------------------------------------- integrity, safety
def test_damaged_or_replaced_objects_are_detected(xcom_root, push, pull, monkeypatch):
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "none")
    first = push(_records(500))
    path = path_of(first)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(XComStoreError):
        pull(first)
    second = push(_records(400))  # same XCom pushed again: the object is replaced
    assert second["uri"] == first["uri"]
    with pytest.raises(XComStoreError, match="does not match its reference"):
        pull(first)
    assert pull(second) == _records(400)
    monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_COMPRESSION", "gzip")
    third = push(_records(300))
    with open(path_of(third), "ab") as handle:
        handle.write(b"trailing")
    with pytest.raises(XComStoreError):
        pull(third)


HOSTILE = [
    {"run_id": "../../../../etc/passwd"},
    {"run_id": "a/b"},
    {"run_id": "a_b"},
    {"key": "../../outside"},
    {"key": "x\x00y"},
    {"key": "/absolute"},
    {"key": "ключ ✓"},
    {"key": "k" * 512},
    {"task_id": ".."},
    {"task_id": "."},
    {"dag_id": "dag\\..\\..\\x"},
    {"map_index": 7},
]


def test_hostile_identifiers_stay_under_the_root_and_never_collide(xcom_root, push, pull, tmp_path):
    before = {p for p in tmp_path.rglob("*") if xcom_root not in p.parents and p != xcom_root}
    stored = []
    for i, coords in enumerate(HOSTILE):
        value = [f"value {i}"] * 200
        ref = push(value, **coords)
        assert is_reference(ref)
        assert path_of(ref).resolve().is_relative_to(xcom_root.resolve())
        stored.append((ref, value))
    assert len({ref["uri"] for ref, _ in stored}) == len(HOSTILE), "distinct XComs never share an object"
    for ref, value in stored:
        assert pull(ref) == value
    after = {p for p in tmp_path.rglob("*") if xcom_root not in p.parents and p != xcom_root}
    assert after == before, "nothing was written outside the store"
    assert max(len(part) for p in files_under(xcom_root) for part in p.parts) <= 120


def test_references_outside_the_store_are_refused(xcom_root, push, pull, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    stored = push(_records(500))
    for uri in (
        secret.as_uri(),
        stored["uri"].replace("/xcom/", "/xcom/../"),
        "file://otherhost" + path_of(stored).as_posix(),
        "s3://bucket/key",
    ):
        forged = {**stored, "uri": uri, "size": 11, "stored_size": 11}
        forged["sha256"] = hashlib.sha256(b"do not read").hexdigest()
        with pytest.raises(XComStoreError, match="not under the configured store"):
            pull(forged)
        GeniusXComBackend.purge(Row(forged))  # logged and skipped: never deletes outside the store
    assert secret.exists() and path_of(stored).exists()


def test_a_user_dict_that_looks_like_a_reference_comes_back_unchanged(xcom_root, push, pull, monkeypatch):
    lookalike = {
        "__genius_xcom__": 1,
        "uri": "file:///etc/passwd",
        "size": 1,
        "stored_size": 1,
        "sha256": "0",
        "compression": "none",
        "layout": "text",
        "serde": False,
    }
    for threshold in ("1024", "-1"):  # even when nothing else is offloaded
        monkeypatch.setenv("AIRFLOW__GENIUS__XCOM_THRESHOLD_BYTES", threshold)
        stored = push(lookalike)
        assert stored["uri"] != lookalike["uri"], "such a dict is always offloaded"
        assert pull(stored) == lookalike
    assert pull(push({"__genius_xcom__": "x"})) == {"__genius_xcom__": "x"}


def test_failed_push_leaves_no_partial_object_and_keeps_the_previous_one(xcom_root, push, pull):
    good = push(_records(2000))
    bad = [*_records(2000), object()]  # fails after many batches have been written
    with pytest.raises(TypeError):
        push(bad)
    assert files_under(xcom_root) == [path_of(good)], "no temporary or half-written object"
    assert pull(good) == _records(2000)


def test_unknown_reference_version_is_an_error_and_never_purged(xcom_root, push, pull):
    stored = push(_records(500))
    newer = {**stored, "__genius_xcom__": 2}
    with pytest.raises(ValueError, match="unknown format"):
        pull(newer)
    GeniusXComBackend.purge(Row(newer))  # logged, skipped: a task run clearing it must not fail
    assert path_of(stored).exists()


def test_orm_deserialize_value_shows_the_reference(xcom_root, push):
    stored = push(_records(500))
    assert GeniusXComBackend.orm_deserialize_value(Row(stored)) == stored
    assert GeniusXComBackend.orm_deserialize_value(Row(push((1, 2)))) == (1, 2)


def test_deserialize_accepts_any_row_like_object(xcom_root, push):
    from airflow.sdk.bases.xcom import _XComValueWrapper

    stored = push(_records(500))
    assert GeniusXComBackend.deserialize_value(_XComValueWrapper(stored)) == _records(500)


# --------------------------------------------------------------------------------------------- settings
def test_default_path_is_under_airflow_home(monkeypatch):
    monkeypatch.delenv("AIRFLOW__GENIUS__XCOM_PATH", raising=False)
    settings = XComSettings.from_conf()
    assert settings.path == f"file://{os.environ['AIRFLOW_HOME']}/genius/xcom"
    assert (settings.threshold, settings.compression, settings.level) == (65536, "gzip", 1)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("XCOM_COMPRESSION", "brotli", "xcom_compression"),
        ("XCOM_COMPRESSION_LEVEL", "0", "xcom_compression_level"),
        ("XCOM_THRESHOLD_BYTES", "-2", "xcom_threshold_bytes"),
        ("XCOM_PATH", "relative/path", "xcom_path"),
        ("XCOM_PATH", "gs://bucket/x", "xcom_path"),
        ("XCOM_PATH", "file://host/x", "xcom_path"),
        ("XCOM_PATH", "s3:///no-bucket", "xcom_path"),
    ],
)
def test_bad_settings_name_the_option(option, value, message, xcom_root, push, monkeypatch):
    monkeypatch.setenv(f"AIRFLOW__GENIUS__{option}", value)
    with pytest.raises(ValueError, match=message):
        push(_records(500))
