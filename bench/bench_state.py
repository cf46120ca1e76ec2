"""State manager vs raw redis-py doing the same round trips (and SQLite, for reference).

    python bench/bench_state.py [--n 2000] [--repeats 7] [--redis redis://127.0.0.1:6379/15]
                                [--postgres postgresql://postgres@127.0.0.1:5432/genius_test] [--profile]

Workloads, each run ``--repeats`` times interleaved (the machine is noisy: medians and ratios only):

(a) task state: ``set_state`` + ``get_state`` of a small JSON value, against raw ``HSET`` + ``HGET`` of
    the same JSON in the same hash layout — two round trips each.
(b) run lifecycle: ``queue_run`` → ``start_run`` → ``finish_run`` against raw redis-py doing the same
    seven round trips (an ``HMGET`` read before every write; writes are the same Lua scripts, so the
    server does identical work and the ratio measures our client-side cost).
(c) report only: the same two workloads on ``SqliteStateManager`` (a file in a temp folder).
(d) report only: the same two workloads on ``PostgresStateManager`` (``--postgres``, default the
    ``GENIUS_TEST_POSTGRES_URL`` environment variable or the test rig's database; a unique table prefix,
    dropped at the end).

Goal: ours/raw ≤ 1.3x for (a) and (b). Redis comes from ``--redis`` or the ``REDIS_URL`` environment
variable (default ``redis://127.0.0.1:6379/15``); every key written is deleted at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from airflow_genius.core.state import RunKey, StateManager, Status, TaskScope, open_state
from airflow_genius.core.state.redis import _INSERT_LUA, _REPLACE_LUA, RedisStateManager
from airflow_genius.core.state.sqlite import SqliteStateManager

GOAL = 1.3
STATUSES = ("QUEUED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")


# ---------------------------------------------------------------- (a) task state
def ours_state(state: StateManager, n: int) -> None:
    scope = TaskScope("bench", "dag", "spout")
    for i in range(n):
        state.set_state(scope, "cursor", {"offset": i, "partition": "p-0"})
        if state.get_state(scope, "cursor")["offset"] != i:
            raise AssertionError("lost write")


def raw_state(client: redis.Redis, prefix: str, n: int) -> None:
    key = f"{prefix}:state:bench:dag:spout"
    for i in range(n):
        client.hset(key, "cursor", json.dumps({"offset": i, "partition": "p-0"}))
        raw: bytes = client.hget(key, "cursor")  # type: ignore[assignment]
        if json.loads(raw)["offset"] != i:
            raise AssertionError("lost write")


# ---------------------------------------------------------------- (b) run lifecycle
def ours_cycle(state: StateManager, n: int, tag: str) -> None:
    for i in range(n):
        key = RunKey("bench", "task", f"{tag}-{i}")
        state.queue_run(key, try_number=1)  # read + insert
        state.start_run(key, try_number=1)  # read + read + replace
        state.finish_run(key, Status.SUCCESS, try_number=1, result={"rows": i})  # read + replace


def raw_cycle(client: redis.Redis, prefix: str, n: int, tag: str) -> None:
    """What a careful hand-written client does: JSON records, version CAS in Lua, same indexes."""
    insert = client.register_script(_INSERT_LUA)
    replace = client.register_script(_REPLACE_LUA)
    host = "bench-host"
    status_keys = [f"{prefix}:idx:status:{s}" for s in STATUSES]

    def keys_for(record_key: str) -> list[str]:
        return [record_key, f"{prefix}:idx:all", f"{prefix}:idx:dag:bench", f"{prefix}:idx:task:bench:task",
                *status_keys]  # fmt: skip

    def read(record_key: str) -> dict[str, Any] | None:
        version, data = client.hmget(record_key, ("v", "d"))
        if version is None:
            return None
        record: dict[str, Any] = json.loads(data)  # type: ignore[arg-type]
        record["version"] = int(version)
        return record

    def move(record: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
        now = datetime.now(timezone.utc).isoformat()
        entry = {"status": status, "at": now, "try_number": 1, "host": host, "message": None}
        return {**record, **extra, "status": status, "history": [*record["history"], entry],
                "updated_at": now, "version": record["version"] + 1}  # fmt: skip

    def write(record_key: str, record: dict[str, Any], expected: int) -> None:
        score = time.time()
        args = (expected, record["version"], json.dumps(record), record["status"], score,
                STATUSES.index(record["status"]))  # fmt: skip
        if not replace(keys=keys_for(record_key), args=args):
            raise AssertionError("lost race in a single-writer benchmark")

    for i in range(n):
        record_key = f"{prefix}:run:bench:task:{tag}-{i}:-1"
        # queue: read, insert
        if read(record_key) is None:
            now = datetime.now(timezone.utc).isoformat()
            record = {"dag_id": "bench", "task_id": "task", "run_id": f"{tag}-{i}", "map_index": -1,
                      "status": "QUEUED", "try_number": 1, "created_at": now, "updated_at": now,
                      "history": [{"status": "QUEUED", "at": now, "try_number": 1, "host": host,
                                   "message": None}],
                      "heartbeat_at": None, "result": None, "error": None, "metrics": {}, "window": None,
                      "info": {}, "version": 1}  # fmt: skip
            insert(keys=keys_for(record_key), args=(1, json.dumps(record), "QUEUED", time.time(), 0))
        # start: existence check, read, replace
        read(record_key)
        current = read(record_key)
        assert current is not None
        write(record_key, move(current, "RUNNING", heartbeat_at=current["updated_at"]), current["version"])
        # finish: read, replace
        current = read(record_key)
        assert current is not None
        write(record_key, move(current, "SUCCESS", result={"rows": i}), current["version"])


# ---------------------------------------------------------------- harness
def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def purge(client: redis.Redis, prefix: str) -> None:
    names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(names), 500):
        client.delete(*names[start : start + 500])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per measurement (default 2000)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repetitions (default 7)")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "GENIUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/genius_test"
        ),
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one run of our lifecycle workload")
    options = parser.parse_args(argv)
    n, repeats = options.n, options.repeats

    prefix = f"genius-bench-{uuid.uuid4().hex[:8]}"
    raw_prefix = f"{prefix}-raw"
    client = redis.Redis.from_url(options.redis)
    client.ping()
    ours = open_state(f"{options.redis}?prefix={prefix}")
    assert isinstance(ours, RedisStateManager)
    folder = tempfile.mkdtemp(prefix="genius-bench-")
    lite = SqliteStateManager(Path(folder) / "state.db")
    pg = open_state(f"{options.postgres}?table_prefix={prefix.replace('-', '_')}")

    names = ("ours_a", "raw_a", "ours_b", "raw_b", "lite_a", "lite_b", "pg_a", "pg_b")
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        # Warm up connections, script caches and imports outside the measurements.
        ours_state(ours, 50)
        raw_state(client, raw_prefix, 50)
        ours_cycle(ours, 20, "warm")
        raw_cycle(client, raw_prefix, 20, "warm")
        ours_state(lite, 20)
        ours_cycle(lite, 20, "warm")
        ours_state(pg, 20)
        ours_cycle(pg, 20, "warm")
        for rep in range(repeats):
            tag = f"r{rep}"
            pairs: list[tuple[str, Callable[[], None]]] = [
                ("ours_a", partial(ours_state, ours, n)),
                ("raw_a", partial(raw_state, client, raw_prefix, n)),
                ("ours_b", partial(ours_cycle, ours, n, tag)),
                ("raw_b", partial(raw_cycle, client, raw_prefix, n, tag)),
            ]
            if rep % 2:  # alternate who goes first, so drift does not favour one side
                pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
            pairs += [("lite_a", partial(ours_state, lite, n)), ("lite_b", partial(ours_cycle, lite, n, tag))]
            pairs += [("pg_a", partial(ours_state, pg, n)), ("pg_b", partial(ours_cycle, pg, n, tag))]
            for name, fn in pairs:
                samples[name].append(timed(fn))
            purge(client, prefix)
            purge(client, raw_prefix)
        if options.profile:
            profiler = cProfile.Profile()
            profiler.runcall(ours_cycle, ours, n, "profile")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    finally:
        purge(client, prefix)
        purge(client, raw_prefix)
        ours.close()
        lite.close()
        pg.drop_tables()  # type: ignore[attr-defined]
        pg.close()
        client.close()

    def per_op(name: str, ops_per_item: int) -> float:
        return statistics.median(samples[name]) / (n * ops_per_item) * 1e6

    a_ours, a_raw = per_op("ours_a", 2), per_op("raw_a", 2)
    b_ours, b_raw = per_op("ours_b", 3), per_op("raw_b", 3)
    lite_a, lite_b = per_op("lite_a", 2), per_op("lite_b", 3)
    pg_a, pg_b = per_op("pg_a", 2), per_op("pg_b", 3)
    ratio_a, ratio_b = a_ours / a_raw, b_ours / b_raw
    print(f"state backend benchmark: n={n} per workload, {repeats} interleaved repeats, medians")
    print(f"redis: {options.redis}   python {sys.version.split()[0]}   redis-py {redis.__version__}")
    print()
    # µs per state call: (a) a set or a get, (b) one of queue/start/finish.
    header = f"{'workload':<46}{'ours µs/op':>12}{'raw µs/op':>12}{'ours/raw':>10}"
    print(header)
    print("-" * len(header))
    rows = [
        ("(a) set_state+get_state  vs HSET+HGET", a_ours, a_raw),
        ("(b) queue→start→finish   vs 7 raw round trips", b_ours, b_raw),
    ]
    for label, mine, theirs in rows:
        print(f"{label:<46}{mine:>12.1f}{theirs:>12.1f}{mine / theirs:>9.2f}x")
    print()
    print(f"{'report only: SQLite vs Redis (ours)':<46}{'sqlite':>12}{'redis':>12}{'sq/redis':>10}")
    print(f"{'(c) set_state+get_state':<46}{lite_a:>12.1f}{a_ours:>12.1f}{lite_a / a_ours:>9.2f}x")
    print(f"{'(c) queue→start→finish':<46}{lite_b:>12.1f}{b_ours:>12.1f}{lite_b / b_ours:>9.2f}x")
    print()
    print(f"{'report only: Postgres vs Redis (ours)':<46}{'postgres':>12}{'redis':>12}{'pg/redis':>10}")
    print(f"{'(d) set_state+get_state':<46}{pg_a:>12.1f}{a_ours:>12.1f}{pg_a / a_ours:>9.2f}x")
    print(f"{'(d) queue→start→finish':<46}{pg_b:>12.1f}{b_ours:>12.1f}{pg_b / b_ours:>9.2f}x")
    print()
    met = ratio_a <= GOAL and ratio_b <= GOAL
    print(
        f"verdict: {'MET' if met else 'MISSED'} — task state {ratio_a:.2f}x, transitions {ratio_b:.2f}x "
        f"of raw redis-py (goal ≤ {GOAL}x)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
