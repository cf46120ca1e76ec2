"""Helpers shared by the stream tests (a uniquely named module: test dirs have no __init__)."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_genius.core.streams import Record, StreamLog, open_stream_log

STREAM_BACKENDS = ("redis", "sqlite")


@dataclass
class StreamPlace:
    """Where a test's streams live: ``uri(stream, group)`` builds the URI of one stream there."""

    backend: str
    base: str
    prefix: str

    def uri(self, stream: str, group: str | None = None, **params: object) -> str:
        query = f"stream={self.prefix}{stream}"
        if group:
            query += f"&group={group}"
        for name, value in params.items():
            query += f"&{name}={value}"
        return f"{self.base}?{query}"

    def open(self, stream: str, group: str | None = None, **params: object) -> StreamLog:
        return open_stream_log(self.uri(stream, group, **params))


def fill(log: StreamLog, count: int, start: int = 0) -> list[str]:
    """Append ``{"n": i}`` records; returns their ids."""
    ids = log.append([Record({"n": n}) for n in range(start, start + count)])
    assert all(i is not None for i in ids)
    return [i for i in ids if i is not None]
