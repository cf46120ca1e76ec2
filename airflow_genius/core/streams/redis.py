"""Streams on Redis: one Redis Stream per stream name, consumer groups, XACK, XAUTOCLAIM.

* The stream key is the stream name itself, so producers outside genius (``XADD events * d '{...}'``)
  and raw ``XREADGROUP`` consumers interoperate. A record is the field ``d`` holding JSON; entries
  written by others with other fields are read as a dict of their fields.
* Idempotent appends: Redis cannot ``XADD`` with an arbitrary id, so a Lua script checks each record's
  dedup id against a per-scope set (``<stream>:genius:dedup:<scope>``, one per window, expiring after
  ``dedup_ttl`` seconds, default 7 days) and adds only unseen records — atomically, so a crash never
  leaves a record written without its dedup mark or the reverse.
* ``?maxlen=N`` bounds the stream with ``XADD MAXLEN ~ N`` (approximate trimming, cheap).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_genius.core.errors import missing_extra
from airflow_genius.core.streams.base import (
    WRITTEN,
    Message,
    Record,
    StreamAddress,
    StreamError,
    StreamLog,
    encode_record,
)
from airflow_genius.core.uris import split_uri, state_password

#: Seconds a window's dedup set lives: longer than any retry of that window may come.
DEFAULT_DEDUP_TTL = 7 * 24 * 3600

# KEYS: stream, dedup set. ARGV: maxlen (0 = unbounded), ttl, want ids (1/0), then (dedup id | "", json)
# pairs. Without ids the reply is one string of '1' (written) / '0' (skipped): 20k ids cost the client
# more to parse than the writes cost the server.
_APPEND_LUA = """
local out = {}
local flags = {}
local maxlen = tonumber(ARGV[1])
local want = ARGV[3] == '1'
local touched = false
for i = 4, #ARGV, 2 do
  local dedup = ARGV[i]
  local fresh = 1
  if dedup ~= '' then
    fresh = redis.call('SADD', KEYS[2], dedup)
    touched = true
  end
  local id = ''
  if fresh == 1 then
    if maxlen > 0 then
      id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i + 1])
    else
      id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[i + 1])
    end
  end
  if want then out[#out + 1] = id else flags[#flags + 1] = fresh end
end
if touched then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if want then return out end
return table.concat(flags)
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamLog(StreamLog):
    """A stream on Redis. ``redis://[user@]host:6379/0?stream=s&group=g[&maxlen=N]``."""

    def __init__(self, address: StreamAddress, env: Mapping[str, str] | None = None) -> None:
        super().__init__(address)
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise missing_extra("redis", "redis") from exc
        parts = split_uri(address.uri)  # host and port; parse_stream_uri checked them
        self._redis = redis.Redis(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=address.db,
            username=parts.username or None,
            password=state_password(env),
            ssl=address.scheme == "rediss",
        )
        self._errors = redis.exceptions.ResponseError
        self._append = self._redis.register_script(_APPEND_LUA)
        self.maxlen = address.maxlen or 0
        # EXPIRE takes whole seconds; round up so a short TTL never becomes 0 (= delete at once).
        self.dedup_ttl = math.ceil(address.dedup_ttl or DEFAULT_DEDUP_TTL)
        self.key = self.stream

    @property
    def client(self) -> Any:
        """The redis-py client (benchmarks and tests compare against raw calls)."""
        return self._redis

    def append(
        self, records: Sequence[Record], *, scope: str | None = None, want_ids: bool = True
    ) -> list[str | None]:
        if not records:
            return []
        argv: list[Any] = [self.maxlen, self.dedup_ttl, 1 if want_ids else 0]
        for record in records:
            argv.append(record.dedup or "")
            argv.append(encode_record(record.data))
        dedup_key = f"{self.key}:genius:dedup:{scope or '-'}"
        reply = self._append(keys=[self.key, dedup_key], args=argv)
        if not want_ids:
            return [WRITTEN if flag == "1" else None for flag in _text(reply)]
        return [_text(i) or None for i in reply]

    def ensure_group(self, group: str, *, start: str = "0") -> None:
        try:
            self._redis.xgroup_create(self.key, group, id=start, mkstream=True)
        except self._errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise StreamError(f"cannot create group {group!r} on {self.key!r}: {exc}") from exc

    def _messages(self, entries: Any) -> list[Message]:
        out = []
        for entry_id, fields in entries or ():
            if fields is None:  # deleted or trimmed while pending: nothing left to process
                continue
            out.append(Message(_text(entry_id), _decode(fields)))
        return out

    def _read(self, group: str, consumer: str, start: str, count: int, block_ms: int | None) -> list[Message]:
        # RESP2 reply: [[key, entries]] (redis-py's annotation is the RESP3 dict)
        reply: Any = self._redis.xreadgroup(group, consumer, {self.key: start}, count=count, block=block_ms)
        if not reply:
            return []
        return self._messages(reply[0][1])

    def read_new(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Message]:
        return self._read(group, consumer, ">", count, block_ms)

    def read_pending(self, group: str, consumer: str, count: int) -> list[Message]:
        return self._read(group, consumer, "0", count, None)

    def ack(self, group: str, ids: Sequence[str]) -> int:
        return int(self._redis.xack(self.key, group, *ids)) if ids else 0

    def pending_ids(self, group: str) -> list[str]:
        rows = self._redis.xpending_range(self.key, group, min="-", max="+", count=1_000_000)
        return [_text(row["message_id"]) for row in rows]

    def autoclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        reply = self._redis.xautoclaim(self.key, group, consumer, min_idle_ms, start_id="0-0", count=count)
        return self._messages(reply[1])

    def get(self, ids: Sequence[str]) -> list[Message]:
        pipe = self._redis.pipeline(transaction=False)
        for message_id in ids:
            pipe.xrange(self.key, message_id, message_id, count=1)
        found = []
        for message_id, entries in zip(ids, pipe.execute(), strict=True):
            if not entries:
                raise self.trimmed(message_id)
            found.extend(self._messages(entries))
        return found

    def read_all(self) -> list[Message]:
        return self._messages(self._redis.xrange(self.key))

    def length(self) -> int:
        return int(self._redis.xlen(self.key))

    def delete(self) -> None:
        """Drop the stream and its dedup sets (tests)."""
        keys = [self.key, *self._redis.scan_iter(f"{self.key}:genius:dedup:*")]
        self._redis.delete(*keys)

    def close(self) -> None:
        self._redis.close()


def _decode(fields: Mapping[Any, Any]) -> Any:
    data = fields.get(b"d")
    if data is not None and len(fields) == 1:  # the common case, without decoding every key
        try:
            return json.loads(data)
        except ValueError:
            pass
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    if set(decoded) == {"d"}:
        try:
            return json.loads(decoded["d"])
        except ValueError:
            return decoded
    return decoded
