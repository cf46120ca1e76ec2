"""The inference pattern (core/inference.py) on the real Redis: a predictor service in front of stream
workers; one reply per query even when a worker dies mid-window and another takes its queries over."""

from __future__ import annotations

import doctest
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.private_stores import free_port

from airflow_genius.core import inference
from airflow_genius.core.inference import (
    InferenceError,
    PredictionTimeout,
    QueryBroker,
    combine,
)
from airflow_genius.core.runtime import run_key, run_spec
from airflow_genius.core.service import wait_ready
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.core.state import Status, TaskScope, open_state
from airflow_genius.core.streams import Record, open_stream_log
from airflow_genius.core.streams.crash import CRASH_ENV
from airflow_genius.core.streams.redis import RedisStreamLog
from airflow_genius.core.streams.window import checkpoint_key
from airflow_genius.examples import inference as example
from airflow_genius.examples.inference import SentimentWorker

WORKER = "airflow_genius.examples.inference:SentimentWorker"
PREDICTOR = "airflow_genius.core.inference:Predictor"
TEXTS = ("a good day", "an awful, sad film", "the train leaves at nine", "great fun but a poor ending")


@dataclass
class Rig:
    """One test's streams and state on the test Redis (keys under a unique prefix, deleted afterwards)."""

    redis_url: str
    prefix: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def state_uri(self) -> str:
        return f"{self.redis_url}?prefix={self.prefix}-state"

    def stream(self, name: str, **params: object) -> str:
        query = "".join(f"&{key}={value}" for key, value in params.items())
        return f"{self.redis_url}?stream={self.prefix}:{name}{query}"

    def worker_spec(
        self,
        index: int,
        *,
        member: str = "sentiment",
        window: dict[str, Any] | None = None,
        claim_idle: float = 2,
        try_number: int = 1,
        **setup: Any,
    ) -> TaskSpec:
        """An unbounded SentimentWorker of ``member`` (its consumer group); ``setup`` goes to setup()."""
        return build_spec(
            WORKER,
            "answer",
            kind="bolt",
            kwargs=setup,
            input_uri=self.stream("queries", group=member, claim_idle=claim_idle),
            output_uri=self.stream("replies", dedup_ttl=3600),
            state_uri=self.state_uri,
            dag_id="inference",
            task_id=f"worker_{member}",
            run_id="r1",
            map_index=index,
            try_number=try_number,
            unbounded=True,
            **(window or {"max_records": 32, "max_seconds": 1.0}),
        )

    def predictor_spec(self, port: int, *, task_id: str = "predictor", **kwargs: Any) -> TaskSpec:
        kwargs.setdefault("requests", self.stream("queries"))
        kwargs.setdefault("replies", self.stream("replies"))
        return build_spec(
            PREDICTOR,
            "serve",
            kwargs=kwargs,
            state_uri=self.state_uri,
            dag_id="inference",
            task_id=task_id,
            run_id="r1",
            service_port=port,
            ready_timeout=60,
        )

    def launch(self, spec: TaskSpec, *, crash_at: str | None = None) -> subprocess.Popen[str]:
        """``genius run --spec -`` in a subprocess (stopped at the end of the test if still running)."""
        env = {key: value for key, value in os.environ.items() if key != CRASH_ENV}
        if crash_at:
            env[CRASH_ENV] = crash_at
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(spec.to_json())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it again
        self.procs.append(proc)
        return proc

    def record(self, spec: TaskSpec) -> Any:
        with open_state(self.state_uri) as state:
            return state.require_run(run_key(spec))

    def replies(self) -> list[dict[str, Any]]:
        log = open_stream_log(self.stream("replies"))
        try:
            return [message.data for message in log.read_all()]
        finally:
            log.close()

    def pending(self, group: str = "sentiment", consumer: str | None = None) -> list[str]:
        log = open_stream_log(self.stream("queries"))
        try:
            if consumer is None:
                return log.pending_ids(group)
            assert isinstance(log, RedisStreamLog)
            rows = log.client.xpending_range(log.key, group, "-", "+", 1_000_000, consumername=consumer)
            return [row["message_id"].decode() for row in rows]
        finally:
            log.close()

    def enqueue(self, queries: list[dict[str, Any]]) -> None:
        log = open_stream_log(self.stream("queries"))
        try:
            log.append([Record(query) for query in queries])
        finally:
            log.close()


@pytest.fixture
def rig(redis_url: str, unique_name: str) -> Iterator[Rig]:
    rig = Rig(redis_url, unique_name)
    yield rig
    for proc in rig.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = [*client.scan_iter(f"{unique_name}:*"), *client.scan_iter(f"{unique_name}-state*")]
    if keys:
        client.delete(*keys)
    client.close()


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (a worker's and a service's normal end) and wait; returns stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return err


