"""Streams: Redis Streams or an embedded SQLite log, read in bounded windows (no Airflow imports).

>>> log = open_stream_log("sqlite:///" + __import__("tempfile").mkdtemp() + "/s.db?stream=doc")
>>> log.append([Record({"n": 1}), Record({"n": 2})])
['1', '2']

A stream bolt reads ``self.input`` (one window) and calls ``self.output.send(record)``; the runtime
records the window before the call and commits output, acks and checkpoint after (``docs/streams.md``).
"""

from __future__ import annotations

from airflow_genius.core.streams.backends import open_stream_log
from airflow_genius.core.streams.base import (
    STREAM_SCHEMES,
    Message,
    Record,
    StreamAddress,
    StreamError,
    StreamLog,
    StreamUriError,
    parse_stream_uri,
)
from airflow_genius.core.streams.io import StreamingInput, StreamingOutput

__all__ = [
    "STREAM_SCHEMES",
    "Message",
    "Record",
    "StreamAddress",
    "StreamError",
    "StreamLog",
    "StreamUriError",
    "StreamingInput",
    "StreamingOutput",
    "open_stream_log",
    "parse_stream_uri",
]
