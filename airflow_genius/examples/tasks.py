"""Small, dependency-free genius tasks: a spout that ingests quotes, a bolt that counts words.

Run them without Airflow::

    genius rise airflow_genius.examples.tasks:QuoteSpout fetch --output /tmp/genius/quotes --kwarg count=20
    genius describe airflow_genius.examples.tasks:WordCount
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from collections import Counter
from typing import Any

from airflow_genius.core.data import BatchInput, BatchOutput
from airflow_genius.core.streams import StreamingInput, StreamingOutput
from airflow_genius.core.task import Bolt, Spout, Task

QUOTES = (
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with a single step",
    "to be or not to be that is the question",
    "all that glitters is not gold",
    "the only thing we have to fear is fear itself",
)


class QuoteSpout(Spout):
    """Ingests quotes as JSON lines; remembers how many it produced across runs in task state."""

    def fetch(self, count: int = 10, per_file: int = 5) -> dict[str, Any]:
        """Write ``count`` quotes into the output partition, ``per_file`` per JSON-lines file."""
        if count < 0 or per_file < 1:
            raise ValueError(f"count must be >= 0 and per_file >= 1, got count={count} per_file={per_file}")
        assert isinstance(self.output, BatchOutput) and self.state is not None
        records = [{"id": i, "text": QUOTES[i % len(QUOTES)]} for i in range(count)]
        files = 0
        for start in range(0, count, per_file):
            chunk = records[start : start + per_file]
            self.output.save("".join(json.dumps(r) + "\n" for r in chunk), f"quotes-{files:04d}.jsonl")
            files += 1
        total = self.state.get("produced", 0) + count
        self.state.set("produced", total)
        self.log_metric("records", count)
        return {"records": count, "files": files, "produced_total": total}


class WordCount(Bolt):
    """Counts words in JSON-lines input (field ``text``) and writes the top words."""

    def count(self, top: int = 10, min_length: int = 1) -> dict[str, Any]:
        """Count words of at least ``min_length`` letters; return and save the ``top`` most common."""
        assert isinstance(self.input, BatchInput) and isinstance(self.output, BatchOutput)
        counts: Counter[str] = Counter()
        records = 0
        for name in self.input.files():
            for record in self.input.iter_json_lines(name):
                records += 1
                counts.update(w for w in str(record.get("text", "")).split() if len(w) >= min_length)
        most_common = dict(counts.most_common(top))
        self.output.save(most_common, "top_words.json")
        self.log_metric("records", records)
        return {"records": records, "distinct_words": len(counts), "top": most_common}


class Echo(Task):
    """Returns what it is given (handy to check a runner end to end)."""

    def say(self, message: Any) -> Any:
        return message

    def fail(self, message: str = "boom") -> None:
        """Raise a RuntimeError with ``message`` (to see a failure recorded)."""
        raise RuntimeError(message)

    def environment(self, names: list[str]) -> dict[str, str | None]:
        """The values of these environment variables where the task runs (to check a runner)."""
        return {name: os.environ.get(name) for name in names}

    def exit(self, code: int = 3) -> None:
        """End the process with ``code`` before any result is recorded (a crash, as a runner sees it)."""
        os._exit(code)

    def sleep(self, seconds: float = 60.0) -> float:
        """Sleep, then return how long (to test timeouts and cancellation)."""
        time.sleep(seconds)
        return seconds

    def hog(self, megabytes: int = 500, seconds: float = 10.0) -> int:
        """Hold ``megabytes`` of memory for ``seconds`` (to test memory limits)."""
        block = bytearray(megabytes * 1024 * 1024)
        for offset in range(0, len(block), 4096):  # touch every page so it is really resident
            block[offset] = 1
        time.sleep(seconds)
        return len(block)


class EchoService(Task):
    """A genius service (``core/service.py``): answers ``POST /echo`` with the body it got, plus which
    service answered, until its platform stops it."""

    def serve(self, delay: float = 0.0) -> None:
        """Serve on ``$SERVICE_PORT`` until SIGTERM; ``delay`` seconds pass before it answers its health
        path (a model that takes time to load)."""
        from airflow_genius.core.service import serve_http

        started = time.monotonic()
        name = os.environ.get("SERVICE_NAME", "echo")
        serve_http(
            {"/echo": lambda body: {"echo": body, "service": name}},
            ready=lambda: time.monotonic() - started >= delay,
        )


class ServiceClient(Task):
    """Calls the service its operator was given (``SERVICE_URL`` in the environment) and records the
    latencies in its run record's metrics."""

    def call(self, times: int = 5, path: str = "/") -> dict[str, Any]:
        base = os.environ.get("SERVICE_URL")
        if not base:
            raise RuntimeError("SERVICE_URL is not set: run this task with service=<the service task id>")
        url = base.rstrip("/") + path
        latencies = []
        for _ in range(times):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http(s) service URL
                response.read()
            latencies.append((time.perf_counter() - started) * 1000)
        self.log_metric("calls", times)
        self.log_metric("latency_ms_median", round(statistics.median(latencies), 3))
        self.log_metric("latency_ms_max", round(max(latencies), 3))
        return {"url": url, "calls": times, "service": os.environ.get("SERVICE_NAME")}


class Vectors(Task):
    """Produces a large, deterministic result (pseudo-embeddings): an XCom worth offloading."""

    def embed(self, rows: int = 1000, dim: int = 64) -> list[list[float]]:
        """``rows`` vectors of ``dim`` floats; about ``rows * dim * 20`` bytes as JSON."""
        if rows < 0 or dim < 1:
            raise ValueError(f"rows must be >= 0 and dim >= 1, got rows={rows} dim={dim}")
        self.log_metric("rows", rows)
        return [[((r * 31 + c * 17) % 1000) / 1000.0 for c in range(dim)] for r in range(rows)]


class QuoteStreamSpout(Spout):
    """Publishes quotes to a stream (a stand-in for a firehose, a queue, a crawler)."""

    def publish(self, count: int = 20) -> int:
        """Send ``count`` quote records to the stream output; a retried run sends nothing twice."""
        assert isinstance(self.output, StreamingOutput) and self.identity is not None
        for i in range(count):
            self.output.send({"n": i, "run": self.identity.run_id, "text": QUOTES[i % len(QUOTES)]})
        return count


class Enrich(Bolt):
    """Adds word counts to each stream record; keeps a running total as exactly-once operator state."""

    def process(self) -> dict[str, int]:
        """Enrich this run's window of the input stream into the output stream."""
        assert isinstance(self.input, StreamingInput) and isinstance(self.output, StreamingOutput)
        for record in self.input:
            self.output.send({**record, "words": len(str(record.get("text", "")).split())})
        seen = self.input.state.get("seen", 0) + len(self.input)
        self.input.state["seen"] = seen
        return {"window": len(self.input), "seen": seen}