def expected(text: str, variant: str = "balanced") -> dict[str, Any]:
    model = SentimentWorker()
    model.setup(variant=variant)
    return model.predict({"text": text})


class Client:
    """An HTTP client on one keep-alive connection (one per thread)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        self.conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        return answer.status, json.loads(answer.read())

    def get(self, path: str) -> Any:
        self.conn.request("GET", path)
        return json.loads(self.conn.getresponse().read())


def wait_until(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- no server
@pytest.mark.parametrize("module", [inference, example])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_combine() -> None:
    assert combine({"b": "dog", "a": "cat"}) == "cat"  # a tie goes to the first member by name
    assert combine({"a": {"label": "x"}, "b": {"label": "y"}, "c": {"label": "y"}}) == {"label": "y"}
    assert combine({"a": 1, "b": 2, "c": 6}, "mean") == 3
    assert combine({"a": {"p": [0.0, 1.0]}, "b": {"p": [1.0, 0.0]}}, "mean") == {"p": [0.5, 0.5]}
    with pytest.raises(InferenceError, match="numbers"):
        combine({"a": "x", "b": 1}, "mean")
    with pytest.raises(InferenceError, match="unknown combine"):
        combine({"a": 1}, "median")
    with pytest.raises(ValueError, match="combine must be one of"):
        QueryBroker("redis://h/0?stream=q", "redis://h/0?stream=r", group="g", combine="median")
    with pytest.raises(ValueError, match="ensemble"):
        QueryBroker("redis://h/0?stream=q", "redis://h/0?stream=r", group="g", ensemble=0)


# ---------------------------------------------------------------------------------------------- workers
def test_a_worker_answers_errors_and_skips_expired_and_malformed_queries(rig: Rig) -> None:
    later = time.time() + 600
    rig.enqueue(
        [
            *({"id": f"q{i}", "query": {"text": text}, "deadline": later} for i, text in enumerate(TEXTS)),
            {"id": "bad", "query": {"text": 5}, "deadline": later},  # the model raises for this one
            {"id": "late", "query": "a good day", "deadline": time.time() - 1},  # its caller is gone
            {"no": "query"},
            {"query": "fine"},  # no id: answered under its stream id
        ]
    )
    spec = rig.worker_spec(0, window={"max_records": 100, "max_seconds": 0.2, "max_windows": 3})
    outcome = run_spec(spec)
    assert outcome.ok, outcome.error
    metrics = outcome.record.metrics
    assert (metrics["queries"], metrics["answered"], metrics["errors"]) == (8, 6, 1)
    assert (metrics["expired"], metrics["malformed"], metrics["duplicates"]) == (1, 1, 0)
    replies = {reply["id"]: reply for reply in rig.replies()}
    for i, text in enumerate(TEXTS):
        assert replies[f"q{i}"]["prediction"] == expected(text)
        assert replies[f"q{i}"]["member"] == "sentiment"
        assert replies[f"q{i}"]["worker"] == "inference.worker_sentiment.0"
    assert replies["bad"]["error"]["type"] == "ValueError"
    assert "late" not in replies and len(replies) == 6
    assert rig.pending() == []


def test_a_worker_refuses_bad_setup_options_and_batch_io(rig: Rig, tmp_path: Path) -> None:
    rig.enqueue([{"query": "a good day"}])
    window = {"max_records": 10, "max_seconds": 0.2, "max_windows": 1}
    outcome = run_spec(rig.worker_spec(0, window=window, varient="optimist"))
    assert outcome.status is Status.FAILED
    assert outcome.error is not None and "TaskCallError" in outcome.error["type"]
    assert outcome.error["message"].startswith("SentimentWorker.setup(variant: ")
    assert "unexpected keyword argument 'varient'" in outcome.error["message"]
    (tmp_path / "in").mkdir()
    spec = build_spec(
        WORKER,
        "answer",
        kind="bolt",
        input_uri=str(tmp_path / "in"),
        output_uri=str(tmp_path / "out"),
        state_uri=rig.state_uri,
        dag_id="inference",
        task_id="batch",
        run_id="r1",
    )
    outcome = run_spec(spec)
    assert outcome.error is not None and "reads queries from a stream input" in outcome.error["message"]


def test_a_worker_killed_after_answering_is_taken_over_without_a_second_reply(rig: Rig) -> None:
    """Killed after its replies are durable and before its ack: another worker takes the queries over
    (claim_idle), the worker restarted later adopts its open window; both answer again, neither writes."""
    later = time.time() + 600
    rig.enqueue([{"id": f"q{i}", "query": TEXTS[i % len(TEXTS)], "deadline": later} for i in range(12)])
    window = {"max_records": 100, "max_seconds": 0.5}
    victim = rig.launch(rig.worker_spec(0, window=window), crash_at="mid_output")
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert len(rig.pending(consumer="inference.worker_sentiment.0")) == 12  # answered, not acked
    assert Counter(reply["id"] for reply in rig.replies()) == Counter(f"q{i}" for i in range(12))

    time.sleep(0.3)  # the dead worker's records idle longer than claim_idle below
    heir = run_spec(rig.worker_spec(1, window={**window, "max_windows": 2}, claim_idle=0.2))
    assert heir.ok, heir.error
    assert (heir.record.metrics["queries"], heir.record.metrics["duplicates"]) == (12, 12)
    assert heir.record.metrics["answered"] == 0
    assert rig.pending() == []

    # Its retry (try 2) adopts the window it left open in its checkpoint.
    restarted = run_spec(rig.worker_spec(0, window={**window, "max_windows": 1}, try_number=2))
    assert restarted.ok, restarted.error
    assert (restarted.record.metrics["queries"], restarted.record.metrics["duplicates"]) == (12, 12)
    with open_state(rig.state_uri) as state:
        scope = TaskScope("default", "inference", "worker_sentiment")
        checkpoint = state.get_state(scope, checkpoint_key(f"{rig.prefix}:queries", "sentiment", 0))
    assert checkpoint["open"] is None
    assert Counter(reply["id"] for reply in rig.replies()) == Counter(f"q{i}" for i in range(12))


def test_the_pattern_runs_on_the_embedded_sqlite_log(tmp_path: Path) -> None:
    """The predictor's stream side and a worker in this process, both on one SQLite file."""
    db = f"sqlite:///{tmp_path}/streams.db"
    broker = QueryBroker(f"{db}?stream=q", f"{db}?stream=r", group="predictor", timeout=60)
    broker.start()
    results: list[Any] = []
    asking = threading.Thread(target=lambda: results.extend(broker.ask([{"text": t} for t in TEXTS])))
    asking.start()
    try:
        deadline = time.monotonic() + 60
        while not results and time.monotonic() < deadline:  # the queries may land after a first read
            spec = build_spec(
                WORKER,
                "answer",
                kind="bolt",
                input_uri=f"{db}?stream=q&group=g",
                output_uri=f"{db}?stream=r",
                state_uri=f"sqlite:///{tmp_path}/state.db",
                dag_id="inference",
                task_id="worker",
                run_id=f"r{time.monotonic_ns()}",
                unbounded=True,
                max_records=10,
                max_seconds=0.2,
                max_windows=3,
            )
            outcome = run_spec(spec)
            assert outcome.ok, outcome.error
            asking.join(timeout=1)
    finally:
        asking.join(timeout=60)
        broker.stop()
    assert [r["prediction"] for r in results] == [expected(text) for text in TEXTS]
    assert broker.stats()["answered"] == len(TEXTS)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_thousand_queries_through_three_workers_one_killed_midway(rig: Rig) -> None:
    port = free_port()
    predictor_spec = rig.predictor_spec(port, timeout=120)
    predictor = rig.launch(predictor_spec)
    worker_specs = [rig.worker_spec(i, delay=0.002) for i in range(3)]
    workers = [rig.launch(spec) for spec in worker_specs]
    wait_ready(f"http://127.0.0.1:{port}/health", timeout=120)

    total, answered = 1000, Counter[str]()
    lock = threading.Lock()
    local = threading.local()
    killed = threading.Event()
    orphaned: list[str] = []

    def ask(i: int) -> tuple[int, str, Any]:
        if not hasattr(local, "client"):
            local.client = Client(port)
        text = f"{TEXTS[i % len(TEXTS)]} #{i}"
        status, body = local.client.post("/predict", {"query": {"text": text}})
        assert status == 200, body
        assert body["prediction"] == expected(text)
        with lock:
            answered[body["id"]] += 1
        return i, body["id"], body["workers"]

    def kill_one_worker_mid_window() -> None:
        # Freeze worker 0 while it holds queries (delivered, not acked), then kill it: those queries
        # are orphaned and must be answered once, by a survivor or by the victim before it died.
        consumer = "inference.worker_sentiment.0"
        wait_until(lambda: len(answered) >= 200, "200 answers", timeout=300)
        while not killed.is_set():
            workers[0].send_signal(signal.SIGSTOP)
            held = rig.pending(consumer=consumer)
            if held:
                workers[0].kill()
                orphaned.extend(held)
                killed.set()
            else:
                workers[0].send_signal(signal.SIGCONT)
                time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker_mid_window, daemon=True)
    killer.start()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(total)))
    killer.join(timeout=60)
    assert killed.is_set(), "worker 0 held no query at any moment of the load"
    workers[0].communicate(timeout=30)
    assert workers[0].returncode == -signal.SIGKILL

    ids = [query_id for _, query_id, _ in results]
    assert len(set(ids)) == total and all(count == 1 for count in answered.values())
    # The survivors take the orphaned queries over once they idle past claim_idle; then nothing is pending.
    wait_until(lambda: rig.pending() == [], "the consumer group's pending list to empty")
    replies = Counter(reply["id"] for reply in rig.replies())
    assert set(replies) == set(ids)
    assert {query_id: n for query_id, n in replies.items() if n != 1} == {}  # one reply per query
    queries = open_stream_log(rig.stream("queries"))
    assert {message.data["id"] for message in queries.get(orphaned)} <= set(ids)  # answered, once
    queries.close()

    stats = Client(port).get("/stats")
    assert (stats["queries"], stats["answered"], stats["timeouts"], stats["in_flight"]) == (
        total,
        total,
        0,
        0,
    )
    for proc, spec in zip(workers[1:], worker_specs[1:], strict=True):
        stop(proc)  # idle by now: the stop lands between windows
        record = rig.record(spec)
        assert record.status is Status.SUCCESS
        assert record.result["stopped"] == "received SIGTERM"
    stop(predictor)
    record = rig.record(predictor_spec)
    assert record.status is Status.SUCCESS and record.result["stopped"] == "received SIGTERM"
    assert record.metrics["answered"] == total


