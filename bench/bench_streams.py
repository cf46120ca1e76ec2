"""Stream bolt vs a raw redis-py loop doing the same pass-through work (and the SQLite log, for reference).

    python bench/bench_streams.py [--n 20000] [--batch 500] [--window 5000] [--repeats 5]
                                  [--redis redis://127.0.0.1:6379/15]

(a) ours: a pass-through stream bolt (``for r in self.input: self.output.send(r)``) run through the real
    runtime (``run_spec``), one run per bounded window of ``--window`` records, reading and flushing
    ``--batch`` records per round trip, with Redis state: window recorded, output deduplicated, acked,
    checkpointed — the full exactly-once protocol.
(b) raw: ``XREADGROUP COUNT batch`` → decode JSON → pipelined ``XADD`` of the re-encoded records →
    ``XACK``, until the stream is drained (at-least-once, no checkpoint, no dedup).
(c) report only: (a) with the embedded SQLite log for input and output (and SQLite state).

Each workload runs ``--repeats`` times interleaved on fresh streams (the machine is noisy: medians and
ratios only). Goal: ours ≥ 0.8x raw records/s. Every key written is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from airflow_genius.core import Bolt
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.spec import build_spec
from airflow_genius.core.state import open_state
from airflow_genius.core.streams import Record, open_stream_log

GOAL = 0.8
PAYLOAD = {"text": "the quick brown fox jumps over the lazy dog", "score": 0.5}


class PassThrough(Bolt):
    """Forwards every record of the window unchanged."""

    def process(self) -> int:
        assert self.input is not None and self.output is not None
        for record in self.input:
            self.output.send(record)
        return len(self.input)


def fill(uri: str, n: int) -> None:
    log = open_stream_log(uri)
    for start in range(0, n, 1000):
        log.append([Record({**PAYLOAD, "n": i}) for i in range(start, min(n, start + 1000))])
    log.close()


def ours(in_uri: str, out_uri: str, state_uri: str, n: int, window: int) -> float:
    """Seconds to drain ``n`` records through the runtime, one run per window."""
    state = open_state(state_uri)
    started = time.perf_counter()
    done, run = 0, 0
    while done < n:
        spec = build_spec(
            f"{__name__}:PassThrough",
            "process",
            kind="bolt",
            input_uri=in_uri,
            output_uri=out_uri,
            state_uri=state_uri,
            dag_id="bench",
            task_id="pass",
            run_id=f"r{run}",
            max_records=window,
        )
        outcome = run_spec(spec, state=state)
        assert outcome.ok, outcome.error
        done += outcome.result
        run += 1
    elapsed = time.perf_counter() - started
    state.close()
    return elapsed


def raw(client: redis.Redis, stream_in: str, stream_out: str, batch: int) -> float:
    """Seconds for the hand-written XREADGROUP → XADD → XACK loop to drain the stream."""
    client.xgroup_create(stream_in, "g", id="0", mkstream=True)
    started = time.perf_counter()
    while True:
        reply = client.xreadgroup("g", "raw", {stream_in: ">"}, count=batch)
        if not reply or not reply[0][1]:
            break
        entries = reply[0][1]
        pipe = client.pipeline(transaction=False)
        for _entry_id, fields in entries:
            record = json.loads(fields[b"d"])
            pipe.xadd(stream_out, {"d": json.dumps(record, separators=(",", ":"))})
        pipe.execute()
        client.xack(stream_in, "g", *[entry_id for entry_id, _ in entries])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="records per repeat")
    parser.add_argument("--batch", type=int, default=500, help="records per read / write round trip")
    parser.add_argument("--window", type=int, default=5000, help="records per run (bounded window)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    options = parser.parse_args(argv)
    n, batch = options.n, options.batch
    client = redis.Redis.from_url(options.redis)
    prefix = f"bench-streams-{uuid.uuid4().hex[:8]}"
    samples: dict[str, list[float]] = {"ours": [], "raw": [], "sqlite": []}
    tmp = tempfile.mkdtemp(prefix="bench-streams-")
    try:
        for repeat in range(options.repeats):
            tag = f"{prefix}:{repeat}"
            base = options.redis
            in_uri = f"{base}?stream={tag}:in&group=g&batch={batch}"
            fill(in_uri, n)
            samples["ours"].append(
                ours(
                    in_uri,
                    f"{base}?stream={tag}:out&flush_every={batch}",
                    f"{base}?prefix={tag}:state",
                    n,
                    options.window,
                )
            )
            fill(f"{base}?stream={tag}:rawin", n)
            samples["raw"].append(raw(client, f"{tag}:rawin", f"{tag}:rawout", batch))
            db = f"sqlite:///{tmp}/{repeat}.db"
            fill(f"{db}?stream=in", n)
            samples["sqlite"].append(
                ours(
                    f"{db}?stream=in&group=g&batch={batch}",
                    f"{db}?stream=out&flush_every={batch}",
                    f"sqlite:///{tmp}/state{repeat}.db",
                    n,
                    options.window,
                )
            )
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
    rate = {name: n / statistics.median(values) for name, values in samples.items()}
    print(
        f"stream benchmark: n={n} records, batch={batch}, window={options.window}, {options.repeats} repeats, medians"
    )
    print(f"{'workload':<44} {'records/s':>12} {'vs raw':>8}")
    print(f"{'raw redis-py XREADGROUP->XADD->XACK':<44} {rate['raw']:>12,.0f} {1.0:>7.2f}x")
    print(
        f"{'genius stream bolt, Redis (exactly-once)':<44} {rate['ours']:>12,.0f} {rate['ours'] / rate['raw']:>7.2f}x"
    )
    print(
        f"{'genius stream bolt, SQLite log (report)':<44} {rate['sqlite']:>12,.0f} {rate['sqlite'] / rate['raw']:>7.2f}x"
    )
    ratio = rate["ours"] / rate["raw"]
    print(f"goal ours/raw >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'} ({ratio:.2f}x)")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
