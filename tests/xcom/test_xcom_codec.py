"""The streaming codec: plain-JSON detection, layouts, and decoding across arbitrary chunk boundaries."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest

from airflow_genius.xcom import _codec


class Sub(str):
    """A str subclass (serde and the C JSON encoder may disagree about it)."""


@pytest.mark.parametrize(
    ("objs", "plain"),
    [
        ([1, 2.5, "x", None, True], True),
        ([{"a": [1, {"b": None}]}, [], {}], True),
        ([[[[[]]]]], True),
        ([(1, 2)], False),
        ([{"a": (1,)}], False),
        ([{1: "x"}], False),
        ([{True: "x"}], False),
        ([{"a": 1}, {Sub("a"): 2}], False),  # a str-subclass key equal to a plain key elsewhere
        ([Sub("x")], False),
        ([{"__classname__": 1}], False),
        ([{"__var": 1}], False),
        ([dt.date(2024, 1, 1)], False),
        ([{1.5}], False),
        ([b"bytes"], False),
    ],
)
def test_is_plain(objs, plain):
    assert _codec.is_plain(objs) is plain


def test_is_plain_gives_up_on_very_deep_nesting():
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    assert _codec.is_plain([deep]) is False  # serde then decides (and enforces its recursion limit)


def test_self_referencing_lists_do_not_hang():
    loop: list[Any] = []
    loop.append(loop)
    assert _codec.is_plain([loop]) is False


@pytest.mark.parametrize(
    ("value", "layout", "serde"),
    [
        ([1, 2], "list", False),
        ([dt.date(2024, 1, 1)], "list", True),
        ({"a": 1}, "dict", False),
        ({"a": (1, 2)}, "dict", True),
        ({"__var": 1, "__type": "x"}, "json", True),
        ("text", "text", False),
        ((1, 2), "json", True),
        (5, "json", True),
    ],
)
def test_layouts(value, layout, serde):
    plan = _codec.plan_value(value)
    blob = b"".join(plan.chunks())
    assert (plan.layout, plan.serde) == (layout, serde)
    if layout != "text":
        assert len(blob) - plan.framing == len(_codec.encode_json(_codec._serde_serialize(value)))


def _split_randomly(blob: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    pieces, start = [], 0
    while start < len(blob):
        size = rng.randint(1, max_piece)
        pieces.append(blob[start : start + size])
        start += size
    return pieces


VALUES = [
    [],
    {},
    "",
    [{"id": i, "s": 'é\n"' * (i % 4), "l": [i, None]} for i in range(400)],
    {f"k{i}": [i, {"x": "✓"}] for i in range(400)},
    'Zürich 😀 \\ " \n' * 300,
    [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)] * 50,
    (1, [2, (3,)]),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}{len(v)}")
def test_decode_survives_any_chunking(value, monkeypatch):
    monkeypatch.setattr(_codec, "LINE_BYTES", 150)
    monkeypatch.setattr(_codec, "GROUP_BYTES", 400)
    monkeypatch.setattr(_codec, "TEXT_PIECE", 101)
    from airflow.sdk.bases.xcom import BaseXCom

    expected = BaseXCom.deserialize_value(
        type("Row", (), {"value": json.loads(json.dumps(BaseXCom.serialize_value(value)))})()
    )
    plan = _codec.plan_value(value)
    blob = b"".join(plan.chunks())
    rng = random.Random(len(blob))
    for max_piece in (1, 7, 64, 1000, len(blob) + 1):
        chunks = _split_randomly(blob, rng, max_piece)
        assert _codec.decode(plan.layout, plan.serde, iter(chunks)) == expected


@pytest.mark.parametrize(
    ("layout", "blob", "message"),
    [
        ("list", b"[\n1,2", "truncated"),
        ("list", b"{\n1]", "does not start"),
        ("dict", b'{\n"a":1', "truncated"),
        ("list", b"", "truncated"),
        ("yaml", b"", "unknown XCom object layout"),
    ],
)
def test_decode_refuses_broken_objects(layout, blob, message):
    with pytest.raises(ValueError, match=message):
        _codec.decode(layout, False, iter([blob]))