@pytest.mark.slow
def test_an_ensemble_combines_one_answer_per_member_and_errors_have_http_statuses(rig: Rig) -> None:
    members = {"m1-balanced": "balanced", "m2-optimist": "optimist", "m3-pessimist": "pessimist"}
    for member, variant in members.items():
        rig.launch(
            rig.worker_spec(0, member=member, variant=variant, window={"max_records": 8, "max_seconds": 1})
        )
    port, lonely_port = free_port(), free_port()
    predictor = rig.launch(rig.predictor_spec(port, ensemble=3, combine="majority", timeout=60))
    # A predictor whose request stream no worker reads: its callers time out.
    lonely = rig.launch(
        rig.predictor_spec(lonely_port, task_id="lonely", requests=rig.stream("nobody"), timeout=0.5)
    )
    wait_ready(f"http://127.0.0.1:{port}/health", timeout=120)
    wait_ready(f"http://127.0.0.1:{lonely_port}/health", timeout=120)
    client = Client(port)

    status, body = client.post("/predict", {"query": "the train leaves at nine"})  # no sentiment word
    assert status == 200, body
    assert body["members"] == {
        "m1-balanced": {"label": "neutral", "score": 0.0},
        "m2-optimist": {"label": "positive", "score": 0.0},
        "m3-pessimist": {"label": "negative", "score": 0.0},
    }
    assert body["prediction"] == {"label": "neutral", "score": 0.0}  # a 1-1-1 tie: the first member
    assert len(body["workers"]) == 3
    status, body = client.post("/predict", {"queries": ["a good day", "a sad day"]})
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative"]

    status, body = client.post("/predict", {"query": {"text": 5}})
    assert (status, body["error"]) == (500, "PredictionFailed") and "ValueError" in body["message"]
    status, body = client.post("/predict", {"text": "no query field"})
    assert (status, body["error"]) == (400, "BadQuery")
    status, body = Client(lonely_port).post("/predict", {"query": "a good day"})
    assert (status, body["error"]) == (504, "PredictionTimeout")

    # The same stream side without HTTP: every member's answer, and a fourth member that never comes.
    everyone = QueryBroker(
        rig.stream("queries"), rig.stream("replies"), group="all", ensemble=3, combine="all"
    )
    four = QueryBroker(rig.stream("queries"), rig.stream("replies"), group="four", ensemble=4, timeout=1)
    everyone.start()
    four.start()
    try:
        [result] = everyone.ask(["a good day"])
        assert set(result["prediction"]) == set(members)
        with pytest.raises(PredictionTimeout, match="of 4 answer"):
            four.ask(["a good day"])
        assert four.stats()["timeouts"] == 1 and four.stats()["in_flight"] == 0
    finally:
        everyone.stop()
        four.stop()
    for proc in [*rig.procs[:3], predictor, lonely]:
        stop(proc)
