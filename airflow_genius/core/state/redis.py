"""Redis state: run records and task state on a Redis server (redis-py).

Layout (``P`` is the key prefix, ``genius`` unless ``?prefix=`` says otherwise; every part built from an
identifier is escaped so ``:`` inside a run_id cannot collide with the separator):

* ``P:run:<dag>:<task>:<run_id>:<map_index>`` — hash ``v`` (version), ``d`` (the record as JSON),
  ``s`` (status, so the status index can be maintained server-side).
* ``P:idx:all``, ``P:idx:dag:<dag>``, ``P:idx:task:<dag>:<task>``, ``P:idx:status:<STATUS>`` — sorted
  sets of record keys scored by ``updated_at``, for :meth:`list_runs`.
* ``P:state:<namespace>:<dag>:<task>`` — one hash per task scope, field = key, value = JSON.

Every write is one round trip: insert, replace (compare version and write) and delete are Lua scripts
that also keep the indexes in step, so a record and its index entries never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from airflow_genius.core.errors import StateError, missing_extra
from airflow_genius.core.state._common import (
    dumps,
    escape,
    loads,
    record_from_json,
    record_to_json,
    refuse_password,
    scrub,
)
from airflow_genius.core.state.base import RunKey, RunRecord, StateManager, Status, TaskScope
from airflow_genius.core.state.faults import FaultBudget
from airflow_genius.core.uris import query_params, redact, split_uri, state_password

log = logging.getLogger("airflow_genius.state.redis")

DEFAULT_PREFIX = "genius"
#: Cached key strings per manager (cleared when full: keys are cheap to rebuild, memory is not free).
_KEY_CACHE_SIZE = 4096

#: Status order of the status-index keys passed to the scripts (KEYS[5..9]).
_STATUSES = tuple(Status)
_STATUS_SLOT = {status.value: index for index, status in enumerate(_STATUSES)}

# KEYS: record, idx:all, idx:dag, idx:task, idx:status:<each status in _STATUSES order>
# ARGV: version, data, status, score, status slot (0-based position of the status in _STATUSES)
_INSERT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 's', ARGV[3])
local score = ARGV[4]
redis.call('ZADD', KEYS[2], score, KEYS[1])
redis.call('ZADD', KEYS[3], score, KEYS[1])
redis.call('ZADD', KEYS[4], score, KEYS[1])
redis.call('ZADD', KEYS[5 + tonumber(ARGV[5])], score, KEYS[1])
return 1
"""

# Same KEYS; ARGV: expected version, new version, data, status, score, status slot.
_REPLACE_LUA = """
local found = redis.call('HMGET', KEYS[1], 'v', 's')
if found[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 's', ARGV[4])
local score = ARGV[5]
redis.call('ZADD', KEYS[2], score, KEYS[1])
redis.call('ZADD', KEYS[3], score, KEYS[1])
redis.call('ZADD', KEYS[4], score, KEYS[1])
local slot = 5 + tonumber(ARGV[6])
if found[2] ~= ARGV[4] then
  for i = 5, #KEYS do
    if i ~= slot then redis.call('ZREM', KEYS[i], KEYS[1]) end
  end
end
redis.call('ZADD', KEYS[slot], score, KEYS[1])
return 1
"""

# Same KEYS; no ARGV.
_DELETE_LUA = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], KEYS[1]) end
return 1
"""

# KEYS: scope hash. ARGV: field, mode ('a': expect absent/null, 'v': expect ARGV[3]), expected, new value.
# Returns {1} on success, {0} when absent, {0, current} when present but different (the caller then
# compares by JSON value: equal values may be spelled differently by another client).
_CAS_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local ok
if ARGV[2] == 'a' then ok = (current == false or current == 'null') else ok = (current == ARGV[3]) end
if ok then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  return {1}
end
if current == false then return {0} end
return {0, current}
"""


