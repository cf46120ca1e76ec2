"""The stream log interface shared by the Redis Streams and the embedded SQLite backends.

A *stream log* is an append-only sequence of JSON records with monotonically increasing ids, read by
**consumer groups**: each group keeps its own read position and a *pending* list of messages delivered
to a consumer but not yet acknowledged. Semantics follow Redis Streams, so both backends pass one
conformance suite (``tests/core/streams/test_conformance.py``)::

    log = open_stream_log("sqlite:///tmp/streams.db?stream=events&group=counter")
    log.append([Record({"n": 1})])
    batch = log.read_new("counter", "worker-1", count=10)   # delivered, now pending
    log.ack("counter", [m.id for m in batch])                 # done: no longer pending
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_genius.core.errors import GeniusError
from airflow_genius.core.uris import has_password, query_params, redact, split_uri

#: What ``append(..., want_ids=False)`` may return for a record it wrote (None: skipped as a duplicate).
WRITTEN = "+"
#: URI schemes a stream can live on.
STREAM_SCHEMES = ("redis", "rediss", "sqlite")


class StreamError(GeniusError):
    """A stream URI or a stream operation is wrong (bad URI, missing group, unreachable server)."""


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
    """A parsed stream URI: where the log lives, which stream, and (for input) which group."""

    uri: str
    scheme: str
    stream: str
    group: str | None
    params: dict[str, str]


def parse_stream_uri(uri: str, *, need_group: bool = False) -> StreamAddress:
    """Parse ``redis://host:6379/0?stream=s&group=g`` or ``sqlite:///path.db?stream=s&group=g``.

    >>> parse_stream_uri("sqlite:///tmp/x.db?stream=s&group=g").group
    'g'
    """
    if has_password(uri):
        raise StreamError(f"stream URI {redact(uri)!r} embeds a password; use GENIUS_STATE_PASSWORD")
    parts = split_uri(uri)
    scheme = parts.scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise StreamError(f"stream URI {uri!r}: expected a scheme among {', '.join(STREAM_SCHEMES)}")
    params = query_params(uri)
    stream = params.get("stream", "")
    if not stream:
        raise StreamError(f"stream URI {uri!r} needs ?stream=<name>")
    group = params.get("group") or None
    if need_group and group is None:
        raise StreamError(f"stream URI {uri!r} needs &group=<consumer group> to be read")
    return StreamAddress(uri=uri, scheme=scheme, stream=stream, group=group, params=params)


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


def open_stream_log(uri: str, env: Mapping[str, str] | None = None, *, need_group: bool = False) -> StreamLog:
    """Open the stream at ``uri`` (Redis password, if any, from ``GENIUS_STATE_PASSWORD`` in ``env``)."""
    address = parse_stream_uri(uri, need_group=need_group)
    if address.scheme == "sqlite":
        from airflow_genius.core.streams.sqlite import SqliteStreamLog

        return SqliteStreamLog(address)
    from airflow_genius.core.streams.redis import RedisStreamLog

    return RedisStreamLog(address, env)


def json_default(value: Any) -> Any:
    """Refuse non-JSON record values with a clear message (records cross processes as JSON)."""
    raise TypeError(f"stream records must be JSON-serialisable, got {type(value).__name__}")
