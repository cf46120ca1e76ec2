"""Streaming JSON codec for offloaded XCom values: lists, dicts and strings are encoded and decoded a
batch at a time, never holding their whole encoding in memory.

The encoded form is what Airflow's ``BaseXCom`` would store (the JSON of ``airflow.sdk.serde.serialize``),
so a value comes back with the same types (tuples, datetimes, sets...) as with the default backend.
Plain JSON data (str/int/float/bool/None in lists and dicts with ``str`` keys) is recognised with
C-level passes and encoded by the C JSON encoder directly, which is much faster than a Python walk.

Layouts, recorded in the reference so a reader never guesses:

``list``  a JSON array written as ``[``, one line per batch of elements, ``]``: a valid JSON document that
          a reader can also parse a few MiB at a time.
``dict``  the same for a JSON object (one line per batch of items).
``text``  a ``str`` value as raw UTF-8 (no JSON escaping: smaller, faster and readable as is).
``json``  anything else: one JSON document, read in one piece.

Usage::

    plan = plan_value([{"a": 1}] * 3)
    blob = b"".join(plan.chunks())          # b'[\\n{"a":1},{"a":1},{"a":1}\\n]'
    assert decode(plan.layout, plan.serde, iter([blob])) == [{"a": 1}] * 3

Airflow is imported lazily (only ``airflow.sdk.serde``, and only for values that are not plain JSON).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

LAYOUT_LIST = "list"
LAYOUT_DICT = "dict"
LAYOUT_TEXT = "text"
LAYOUT_JSON = "json"
LAYOUTS = (LAYOUT_LIST, LAYOUT_DICT, LAYOUT_TEXT, LAYOUT_JSON)

#: Dict keys that Airflow's serde treats specially (``airflow.sdk._shared.serialization``). A dict that
#: holds any of them is never taken as plain JSON: it goes through serde, which then behaves exactly as
#: it does for ``BaseXCom`` (refusing ``__classname__``, converting ``__type``/``__var``...).
RESERVED_KEYS = frozenset(
    {"__classname__", "__version__", "__data__", "__id__", "__cache__", "__type", "__source", "__var"}
)

_SCALARS = frozenset({str, int, float, bool, type(None)})
_PLAIN = _SCALARS | {list, dict}
_STR_ONLY = frozenset({str})
# Deeper structures take the serde path (which has its own recursion limit, like BaseXCom).
_PLAIN_MAX_DEPTH = 200

#: Aim for lines (batches) of about this many bytes: big enough that per-batch Python overhead vanishes,
#: small enough that the reader's working set stays a few MiB.
LINE_BYTES = 1 << 20
_FIRST_BATCH = 64
_MAX_BATCH = 1 << 16
#: Characters of a ``str`` value encoded per chunk.
TEXT_PIECE = 1 << 20
#: Bytes per chunk when a whole JSON document is cut into pieces.
JSON_PIECE = 1 << 20
#: The reader parses groups of lines of about this size.
GROUP_BYTES = 4 << 20
_WHITESPACE = frozenset(b" \t\r\n")
_WHITESPACE_OR_COMMA = _WHITESPACE | {ord(",")}

# Compact separators: smaller objects, and the same parse result.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
encode_json = _ENCODER.encode


def _serde_serialize(value: Any) -> Any:
    from airflow.sdk.serde import serialize

    return serialize(value)


def _serde_deserialize(value: Any) -> Any:
    from airflow.sdk.serde import deserialize

    return deserialize(value)


def is_plain(objs: list[Any], *, check_reserved: bool = True) -> bool:
    """True if serde would return every object unchanged, so the C JSON encoder can take it as is.

    Works level by level with C-level builtins (``map``/``set``/``itertools``) instead of a Python call
    per object: exact ``str``/``int``/``float``/``bool``/``None`` scalars, exact lists, and exact dicts
    whose keys are all exact ``str`` and none of :data:`RESERVED_KEYS`. Anything else (tuples, enums,
    ``str`` subclasses, datetimes, non-string keys...) answers False and goes through serde.

    >>> is_plain([{"a": [1, 2.5, None, True]}, "x"])
    True
    >>> is_plain([(1, 2)]), is_plain([{1: "a"}]), is_plain([{"__var": 1}])
    (False, False, False)

    ``check_reserved=False`` skips the reserved-key test (the caller looks for ``"__`` in the encoded
    text instead, which is nearly free: every reserved key starts with two underscores).
    """
    stack: list[tuple[list[Any], int]] = [(objs, 0)]
    while stack:
        level, depth = stack.pop()
        if not level:
            continue
        types = set(map(type, level))
        if types <= _SCALARS:
            continue
        if depth >= _PLAIN_MAX_DEPTH or not types <= _PLAIN:
            return False
        only = len(types) == 1
        if dict in types:
            dicts = level if only else [obj for obj in level if type(obj) is dict]
            # Types of every key (not of the de-duplicated key set: a str subclass equal to a plain str
            # key would hide there), then the reserved names on the small set of distinct keys.
            if not set(map(type, chain.from_iterable(dicts))) <= _STR_ONLY:
                return False
            if check_reserved and not RESERVED_KEYS.isdisjoint(chain.from_iterable(dicts)):
                return False
            stack.append((list(chain.from_iterable(map(dict.values, dicts))), depth + 1))
        if list in types:
            lists = level if only else [obj for obj in level if type(obj) is list]
            stack.append((list(chain.from_iterable(lists)), depth + 1))
    return True


def _next_batch(batch: int, encoded_len: int, count: int) -> int:
    per_item = max(1, encoded_len // max(1, count))
    return max(1, min(_MAX_BATCH, LINE_BYTES // per_item))


class Plan:
    """How one value is written: its layout, its byte chunks, and whether reading needs serde.

    ``serde`` is final only once :meth:`chunks` is exhausted (a batch that is not plain JSON sets it).
    ``framing`` counts the newline bytes the layout adds, so ``sum(chunk sizes) - framing`` is the size of
    the value's compact JSON (for ``text``, use :attr:`json_size`).
    """

    def __init__(self, layout: str, source: Any, *, serialized: bool = False) -> None:
        self.layout = layout
        self.serde = serialized
        self.framing = 0
        self._source = source
        self._serialized = serialized

    def json_size(self) -> int:
        """Size of the compact JSON of a ``text`` value (computed on demand: it needs the escaping)."""
        return len(encode_json(self._source))

    @property
    def text_length(self) -> int:
        """Number of characters of a ``text`` value (a cheap lower bound of its JSON size)."""
        return len(self._source)

    def chunks(self) -> Iterator[bytes]:
        """The encoded value, in chunks of about :data:`LINE_BYTES`."""
        if self.layout == LAYOUT_LIST:
            return self._list_chunks()
        if self.layout == LAYOUT_DICT:
            return self._dict_chunks()
        if self.layout == LAYOUT_TEXT:
            return self._text_chunks()
        return self._json_chunks()

    def _encode_batch(self, batch: Any, values: list[Any]) -> str:
        if self._serialized:
            return encode_json(batch)
        if is_plain(values, check_reserved=False):
            text = encode_json(batch)
            # Reserved keys all start with "__": only text that contains '"__' needs the full check.
            if '"__' not in text or is_plain(values):
                return text
        self.serde = True
        return encode_json(_serde_serialize(batch))

    def _list_chunks(self) -> Iterator[bytes]:
        value: list[Any] = self._source
        size = len(value)
        start, batch, sep = 0, _FIRST_BATCH, "[\n"
        while start < size:
            items = value[start : start + batch]
            text = self._encode_batch(items, items)
            # Drop the batch's own brackets: the lines together form one array. (Count the newline before
            # yielding: the caller compares sizes as soon as it receives the chunk.)
            self.framing += 1
            yield (sep + text[1:-1]).encode("ascii")
            sep = ",\n"
            start += len(items)
            batch = _next_batch(batch, len(text), len(items))
        self.framing += 1
        yield b"\n]" if size else b"[\n]"

    def _dict_chunks(self) -> Iterator[bytes]:
        value: dict[Any, Any] = self._source
        items_iter = iter(value.items())
        batch, sep, empty = _FIRST_BATCH, "{\n", True
        while items := list(islice(items_iter, batch)):
            if set(map(type, (k for k, _ in items))) <= _STR_ONLY:
                sub = dict(items)
            else:  # serde stores str(key); a clash keeps the last value, like serde's comprehension
                sub = {str(k): v for k, v in items}
            text = self._encode_batch(sub, list(sub.values()))
            self.framing += 1
            yield (sep + text[1:-1]).encode("ascii")
            sep, empty = ",\n", False
            batch = _next_batch(batch, len(text), len(items))
        self.framing += 1
        yield b"{\n}" if empty else b"\n}"

    def _text_chunks(self) -> Iterator[bytes]:
        text: str = self._source
        for start in range(0, len(text), TEXT_PIECE):
            # surrogatepass: a lone surrogate (legal in a Python str) survives the round trip.
            yield text[start : start + TEXT_PIECE].encode("utf-8", "surrogatepass")

    def _json_chunks(self) -> Iterator[bytes]:
        data = encode_json(self._source).encode("ascii")
        view = memoryview(data)
        for start in range(0, len(data), JSON_PIECE):
            yield view[start : start + JSON_PIECE]  # type: ignore[misc]


def plan_value(value: Any) -> Plan:
    """Choose the layout for ``value`` (raises what ``BaseXCom.serialize_value`` raises for bad values).

    >>> plan_value({"a": 1}).layout, plan_value("x" * 10).layout, plan_value((1, 2)).layout
    ('dict', 'text', 'json')
    """
    kind = type(value)
    if kind is list:
        return Plan(LAYOUT_LIST, value)
    if kind is dict and RESERVED_KEYS.isdisjoint(value):
        return Plan(LAYOUT_DICT, value)
    if kind is str:
        return Plan(LAYOUT_TEXT, value)
    # Everything else: exactly what BaseXCom does (serde), then stream the result.
    serialized = _serde_serialize(value)
    kind = type(serialized)
    if kind is list:
        return Plan(LAYOUT_LIST, serialized, serialized=True)
    if kind is dict and RESERVED_KEYS.isdisjoint(serialized):
        return Plan(LAYOUT_DICT, serialized, serialized=True)
    if isinstance(serialized, str):  # a str subclass: serde keeps it, JSON stores its characters
        return Plan(LAYOUT_TEXT, str.__str__(serialized))  # its characters, even if __str__ is overridden
    return Plan(LAYOUT_JSON, serialized, serialized=True)


# ----------------------------------------------------------------------------------------------- reading
def decode(layout: str, serde: bool, chunks: Iterable[bytes]) -> Any:
    """Rebuild a value from the decompressed chunks of its object.

    ``serde`` says whether serde must turn dicts back into objects (tuples, datetimes...). Text is built
    by in-place appends, so a big string costs about its own size, not twice.
    """
    if layout == LAYOUT_TEXT:
        return _decode_text(chunks)
    if layout == LAYOUT_LIST:
        return _decode_lines(chunks, b"[", b"]", serde)
    if layout == LAYOUT_DICT:
        return _decode_lines(chunks, b"{", b"}", serde)
    if layout == LAYOUT_JSON:
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
        value = json.loads(buffer)
        del buffer
        return _serde_deserialize(value) if serde else value
    raise ValueError(f"unknown XCom object layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _decode_text(chunks: Iterable[bytes]) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    # A local str with one reference grows in place (CPython reallocs, no copy): peak ~ the text itself.
    text = ""
    for chunk in chunks:
        text += decoder.decode(chunk)
    text += decoder.decode(b"", True)
    return text


def _decode_lines(chunks: Iterable[bytes], opener: bytes, closer: bytes, serde: bool) -> Any:
    result: Any = [] if opener == b"[" else {}
    add = result.extend if opener == b"[" else result.update
    pending: list[bytes] = []
    pending_len = 0
    started = False

    def parse(blob: bytes, end: int) -> None:
        """Parse the lines in ``blob[:end]``: a view and one joined copy, never a chain of slices."""
        nonlocal started
        view = memoryview(blob)
        start = 0
        if not started:
            while start < end and blob[start] in _WHITESPACE:
                start += 1
            if blob[start : start + 1] != opener:
                raise ValueError(f"XCom object does not start with {opener!r}")
            start += 1
            started = True
        while start < end and blob[start] in _WHITESPACE:
            start += 1
        while end > start and blob[end - 1] in _WHITESPACE_OR_COMMA:
            end -= 1
        if end > start:
            part = json.loads(b"".join((opener, view[start:end], closer)))
            add(_serde_deserialize(part) if serde else part)
        view.release()

    for chunk in chunks:
        pending.append(chunk)
        pending_len += len(chunk)
        if pending_len < GROUP_BYTES:
            continue
        blob = b"".join(pending)
        pending.clear()
        cut = blob.rfind(b"\n")
        if cut < 0:  # one long line so far: keep reading
            pending, pending_len = [blob], len(blob)
            continue
        parse(blob, cut)
        rest = blob[cut + 1 :]
        del blob
        pending, pending_len = [rest], len(rest)
    blob = b"".join(pending).rstrip()
    pending.clear()
    if not blob.endswith(closer):
        raise ValueError(f"XCom object is truncated: it does not end with {closer!r}")
    parse(blob, len(blob) - 1)
    if not started:
        raise ValueError("XCom object is empty")
    return result
