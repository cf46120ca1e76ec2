"""The inference pattern (predictor service + stream workers) vs calling the model in-process.

    python bench/bench_inference.py [--n 1000] [--clients 16] [--workers 1,2,3] [--delay 0]
                                    [--repeats 3] [--redis redis://127.0.0.1:6379/15]

For 1, 2 and 3 workers: a ``Predictor`` service and N ``SentimentWorker`` s (``airflow_genius.examples.
inference``), each a ``genius run`` subprocess (unbounded windows of up to 32 queries, ``claim_idle``,
Redis state and streams, exactly-once replies), answer ``--n`` queries sent by ``--clients`` concurrent
HTTP clients (keep-alive connections). Reported: queries/s over the whole batch, and p50/p99 latency
of one ``POST /predict``.

Anchors (report only, no goal): the same model called in-process (``SentimentWorker.predict`` in a loop:
what the pattern costs on top of the model), and the model behind a plain ``serve_http`` route in its
own process, called by the same clients (what the stream hop costs on top of HTTP). ``--delay`` adds
that many seconds per query inside the model, to stand for a heavier one (more workers then help).

Each setup runs ``--repeats`` times on fresh streams (medians); every key written is deleted at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from airflow_genius.core import Task
from airflow_genius.core.service import serve_http, wait_ready
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.examples.inference import SentimentWorker

HERE = Path(__file__).resolve().parent
TEXTS = ("a good day", "an awful, sad film", "the train leaves at nine", "great fun but a poor ending")


class DirectModel(Task):
    """The anchor service: the same model behind ``POST /predict``, no streams."""

    def serve(self, delay: float = 0.0) -> None:
        model = SentimentWorker()
        model.setup(delay=delay)
        serve_http({"/predict": lambda body: {"prediction": model.predict(body["query"])}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(spec: TaskSpec) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(spec.to_json().encode())
    proc.stdin.close()
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def queries(n: int) -> list[dict[str, str]]:
    return [{"text": f"{TEXTS[i % len(TEXTS)]} #{i}"} for i in range(n)]


def drive(port: int, n: int, clients: int) -> tuple[float, list[float]]:
    """Send ``n`` queries from ``clients`` threads; returns (wall seconds, latencies in seconds)."""
    local = threading.local()

    def ask(query: dict[str, str]) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        started = time.perf_counter()
        conn.request("POST", "/predict", json.dumps({"query": query}), {"Content-Type": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {body[:200]!r}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(ask, queries(n)))
    return time.perf_counter() - started, latencies


def in_process(n: int, delay: float) -> tuple[float, list[float]]:
    model = SentimentWorker()
    model.setup(delay=delay)
    latencies = []
    started = time.perf_counter()
    for query in queries(n):
        t = time.perf_counter()
        model.predict(query)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - started, latencies


def direct_http(n: int, clients: int, delay: float) -> tuple[float, list[float]]:
    port = free_port()
    spec = build_spec(
        "bench_inference:DirectModel",
        "serve",
        kwargs={"delay": delay},
        state_uri="memory://",
        dag_id="bench",
        task_id="direct",
        run_id="r",
        service_port=port,
    )
    proc = launch(spec)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", timeout=120)
        drive(port, 20, clients)  # warm-up
        return drive(port, n, clients)
    finally:
        stop([proc])


def pattern(
    base: str, tag: str, workers: int, n: int, clients: int, delay: float
) -> tuple[float, list[float]]:
    """Predictor + ``workers`` workers on fresh streams under ``tag``."""
    state = f"{base}?prefix={tag}-state"
    requests, replies = f"{base}?stream={tag}:queries", f"{base}?stream={tag}:replies"
    port = free_port()
    procs = [
        launch(
            build_spec(
                "airflow_genius.core.inference:Predictor",
                "serve",
                kwargs={"requests": requests, "replies": replies, "timeout": 120},
                state_uri=state,
                dag_id="bench",
                task_id="predictor",
                run_id="r",
                service_port=port,
            )
        )
    ]
    for index in range(workers):
        procs.append(
            launch(
                build_spec(
                    "airflow_genius.examples.inference:SentimentWorker",
                    "answer",
                    kind="bolt",
                    kwargs={"delay": delay},
                    input_uri=f"{requests}&group=model&claim_idle=30",
                    output_uri=f"{replies}&dedup_ttl=600",
                    state_uri=state,
                    dag_id="bench",
                    task_id="worker",
                    run_id="r",
                    map_index=index,
                    unbounded=True,
                    max_records=32,
                    max_seconds=1.0,
                )
            )
        )
    client = redis.Redis.from_url(base)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", timeout=120)
        deadline = time.monotonic() + 120
        while len(_consumers(client, f"{tag}:queries")) < workers:  # every worker reads before we start
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {_consumers(client, f'{tag}:queries')} of {workers} workers started"
                )
            drive(port, 4, 2)
        drive(port, 20, clients)  # warm-up
        return drive(port, n, clients)
    finally:
        stop(procs)
        client.close()


def _consumers(client: redis.Redis, stream: str) -> list[Any]:
    try:
        return list(client.xinfo_consumers(stream, "model"))
    except redis.ResponseError:  # no group yet
        return []


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="queries per setup and repeat")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure")
    parser.add_argument("--delay", type=float, default=0.0, help="model seconds per query")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    options = parser.parse_args(argv)
    n, clients, delay = options.n, options.clients, options.delay
    counts = [int(w) for w in options.workers.split(",")]
    prefix = f"bench-inference-{uuid.uuid4().hex[:8]}"
    samples: dict[str, list[tuple[float, list[float]]]] = {"in-process": [], "direct": []}
    samples.update({f"w{w}": [] for w in counts})
    client = redis.Redis.from_url(options.redis)
    try:
        for repeat in range(options.repeats):
            samples["in-process"].append(in_process(n, delay))
            samples["direct"].append(direct_http(n, clients, delay))
            for w in counts:
                samples[f"w{w}"].append(
                    pattern(options.redis, f"{prefix}:{repeat}:{w}", w, n, clients, delay)
                )
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()

    def summary(name: str) -> tuple[float, float, float]:
        runs = samples[name]
        rate = statistics.median(n / wall for wall, _ in runs)
        p50 = statistics.median(percentile(lat, 0.50) for _, lat in runs) * 1000
        p99 = statistics.median(percentile(lat, 0.99) for _, lat in runs) * 1000
        return rate, p50, p99

    base_rate, base_p50, _ = summary("in-process")
    direct_rate, direct_p50, _ = summary("direct")
    print(
        f"inference benchmark: n={n} queries, {clients} HTTP clients, model delay {delay * 1000:g} ms/query, "
        f"{options.repeats} repeats, medians"
    )
    print(
        f"{'setup':<38} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'in-proc/this':>13} {'direct/this':>12}"
    )
    rows = [("model in-process (predict loop)", "in-process"), ("model behind serve_http (direct)", "direct")]
    rows += [(f"predictor + {w} worker{'s' if w > 1 else ''}", f"w{w}") for w in counts]
    for label, name in rows:
        rate, p50, p99 = summary(name)
        print(
            f"{label:<38} {rate:>10,.0f} {p50:>8.3f} {p99:>8.3f} {base_rate / rate:>12.1f}x {direct_rate / rate:>11.2f}x"
        )
    w1 = summary(f"w{counts[0]}")[0]
    for w in counts[1:]:
        print(f"throughput {w} workers / {counts[0]}: {summary(f'w{w}')[0] / w1:.2f}x")
    print(
        f"p50 latency added by the pattern over in-process: {summary(f'w{counts[-1]}')[1] - base_p50:.2f} ms"
    )
    print(
        f"p50 latency added by the stream hop over direct HTTP: {summary(f'w{counts[-1]}')[1] - direct_p50:.2f} ms"
    )
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
