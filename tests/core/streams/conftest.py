"""Stream fixtures: one isolated stream per test on each backend (real Redis db 15, SQLite in tmp_path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_helpers import STREAM_BACKENDS, StreamPlace


@pytest.fixture(params=STREAM_BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[StreamPlace]:
    """A stream location on each backend; Redis keys of the test are deleted afterwards."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        yield StreamPlace("redis", redis_url, f"{unique_name}:")
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{unique_name}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        yield StreamPlace("sqlite", f"sqlite:///{tmp_path}/streams.db", "")