class RedisStateManager(StateManager):
    """State on Redis.

    >>> state = RedisStateManager.from_uri("redis://127.0.0.1:6379/0?prefix=genius")  # doctest: +SKIP
    >>> state.set_state(TaskScope("default", "etl", "spout"), "cursor", 42)  # doctest: +SKIP

    URI: ``redis://[user@]host:port/db`` or ``rediss://`` for TLS, optional ``?prefix=NAME``; any other
    query parameter is a redis-py connection option. The password comes from ``GENIUS_STATE_PASSWORD``.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        uri: str | None = None,
        owns_client: bool = False,
        budget: FaultBudget | None = None,
    ) -> None:
        """Use a ready redis-py ``client`` (an Airflow hook's); ``close()`` closes it only if owned."""
        super().__init__(budget=budget)
        import redis

        self._faults: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._timeouts: tuple[type[BaseException], ...] = (redis.TimeoutError,)
        # A refused login is a ConnectionError to redis-py, but waiting does not fix a wrong password.
        self._refusals: tuple[type[BaseException], ...] = (redis.AuthenticationError,)
        if not prefix:
            raise StateError("redis state prefix must not be empty")
        self.client = client
        self.prefix = prefix
        self._uri = uri
        self._owns_client = owns_client
        self._insert_script = client.register_script(_INSERT_LUA)
        self._replace_script = client.register_script(_REPLACE_LUA)
        self._delete_script = client.register_script(_DELETE_LUA)
        self._cas_script = client.register_script(_CAS_LUA)
        self._idx_all = f"{prefix}:idx:all"
        self._idx_status = tuple(f"{prefix}:idx:status:{status.value}" for status in _STATUSES)
        # Key strings are cached: a spout sets its cursor in a hot loop, always in the same scope, and a
        # run's queue/start/heartbeat/finish all build the same record and index keys.
        self._scope_keys: dict[TaskScope, str] = {}
        self._record_keys: dict[RunKey, tuple[str, ...]] = {}

    @classmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> RedisStateManager:
        refuse_password(uri)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise missing_extra("redis", "redis") from None
        parts = split_uri(uri)
        params = query_params(uri)
        prefix = params.get("prefix", DEFAULT_PREFIX)
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise StateError(
                f"redis state URI {redact(uri)!r}: the database must be a number, got {database!r}"
            )
        # redis-py would hand unknown query parameters to the connection class: take ours out.
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "prefix"]
        url = parts._replace(query=urlencode(kept)).geturl()
        password = state_password(env)
        budget = FaultBudget.from_env(env)
        try:
            # Bounded calls, and no retries of redis-py's own: the fault budget decides (faults.py).
            client = redis.Redis.from_url(
                url,
                password=password,
                socket_timeout=budget.call_timeout,
                socket_connect_timeout=min(budget.call_timeout, 5.0),
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise StateError(
                scrub(f"cannot open redis state store {redact(uri)!r}: {exc}", password)
            ) from None
        manager = cls(client, prefix=prefix, uri=uri, owns_client=True, budget=budget)
        try:
            # Fail at open, with a clear message, rather than at the first transition; a store that is
            # restarting gets the fault budget to come back.
            manager._call("open", client.ping)
        except redis.RedisError as exc:
            manager.close()
            raise StateError(
                scrub(f"cannot open redis state store {redact(uri)!r}: {exc}", password)
            ) from None
        except StateError as exc:
            manager.close()
            raise type(exc)(scrub(str(exc), password)) from None
        return manager

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self._uri or '')!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # ---------------------------------------------------------------- faults
    def store_label(self) -> str:
        return repr(redact(self._uri)) if self._uri else repr(self)

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._faults) and not isinstance(exc, self._refusals)

    def _is_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, self._timeouts)

    # ---------------------------------------------------------------- keys
    def _run_key(self, key: RunKey) -> str:
        return self._run_keys(key)[0]

    def _run_keys(self, key: RunKey) -> tuple[str, ...]:
        """KEYS of the run scripts: the record, then every index it can appear in."""
        found = self._record_keys.get(key)
        if found is None:
            dag = escape(key.dag_id, ":")
            task = escape(key.task_id, ":")
            found = (
                f"{self.prefix}:run:{dag}:{task}:{escape(key.run_id, ':')}:{key.map_index}",
                self._idx_all,
                f"{self.prefix}:idx:dag:{dag}",
                f"{self.prefix}:idx:task:{dag}:{task}",
                *self._idx_status,
            )
            if len(self._record_keys) >= _KEY_CACHE_SIZE:
                self._record_keys.clear()
            self._record_keys[key] = found
        return found

    def _scope_key(self, scope: TaskScope) -> str:
        found = self._scope_keys.get(scope)
        if found is None:
            found = f"{self.prefix}:state:" + ":".join(escape(part, ":") for part in scope.parts())
            if len(self._scope_keys) >= _KEY_CACHE_SIZE:
                self._scope_keys.clear()
            self._scope_keys[scope] = found
        return found

    # ---------------------------------------------------------------- run records
    def _read(self, key: RunKey) -> RunRecord | None:
        version, data = self.client.hmget(self._run_key(key), ("v", "d"))
        return None if version is None else record_from_json(data, int(version))

    def _insert(self, record: RunRecord) -> bool:
        args = (record.version, record_to_json(record), record.status.value, record.updated_at.timestamp(),
                _STATUS_SLOT[record.status.value])  # fmt: skip
        return bool(self._insert_script(keys=self._run_keys(record.key), args=args))

    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        args = (expected_version, record.version, record_to_json(record), record.status.value,
                record.updated_at.timestamp(), _STATUS_SLOT[record.status.value])  # fmt: skip
        return bool(self._replace_script(keys=self._run_keys(record.key), args=args))

    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        # Walk the most selective index newest-first; filter what it does not cover.
        if dag_id is not None and task_id is not None:
            index = f"{self.prefix}:idx:task:{escape(dag_id, ':')}:{escape(task_id, ':')}"
        elif dag_id is not None:
            index = f"{self.prefix}:idx:dag:{escape(dag_id, ':')}"
        elif status is not None:
            index = self._idx_status[_STATUS_SLOT[status.value]]
        else:
            index = self._idx_all
        found: list[RunRecord] = []
        seen: set[bytes] = set()
        batch = max(limit, 50)
        start = 0
        while len(found) < limit:
            members = self.client.zrevrange(index, start, start + batch - 1)
            if not members:
                break
            start += batch
            pipe = self.client.pipeline(transaction=False)
            for member in members:
                pipe.hmget(member, ("v", "d"))
            for member, (version, data) in zip(members, pipe.execute(), strict=True):
                if version is None or member in seen:  # deleted meanwhile, or moved up while paging
                    continue
                seen.add(member)
                try:
                    record = record_from_json(data, int(version))
                except (ValueError, KeyError, TypeError) as exc:  # one corrupt record must not hide the rest
                    log.warning("skipping unreadable run record %r: %s", member, exc)
                    continue
                if (task_id is None or record.key.task_id == task_id) and (
                    status is None or record.status is status
                ):
                    found.append(record)
        found.sort(key=lambda r: r.updated_at, reverse=True)
        return found[:limit]

    def _delete(self, key: RunKey) -> bool:
        return bool(self._delete_script(keys=self._run_keys(key)))

    # ---------------------------------------------------------------- task state
    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]:
        raw = self.client.hget(self._scope_key(scope), key)
        return (False, None) if raw is None else (True, loads(raw))

    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None:
        self.client.hset(self._scope_key(scope), key, dumps(value))

    def _state_delete(self, scope: TaskScope, key: str) -> bool:
        return bool(self.client.hdel(self._scope_key(scope), key))

    def _state_list(self, scope: TaskScope) -> dict[str, Any]:
        raw = self.client.hgetall(self._scope_key(scope))
        return {field.decode("utf-8"): loads(value) for field, value in sorted(raw.items())}

    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        keys = [self._scope_key(scope)]
        new = dumps(value)
        mode, expected_raw = ("a", "") if expected is None else ("v", dumps(expected))
        # One round trip when the stored text matches ours; a second only if another writer spelled
        # an equal value differently (key order, 1.0 vs 1), then we compare by value and retry on it.
        for _ in range(16):
            reply = self._cas_script(keys=keys, args=(key, mode, expected_raw, new))
            if reply[0] == 1:
                return True
            if len(reply) == 1 or loads(reply[1]) != expected:
                return False
            mode, expected_raw = "v", reply[1]
        return False

    # ---------------------------------------------------------------- maintenance
    def purge(self) -> int:
        """Delete every key under this manager's prefix (tests, tear-down). Returns how many."""
        deleted = 0
        pattern = _glob_escape(self.prefix) + ":*"
        batch: list[bytes] = []
        for name in self.client.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) >= 500:
                deleted += self.client.delete(*batch)
                batch.clear()
        if batch:
            deleted += self.client.delete(*batch)
        return deleted


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
