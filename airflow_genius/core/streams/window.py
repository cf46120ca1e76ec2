"""Bounded windows: each run of a stream task processes one window, exactly once for its output.

The protocol (also in ``docs/streams.md``), with a checkpoint per (stream, group, map_index) in task state:

1. **Open.** If the run record already names a window (this is a retry), replay exactly those ids.
   Else if the checkpoint holds an *open* window (a run died mid-window), adopt it. Else read a new
   window (this consumer's pending records first, then new ones, ≤ max_records / ≤ max_seconds),
   mark it open in the checkpoint (compare-and-set) and write its bounds into the run record — all
   *before* the task sees a record.
2. **Process.** The task iterates ``self.input`` and ``self.output.send(...)``s; output dedup ids are
   ``<window origin>|<input id>|<n>``, so replays never write twice.
3. **Commit.** Flush the output (durable), XACK the window's ids, then compare-and-set the checkpoint
   to ``committed`` (last id, counts, the task's operator state) with no open window.

A crash anywhere before 3 completes leaves the window open: the next try (or the next run) replays
it, the output side skips what was already written, and the commit happens once.

Usage (the runtime does this; shown for tools and tests)::

    window = StreamWindow(state, scope, key, log, group="g", consumer="etl.enrich.-1",
                          bounds=Window(max_records=100))
    source = window.open()          # StreamingInput, bounds already recorded
    ...                             # the task runs
    window.commit(source, output)   # flush, ack, checkpoint
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from airflow_genius.core.errors import TransitionConflict
from airflow_genius.core.spec import MAX_WINDOW_RECORDS, Window
from airflow_genius.core.state import RunKey, StateManager, TaskScope
from airflow_genius.core.streams.base import Message, StreamLog
from airflow_genius.core.streams.crash import crash_point
from airflow_genius.core.streams.io import StreamingInput, StreamingOutput

#: How many committed window origins the checkpoint remembers (late retries of older ones are refused
#: by compare-and-set instead of being recognised).
RECENT_WINDOWS = 64
#: Records per XREADGROUP (or SQLite read transaction); ``&batch=N`` on the input URI.
DEFAULT_READ_BATCH = 1000
#: Window used when a stream input has no ``window`` in its spec.
DEFAULT_WINDOW = Window(max_records=1000, max_seconds=None)


def checkpoint_key(stream: str, group: str, map_index: int) -> str:
    """Task-state key of the checkpoint of one consumer (mapped tasks each keep their own)."""
    return f"stream:{stream}:{group}:{map_index}"


class StreamWindow:
    """Open, record, replay and commit one bounded window of a stream input (see module doc)."""

    def __init__(
        self,
        state: StateManager,
        scope: TaskScope,
        key: RunKey,
        log: StreamLog,
        *,
        group: str,
        consumer: str,
        bounds: Window | None = None,
        claim_idle_ms: int | None = None,
        read_batch: int = DEFAULT_READ_BATCH,
    ) -> None:
        self.state = state
        self.scope = scope
        self.key = key
        self.log = log
        self.group = group
        self.consumer = consumer
        self.bounds = bounds or DEFAULT_WINDOW
        self.claim_idle_ms = claim_idle_ms
        self.read_batch = read_batch
        #: Seconds a time-bounded read goes on once the first records are in hand (None: until the
        #: window's bounds). 0 answers what is there at once: ``max_seconds`` then bounds only the wait
        #: for the first record (latency-bound consumers such as ``core/inference.py`` set it).
        self.linger: float | None = None
        self.ckpt_key = checkpoint_key(log.stream, group, key.map_index)
        self.origin = str(key)
        self.ids: list[str] = []
        self.replayed = False
        self.already_committed = False
        self._expected: Any = None

    # ------------------------------------------------------------------ open
    def open(self) -> StreamingInput:
        """Decide this run's window, record it, and return it as the task's input."""
        self.log.ensure_group(self.group, start="0")
        record = self.state.require_run(self.key)
        current, committed, pending = self._checkpoint()
        recorded = (
            record.window if record.window and record.window.get("checkpoint") == self.ckpt_key else None
        )
        if recorded is not None:
            # A retry of this run: replay the recorded bounds, whatever the checkpoint says now.
            messages = self._replay(recorded, current)
            # Committed already (crash after the checkpoint, or another run adopted and committed it):
            # replay for the result, but never advance the checkpoint a second time.
            self.already_committed = self.origin in committed.get("recent", ())
        elif pending:
            # A run died mid-window and was not retried: take its window over with its origin, so the
            # output dedup ids are the ones it may already have written.
            messages = self._adopt(pending, current)
        else:
            messages = self._read_new()
            self._mark_open(current, messages)
        # Operator state as it was before this window, so a replay computes the same output.
        latest = committed.get("window") == self.origin
        before = (
            committed.get("state_before") if self.already_committed and latest else committed.get("state")
        )
        return self._input(messages, before)

    def next(self) -> StreamingInput | None:
        """Unbounded mode: open the run's next window, or return None when no record arrived.

        Adopts the checkpoint's open window first (a run stopped or died mid-window), else reads a new
        one under a fresh origin ``<run key>#<committed windows + 1>`` (distinct for every window: the
        count only grows, and a window is opened only while none is open). The run record's window
        is not replayed: in this mode it only reports the window in progress.
        """
        self.ids, self.replayed, self.already_committed = [], False, False
        current, committed, pending = self._checkpoint()
        if pending:
            messages = self._adopt(pending, current)
        else:
            messages = self._read_new()
            if not messages:
                return None  # nothing opened, nothing to commit
            self.origin = f"{self.key}#{int(committed.get('windows', 0)) + 1}"
            self._mark_open(current, messages)
        return self._input(messages, committed.get("state"))

    def empty_input(self) -> StreamingInput:
        """The task's input before the first window of unbounded mode: no records, this window."""
        return self._input([], None)

    def _input(self, messages: list[Message], state: dict[str, Any] | None) -> StreamingInput:
        return StreamingInput(self.log, self.group, messages, state=state, window=self)

    def _checkpoint(self) -> tuple[Any, dict[str, Any], Mapping[str, Any] | None]:
        """The checkpoint as stored (for compare-and-set), its committed part and its open window."""
        current = self.state.get_state(self.scope, self.ckpt_key)
        checkpoint = current or {}
        return current, checkpoint.get("committed") or {}, checkpoint.get("open")

    def _replay(self, bounds: Mapping[str, Any], current: Any) -> list[Message]:
        """Take the exact records of a window recorded before (its origin and ids)."""
        self.origin, self.ids, self.replayed = bounds["origin"], list(bounds["ids"]), True
        self._expected = current
        return self.log.get(self.ids)

    def _adopt(self, pending: Mapping[str, Any], current: Any) -> list[Message]:
        """Replay the checkpoint's open window (left by a run that stopped or died) as this run's own."""
        messages = self._replay(pending, current)
        self._record()
        return messages

    def _mark_open(self, current: Any, messages: list[Message]) -> None:
        """Compare-and-set the checkpoint's ``open`` window of the records just read, then record the
        bounds in the run record."""
        self.ids = [m.id for m in messages]
        crash_point("after_read")
        opened = {**(current or {}), "open": {"origin": self.origin, "ids": self.ids}}
        if not self.state.compare_and_set_state(self.scope, self.ckpt_key, current, opened):
            raise TransitionConflict(
                f"{self.key}: another run moved checkpoint {self.ckpt_key!r} while this window opened"
            )
        self._expected = opened
        crash_point("after_open")
        self._record()

    def _read_new(self) -> list[Message]:
        limit = self.bounds.max_records or MAX_WINDOW_RECORDS
        deadline = None if self.bounds.max_seconds is None else time.monotonic() + self.bounds.max_seconds
        # Records delivered to this consumer by a try that died before marking them open come first.
        messages = self.log.read_pending(self.group, self.consumer, limit)
        if self.claim_idle_ms is not None and len(messages) < limit:
            messages += self.log.autoclaim(
                self.group, self.consumer, self.claim_idle_ms, limit - len(messages)
            )
        while len(messages) < limit:
            if messages and deadline is not None and self.linger is not None:
                deadline = min(deadline, time.monotonic() + self.linger)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            block = None if remaining is None else max(1, int(remaining * 1000))
            batch = self.log.read_new(
                self.group, self.consumer, min(limit - len(messages), self.read_batch), block
            )
            if not batch:
                if deadline is None:
                    break  # count-only window: take what is there now, never wait
                continue
            messages += batch
        return messages

    def _record(self) -> None:
        self.state.update_run(self.key, window=self.describe(committed=False))

    def describe(self, *, committed: bool) -> dict[str, Any]:
        """The run record's ``window``: exact bounds, so a retry replays the same records."""
        return {
            "checkpoint": self.ckpt_key,
            "stream": self.log.stream,
            "group": self.group,
            "consumer": self.consumer,
            "origin": self.origin,
            "ids": self.ids,
            "first_id": self.ids[0] if self.ids else None,
            "last_id": self.ids[-1] if self.ids else None,
            "count": len(self.ids),
            "max_records": self.bounds.max_records,
            "max_seconds": self.bounds.max_seconds,
            "committed": committed,
        }

    # ------------------------------------------------------------------ commit
    def commit(self, source: StreamingInput, output: StreamingOutput | Any | None) -> dict[str, Any]:
        """Make the output durable (flush a stream, publish a batch partition), ack the input, advance
        the checkpoint; returns metrics for the run record."""
        crash_point("before_output")
        manifest = None
        if isinstance(output, StreamingOutput):
            output.flush()
        elif output is not None:
            manifest = output.commit()  # a batch output: publish the run's partition (replaced on replay)
        crash_point("after_output")
        self.log.ack(self.group, self.ids)  # output is durable: the input may go
        crash_point("after_ack")
        if not self.already_committed:
            self._advance(source)
        crash_point("after_checkpoint")
        self.state.update_run(self.key, window=self.describe(committed=True))
        metrics: dict[str, Any] = {"window_records": len(self.ids), "window_replayed": self.replayed}
        if isinstance(output, StreamingOutput):
            metrics.update(
                output_sent=output.sent, output_written=output.written, output_skipped=output.skipped
            )
        if manifest is not None:
            metrics["output_files"] = len(manifest.files)
        return metrics

    def _advance(self, source: StreamingInput) -> None:
        previous = (self._expected or {}).get("committed") or {}
        value = {
            "committed": {
                "window": self.origin,
                "last_id": self.ids[-1] if self.ids else previous.get("last_id"),
                "windows": int(previous.get("windows", 0)) + 1,
                "records": int(previous.get("records", 0)) + len(self.ids),
                "state_before": previous.get("state"),
                "state": source.state,
                # Origins of the last windows committed, so a late retry of one never commits it twice.
                "recent": [*list(previous.get("recent", ()))[-(RECENT_WINDOWS - 1) :], self.origin],
            },
            "open": None,
        }
        if self.state.compare_and_set_state(self.scope, self.ckpt_key, self._expected, value):
            return
        now = self.state.get_state(self.scope, self.ckpt_key) or {}
        if self.origin in (now.get("committed") or {}).get("recent", ()):
            return  # a concurrent run of the same window committed it: the output is deduplicated
        raise TransitionConflict(
            f"{self.key}: checkpoint {self.ckpt_key!r} moved on before this window committed"
        )
