"""Which backend serves a stream URI: ``sqlite://`` the embedded log, ``redis(s)://`` Redis Streams.

>>> log = open_stream_log("sqlite:///" + __import__("tempfile").mkdtemp() + "/s.db?stream=doc")
>>> type(log).__name__
'SqliteStreamLog'
"""

from __future__ import annotations

from collections.abc import Mapping

from airflow_genius.core.streams.base import StreamLog, parse_stream_uri


def open_stream_log(uri: str, env: Mapping[str, str] | None = None, *, need_group: bool = False) -> StreamLog:
    """Open the stream at ``uri`` (Redis password, if any, from ``GENIUS_STATE_PASSWORD`` in ``env``)."""
    address = parse_stream_uri(uri, need_group=need_group)
    # Imported on use: a URI names one backend, and importing the package (spec.py does) stays light.
    if address.scheme == "sqlite":
        from airflow_genius.core.streams.sqlite import SqliteStreamLog

        return SqliteStreamLog(address)
    from airflow_genius.core.streams.redis import RedisStreamLog

    return RedisStreamLog(address, env)
