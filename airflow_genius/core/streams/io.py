"""What a stream task sees: ``self.input`` (one bounded window of records) and ``self.output``.

Usage inside a bolt method (the runtime opens the window before the call and commits it after)::

    class Enrich(Bolt):
        def process(self) -> int:
            seen = self.input.state.get("seen", 0)      # operator state, committed with the window
            for record in self.input:                   # the window's records, in stream order
                self.output.send({**record, "len": len(record["text"])})
            self.input.state["seen"] = seen + len(self.input)
            return len(self.input)

Each ``send`` gets a deterministic dedup id ``<window origin>|<input id>|<n-th send for that input>``,
so a retry that replays the same window writes nothing twice (see ``docs/streams.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from airflow_genius.core.streams.base import Message, Record, StreamLog
from airflow_genius.core.streams.crash import crash_point
from airflow_genius.core.uris import redact

#: Records per append call: one round trip (Redis) or one transaction (SQLite) each.
DEFAULT_FLUSH_EVERY = 500


class InputWindow(Protocol):
    """What task code may see of the window an input belongs to
    (:class:`~airflow_genius.core.streams.window.StreamWindow` is the one implementation)."""

    #: The window's identity; output dedup ids start with it.
    origin: str
    #: This reader's consumer name in the group.
    consumer: str
    #: Seconds a time-bounded read goes on once the first records are in hand (None: until the bounds).
    linger: float | None


class StreamingInput:
    """The records of one window. Iterate it for the data, or :meth:`messages` for ids too.

    Attributes:
        state: the task's operator state (a JSON dict) as of the last committed window; change it in
            place and it is committed atomically with this window's checkpoint.
        ids: the exact message ids of this window (recorded in the run record before processing).
        current_id: the id of the record being processed (used to derive output dedup ids).
    """

    def __init__(
        self,
        log: StreamLog,
        group: str,
        messages: Sequence[Message],
        state: dict[str, Any] | None = None,
        *,
        window: InputWindow | None = None,
    ) -> None:
        self.log = log
        self.group = group
        self._messages = list(messages)
        self.ids = [m.id for m in self._messages]
        self.state: dict[str, Any] = dict(state or {})
        self.current_id: str | None = None
        self._window = window

    @property
    def window(self) -> InputWindow | None:
        """The window these records belong to (None for records read outside one)."""
        return self._window

    def close(self) -> None:
        """Release the stream connection (the runtime calls it when the run ends)."""
        self.log.close()

    def messages(self) -> Iterator[Message]:
        """The window's messages (id and data), in stream order."""
        for message in self._messages:
            self.current_id = message.id
            yield message
        self.current_id = None

    def __iter__(self) -> Iterator[Any]:
        for message in self.messages():
            yield message.data

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def location(self) -> str:
        return redact(self.log.address.uri)

    def __repr__(self) -> str:
        return f"StreamingInput({self.location!r}, {len(self)} records)"


class StreamingOutput:
    """Appends records to a stream, idempotently per window.

    ``send`` buffers; the runtime flushes after the method returns (and ``send`` flushes every
    ``flush_every`` records), then acks and checkpoints. Records of a failed try are discarded by
    :meth:`abort`; those already flushed are skipped on the retry by their dedup ids.
    """

    def __init__(
        self,
        log: StreamLog,
        *,
        scope: str,
        source: StreamingInput | None = None,
        flush_every: int = DEFAULT_FLUSH_EVERY,
    ) -> None:
        self.log = log
        self.scope = scope
        self.source = source
        self.flush_every = flush_every
        self._buffer: list[Record] = []
        self._counts: dict[str, int] = {}
        self.sent = 0
        self.written = 0
        self.skipped = 0
        self.flushes = 0

    def close(self) -> None:
        """Release the stream connection (the runtime calls it when the run ends)."""
        self.log.close()

    def send(self, record: Any) -> None:
        """Queue one JSON record for the output stream."""
        source_id = (self.source.current_id if self.source is not None else None) or "-"
        index = self._counts.get(source_id, 0)
        self._counts[source_id] = index + 1
        self._buffer.append(Record(record, f"{self.scope}|{source_id}|{index}"))
        self.sent += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> int:
        """Write the buffered records (durable when this returns); returns how many were new."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        ids = self.log.append(batch, scope=self.scope, want_ids=False)
        new = sum(1 for i in ids if i is not None)
        self.written += new
        self.skipped += len(ids) - new
        self.flushes += 1
        crash_point("mid_output")  # TEST HOOK: a kill after part of the window's output is durable
        return new

    def abort(self) -> None:
        """Drop records not yet written (the try failed)."""
        self._buffer.clear()

    def commit(self) -> None:
        """Flush (a stream output without a stream input, e.g. a spout): no manifest."""
        self.flush()

    @property
    def location(self) -> str:
        return redact(self.log.address.uri)

    def __repr__(self) -> str:
        return f"StreamingOutput({self.location!r})"
