"""The stream log interface shared by the Redis Streams and the embedded SQLite backends.

A *stream log* is an append-only sequence of JSON records with monotonically increasing ids, read by
**consumer groups**: each group keeps its own read position and a *pending* list of messages delivered
to a consumer but not yet acknowledged. Semantics follow Redis Streams, so both backends pass one
conformance suite (``tests/core/streams/test_stream_conformance.py``). ``open_stream_log``
(``streams/backends.py``) picks the backend of a URI::

    log = open_stream_log("sqlite:///tmp/streams.db?stream=events&group=counter")
    log.append([Record({"n": 1})])
    batch = log.read_new("counter", "worker-1", count=10)   # delivered, now pending
    log.ack("counter", [m.id for m in batch])                 # done: no longer pending
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl

from airflow_genius.core.errors import GeniusError
from airflow_genius.core.uris import STATE_CREDENTIALS_HINT, redact, secret_problem, split_uri

#: What ``append(..., want_ids=False)`` may return for a record it wrote (None: skipped as a duplicate).
WRITTEN = "+"
#: URI schemes a stream can live on.
STREAM_SCHEMES = ("redis", "rediss", "sqlite")


#: Largest count a parameter may hold (exact as a JSON, Lua or SQLite number).
MAX_COUNT = 10**12
#: Longest duration a parameter may hold, in seconds (ten years).
MAX_SECONDS = 10 * 365 * 24 * 3600


class StreamError(GeniusError):
    """A stream URI or a stream operation is wrong (bad URI, missing group, unreachable server)."""


class StreamUriError(StreamError, ValueError):
    """A stream URI is malformed. ``problem`` is the message without the URI, so a caller that names
    its own field (``input.uri: <problem>``) can reuse it.

    >>> str(StreamUriError("sqlite:///s.db?stream=s&batch=x", "batch: expected an integer"))
    "stream URI 'sqlite:///s.db?stream=s&batch=x': batch: expected an integer"
    """

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = redact(uri)
        self.problem = problem
        super().__init__(f"stream URI {self.uri!r}: {problem}")


@dataclass(frozen=True)
class Message:
    """One record read from a stream: its id (opaque, ordered) and its JSON data."""

    id: str
    data: Any


@dataclass(frozen=True)
class Record:
    """One record to append. ``dedup`` (optional) makes the append idempotent: a second append of the
    same ``dedup`` id to the same stream is skipped (exactly-once output of a replayed window)."""

    data: Any
    dedup: str | None = None


@dataclass(frozen=True)
class StreamAddress:
    """A parsed stream URI: where the log lives, which stream, and (for input) which group.

    The typed fields are the URI's query parameters (``docs/streams.md``); None means the default.
    """

    uri: str
    scheme: str
    stream: str
    group: str | None
    params: dict[str, str]
    #: Redis database number (Redis only).
    db: int = 0
    #: The log file (SQLite only), like SQLAlchemy: a fourth slash makes it absolute.
    path: Path | None = None
    consumer: str | None = None
    #: Records per read (input).
    batch: int | None = None
    #: Records per write (output).
    flush_every: int | None = None
    #: Bound of the stream's length.
    maxlen: int | None = None
    #: Seconds a record pending on another consumer must idle before this one takes it over (input).
    claim_idle: float | None = None
    #: Seconds a window's dedup set lives (Redis output).
    dedup_ttl: float | None = None


def _count(value: str) -> int:
    # Digits only: int() would also take "+5", " 5" and "1_000".
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= MAX_COUNT:
        raise ValueError(f"expected an integer from 1 to {MAX_COUNT:,}")
    return int(value)


def _seconds(value: str) -> float:
    # Plain decimals only: float() would also take "nan", "inf", "1e400" and "1_0".
    number = float(value) if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", value) else math.nan
    if not 0 < number <= MAX_SECONDS:
        raise ValueError(f"expected a number of seconds > 0 (at most {MAX_SECONDS:,})")
    return number


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty name")
    return value


#: Every query parameter a stream URI may carry: its parser, what it means, and the schemes using it.
STREAM_PARAMS: dict[str, tuple[Callable[[str], Any], str, tuple[str, ...]]] = {
    "stream": (_name, "the stream's name", STREAM_SCHEMES),
    "group": (_name, "the consumer group of an input", STREAM_SCHEMES),
    "consumer": (_name, "this consumer's name in the group", STREAM_SCHEMES),
    "batch": (_count, "records per read", STREAM_SCHEMES),
    "flush_every": (_count, "records per write", STREAM_SCHEMES),
    "maxlen": (_count, "the stream's length bound", STREAM_SCHEMES),
    "claim_idle": (_seconds, "seconds before records of a dead consumer are taken over", STREAM_SCHEMES),
    "dedup_ttl": (_seconds, "seconds a window's dedup set lives", ("redis", "rediss")),
}


def parse_stream_uri(uri: str, *, need_group: bool = False) -> StreamAddress:
    """Parse ``redis://host:6379/0?stream=s&group=g`` or ``sqlite:///path.db?stream=s&group=g``.

    Every query parameter is checked and typed here (:data:`STREAM_PARAMS`); anything wrong raises
    :class:`StreamUriError` naming the parameter and the (redacted) URI.

    >>> parse_stream_uri("sqlite:///tmp/x.db?stream=s&group=g&batch=50").batch
    50
    >>> try:
    ...     parse_stream_uri("sqlite:///tmp/x.db?stream=s&bacth=50")
    ... except StreamUriError as exc:
    ...     print(exc.problem[:48])
    unknown parameter 'bacth'; did you mean 'batch'?
    """
    problem = secret_problem(uri, STATE_CREDENTIALS_HINT)
    if problem:
        raise StreamUriError(uri, problem)
    parts = split_uri(uri)
    scheme = parts.scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise StreamUriError(uri, f"expected a scheme among {', '.join(STREAM_SCHEMES)}")
    where = _location(uri, parts, scheme)
    params: dict[str, str] = {}
    typed: dict[str, Any] = {}
    # The one place every parameter is checked: a typo or a bad value fails here, at parse time.
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        known = STREAM_PARAMS.get(name)
        if known is None:
            close = difflib.get_close_matches(name, STREAM_PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StreamUriError(
                uri, f"unknown parameter {name!r}{hint} (known: {', '.join(sorted(STREAM_PARAMS))})"
            )
        parse, meaning, schemes = known
        if name in params:
            raise StreamUriError(uri, f"parameter {name} is given twice")
        if scheme not in schemes:
            raise StreamUriError(uri, f"parameter {name} ({meaning}) applies to {'/'.join(schemes)} only")
        try:
            typed[name] = parse(value)
        except ValueError as exc:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise StreamUriError(uri, f"parameter {name}={shown!r} ({meaning}): {exc}") from None
        params[name] = value
    if "stream" not in typed:
        raise StreamUriError(uri, "needs ?stream=<name>")
    if need_group and "group" not in typed:
        raise StreamUriError(uri, "needs &group=<consumer group> to be read")
    group = typed.pop("group", None)
    return StreamAddress(uri=uri, scheme=scheme, group=group, params=params, **where, **typed)


def _location(uri: str, parts: SplitResult, scheme: str) -> dict[str, Any]:
    """The Redis database or the SQLite file of ``uri`` (split into ``parts``), checked."""
    if scheme == "sqlite":
        if parts.netloc:
            raise StreamUriError(uri, "names a host; use sqlite:///relative.db or sqlite:////abs.db")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise StreamUriError(uri, "has no file path, e.g. sqlite:///streams.db")
        return {"path": Path(os.path.expanduser(path))}
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise StreamUriError(uri, "the port must be a number from 0 to 65535") from None
    db = parts.path.strip("/") or "0"
    if not re.fullmatch(r"[0-9]{1,5}", db):
        raise StreamUriError(uri, f"the path must be a Redis database number (/0), got {parts.path!r}")
    return {"db": int(db)}


class StreamLog(ABC):
    """One stream on one backend. Ids are strings; order them only with :meth:`id_key`."""

    def __init__(self, address: StreamAddress) -> None:
        self.address = address
        self.stream = address.stream

    # ------------------------------------------------------------------ writing
    @abstractmethod
    def append(
        self, records: Sequence[Record], *, scope: str | None = None, want_ids: bool = True
    ) -> list[str | None]:
        """Append records atomically per call; returns each new id, or None where ``dedup`` was seen.

        ``scope`` groups dedup ids (one window); backends may use it to expire dedup marks. With
        ``want_ids=False`` a backend may return :data:`WRITTEN` instead of the ids (cheaper).
        """

    # ------------------------------------------------------------------ groups
    @abstractmethod
    def ensure_group(self, group: str, *, start: str = "0") -> None:
        """Create ``group`` if absent; ``start="0"`` reads from the beginning, ``"$"`` only new records."""

    @abstractmethod
    def read_new(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Message]:
        """Deliver up to ``count`` never-delivered records to ``consumer`` (they become pending)."""

    @abstractmethod
    def read_pending(self, group: str, consumer: str, count: int) -> list[Message]:
        """Records already delivered to ``consumer`` and not acknowledged, oldest first."""

    @abstractmethod
    def ack(self, group: str, ids: Sequence[str]) -> int:
        """Acknowledge ``ids`` (no longer pending); returns how many were pending."""

    @abstractmethod
    def pending_ids(self, group: str) -> list[str]:
        """Ids pending in ``group`` (any consumer), oldest first."""

    @abstractmethod
    def autoclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        """Take over up to ``count`` records pending for longer than ``min_idle_ms`` (dead consumers)."""

    # ------------------------------------------------------------------ random access
    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Message]:
        """The records with exactly these ids, in the given order (replay of a recorded window)."""

    @abstractmethod
    def read_all(self) -> list[Message]:
        """Every record still in the stream (tests and small tools)."""

    @abstractmethod
    def length(self) -> int:
        """Number of records in the stream."""

    @staticmethod
    def id_key(message_id: str) -> tuple[int, ...]:
        """A sort key for ids of this backend (``"12"`` or ``"1700000000000-3"``)."""
        return tuple(int(part) for part in message_id.split("-"))

    def close(self) -> None:  # noqa: B027 - optional for backends holding connections
        """Release connections. Safe to call twice."""

    def trimmed(self, message_id: str) -> StreamError:
        """The error of :meth:`get` for an id no longer in the stream."""
        return StreamError(f"record {message_id} is no longer in stream {self.stream!r} (trimmed?)")


def json_default(value: Any) -> Any:
    """Refuse non-JSON record values with a clear message (records cross processes as JSON)."""
    raise TypeError(f"stream records must be JSON-serialisable, got {type(value).__name__}")


def encode_record(data: Any) -> str:
    """A record's data as the compact JSON both backends store.

    >>> encode_record({"n": 1})
    '{"n":1}'
    """
    return json.dumps(data, default=json_default, separators=(",", ":"))
