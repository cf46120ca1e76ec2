"""The inference pattern: a predictor service in front of a pool of stream workers (no Airflow imports).

::

    HTTP caller ──POST /predict──▶ Predictor ──XADD──▶ request stream ──group──▶ N InferenceWorkers
         ◀──────── answer ──────── (waits, combines) ◀── reply stream ◀──── one reply per query

* :class:`Predictor` is a genius service (``core/service.py``): ``POST /predict`` with ``{"query": q}``
  (or ``{"queries": [q, …]}``) appends each query to the request stream under a fresh query id, waits
  for its reply and answers ``{"id", "prediction", "workers"}``. With ``ensemble=k`` it waits for answers
  from ``k`` distinct *members* — one consumer group each — and combines them (:func:`combine`).
* :class:`InferenceWorker` is a stream bolt run in unbounded mode (``docs/streams.md``): each window of
  queries goes through the user's :meth:`~InferenceWorker.predict_batch` / :meth:`~InferenceWorker.predict`
  and the answers are appended to the reply stream. Workers of one member share a consumer group, so the
  queries are spread over them; ``claim_idle`` on the input makes the survivors take over the queries
  pending on a worker that died.

**Exactly one reply per query and member.** A reply's dedup id is built from the query's *stream id* (the
same for every worker that reads it) and the member, not from the window, so a query answered again —
by a worker that adopted the dead worker's window or took its records over with ``claim_idle`` — is
skipped by the stream's idempotent append (``core/streams``). The predictor also ignores a second reply
of a member, and replies to queries it no longer waits for.

.. code-block:: python

    from airflow_genius.core.inference import InferenceWorker

    class Sentiment(InferenceWorker):
        def setup(self, threshold: float = 0.5) -> None:    # once, with the method's kwargs
            self.model = load_model(self.model_path)
            self.threshold = threshold

        def predict_batch(self, queries: list) -> list:      # one window's live queries
            return [{"positive": p > self.threshold} for p in self.model.score(queries)]

See ``docs/inference.md`` for the specs of both tasks, ensembles, and the limits.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_genius.core.errors import GeniusError, TaskCallError
from airflow_genius.core.streams import Record, StreamingInput, StreamingOutput, StreamLog, open_stream_log
from airflow_genius.core.streams.base import json_default
from airflow_genius.core.task import Bolt, Task

log = logging.getLogger("airflow_genius.inference")

#: Ways an ensemble's answers are combined (:func:`combine`).
COMBINERS = ("majority", "mean", "all")
#: Width of a reply's dedup scope, in units of the query's stream id (Redis: milliseconds). Every worker
#: derives the same scope from the same query; on Redis each scope is one expiring dedup set.
REPLY_SCOPE_SPAN = 600_000
#: Seconds the predictor waits for an answer by default.
DEFAULT_TIMEOUT = 30.0
#: Replies read per call by the predictor, and how long one read blocks (bounds how fast it stops).
REPLY_READ_COUNT = 1000
REPLY_READ_BLOCK_MS = 250
#: What a predictor counts (:meth:`QueryBroker.stats`).
_COUNTERS = ("queries", "answered", "timeouts", "failed", "duplicates", "unmatched")


class InferenceError(GeniusError):
    """A query could not be answered; ``http_status`` is what the predictor's caller gets."""

    http_status = 500


class BadQuery(InferenceError, ValueError):
    """The request body is not ``{"query": …}`` or ``{"queries": […]}``."""

    http_status = 400


class PredictionTimeout(InferenceError, TimeoutError):
    """Not enough answers arrived within the timeout (no worker, workers too slow, too few members)."""

    http_status = 504


class PredictionFailed(InferenceError):
    """Every member that answered reported an error (the model raised); the message carries theirs."""


# ---------------------------------------------------------------------------------------------- combine
def combine(predictions: Mapping[str, Any], how: str = "majority") -> Any:
    """Combine the predictions of an ensemble, keyed by member.

    * ``majority``: the most frequent prediction (compared as JSON); a tie goes to the prediction of the
      first member in name order.
    * ``mean``: the mean of numbers, element-wise for lists and key-wise for objects of numbers (e.g.
      class probabilities).
    * ``all``: every member's prediction, ``{member: prediction}``.

    >>> combine({"a": "cat", "b": "dog", "c": "cat"})
    'cat'
    >>> combine({"a": [0.2, 0.8], "b": [0.4, 0.6]}, "mean")
    [0.30000000000000004, 0.7]
    >>> combine({"b": 1, "a": 2}, "all")
    {'a': 2, 'b': 1}
    """
    if not predictions:
        raise InferenceError("no prediction to combine")
    members = sorted(predictions)
    if how == "majority":
        canonical = {m: json.dumps(predictions[m], sort_keys=True, default=str) for m in members}
        counts = Counter(canonical.values())
        best = max(counts.values())
        return next(predictions[m] for m in members if counts[canonical[m]] == best)
    if how == "mean":
        return _mean([predictions[m] for m in members])
    if how == "all":
        return {m: predictions[m] for m in members}
    raise InferenceError(f"unknown combine {how!r} (known: {', '.join(COMBINERS)})")


def _mean(values: list[Any]) -> Any:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sum(values) / len(values)
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [_mean(list(column)) for column in zip(*values, strict=True)]
    if all(isinstance(v, dict) for v in values) and len({tuple(sorted(v)) for v in values}) == 1:
        return {key: _mean([v[key] for v in values]) for key in sorted(values[0])}
    raise InferenceError("combine='mean' needs numbers, or lists / objects of numbers of one shape")


# ---------------------------------------------------------------------------------------------- worker
class InferenceWorker(Bolt):
    """Answers the queries of a request stream into a reply stream; subclass it and implement
    :meth:`predict` (one query) or :meth:`predict_batch` (a window's queries at once).

    Run :meth:`answer` as an unbounded stream bolt: input ``redis://…?stream=<requests>&group=<member>
    &claim_idle=<s>``, output ``redis://…?stream=<replies>&dedup_ttl=<s>``, ``window`` with
    ``unbounded: true``. The method's keyword arguments go to :meth:`setup`, called once before the first
    query (load the model there; ``self.model_path`` is already set when the spec names a model).

    A query whose ``deadline`` has passed is acked without an answer (its caller is gone); one whose
    prediction raises is answered with ``{"error": {"type", "message"}}`` (a bad query never stops the
    worker; a batch that raises is retried one query at a time to find it).
    """

    #: Seconds a window keeps collecting queries once the first arrived. 0: answer what is queued at
    #: once (the window's ``max_seconds`` then only bounds the wait for a first query, and
    #: ``max_records`` the batch); more trades latency for larger batches.
    linger: ClassVar[float | None] = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_up = False
        window = self.input.window if isinstance(self.input, StreamingInput) else None
        if window is not None and window.linger is None:
            window.linger = self.linger  # the runtime's window reader, before it reads the first window

    # ------------------------------------------------------------------ the user's part
    def setup(self) -> None:
        """Load the model. Called once, before the first query, with the task method's keyword arguments:
        declare them as keyword parameters with defaults (``def setup(self, threshold: float = 0.5)``)."""

    def predict(self, query: Any) -> Any:
        """The prediction (JSON) for one query."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict() or predict_batch()")

    def predict_batch(self, queries: list[Any]) -> list[Any]:
        """The predictions for a window's live queries, in order (default: :meth:`predict` for each)."""
        return [self.predict(query) for query in queries]

    # ------------------------------------------------------------------ the task method
    def answer(self, **config: Any) -> dict[str, int]:
        """Answer this window's queries (called once per window by the unbounded loop).

        Returns the window's counts (the run's ``last_result``): ``queries``, ``answered`` (replies
        written), ``duplicates`` (replies already written by an earlier try or another worker),
        ``expired``, ``malformed`` and ``errors``. Run totals accumulate in the run record's metrics.
        """
        source, sink = self.input, self.output
        if not isinstance(source, StreamingInput) or not isinstance(sink, StreamingOutput):
            raise TaskCallError(
                f"{type(self).__name__}.answer reads queries from a stream input and answers into a stream "
                f"output; got input {source!r} and output {sink!r}"
            )
        if not self._set_up:
            try:
                inspect.signature(self.setup).bind(**config)
            except TypeError as exc:
                raise TaskCallError(
                    f"{type(self).__name__}.setup{inspect.signature(self.setup)}: {exc}"
                ) from None
            self.setup(**config)
            self._set_up = True
        member = source.group
        worker = getattr(source.window, "consumer", None) or member
        now = time.time()
        live: list[tuple[str, str, Any]] = []  # (stream id, query id, query)
        expired = malformed = 0
        for message in source.messages():
            data = message.data
            if not isinstance(data, dict) or "query" not in data:
                malformed += 1  # nothing to answer and nobody to answer to
                continue
            deadline = data.get("deadline")
            if isinstance(deadline, (int, float)) and deadline < now:
                expired += 1
                continue
            live.append((message.id, str(data.get("id") or message.id), data["query"]))
        outcomes = self._predict_all([query for _, _, query in live])
        outputs: dict[str, StreamingOutput] = {}
        errors = 0
        for (message_id, query_id, _), (ok, value) in zip(live, outcomes, strict=True):
            reply: dict[str, Any] = {"id": query_id, "member": member, "worker": worker}
            if ok:
                reply["prediction"] = value
            else:
                reply["error"] = value
                errors += 1
            # The dedup id is <scope>|<query's stream id>|0 whoever answers: one reply per query and member.
            scope = f"answers:{member}:{StreamLog.id_key(message_id)[0] // REPLY_SCOPE_SPAN}"
            out = outputs.get(scope)
            if out is None:
                out = outputs[scope] = StreamingOutput(
                    sink.log, scope=scope, source=source, flush_every=sink.flush_every
                )
            source.current_id = message_id
            out.send(reply)
        source.current_id = None
        written = skipped = 0
        for out in outputs.values():
            out.flush()  # durable before the runtime acks the window
            written += out.written
            skipped += out.skipped
        # The window's own output counters (the run's output_written / output_skipped) count the replies.
        sink.sent, sink.written, sink.skipped = (
            sink.sent + len(live),
            sink.written + written,
            sink.skipped + skipped,
        )
        counts = {
            "queries": len(source),
            "answered": written,
            "duplicates": skipped,
            "expired": expired,
            "malformed": malformed,
            "errors": errors,
        }
        for name, value in counts.items():
            self.log_metric(name, int(self.metrics.get(name, 0)) + value)
        return counts

    def _predict_all(self, queries: list[Any]) -> list[tuple[bool, Any]]:
        """(True, prediction) or (False, error) per query; a failing batch is split to find the bad one."""
        if not queries:
            return []
        try:
            predictions = list(self.predict_batch(queries))
            if len(predictions) != len(queries):
                raise InferenceError(
                    f"predict_batch returned {len(predictions)} predictions for {len(queries)} queries"
                )
            for prediction in predictions:
                json.dumps(prediction, default=json_default)  # refused here, not when the window flushes
        except Exception as exc:
            if len(queries) == 1:
                return [(False, {"type": type(exc).__name__, "message": str(exc)})]
            return [outcome for query in queries for outcome in self._predict_all([query])]
        return [(True, prediction) for prediction in predictions]


# ---------------------------------------------------------------------------------------------- predictor
@dataclass
class _Waiter:
    """One query the predictor waits for: the answers so far, by member."""

    need: int
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class QueryBroker:
    """The predictor's stream side, usable without HTTP: enqueue queries, collect and combine replies.

    >>> broker = QueryBroker("redis://redis:6379/0?stream=queries", "redis://redis:6379/0?stream=replies",
    ...                      group="predictor-1")                       # doctest: +SKIP
    >>> broker.start(); broker.ask(["good movie"])[0]["prediction"]     # doctest: +SKIP
    {'label': 'positive', 'score': 1.0}

    ``group`` is this predictor's consumer group on the reply stream (each predictor needs its own: it
    reads every reply and keeps those of its queries). It is created at the stream's end before the
    first query, so no reply to this predictor can be missed. A restarted predictor with the same group
    reads the replies that arrived while it was down and drops them (no caller waits for them).
    """

    def __init__(
        self,
        requests: str,
        replies: str,
        *,
        group: str,
        timeout: float = DEFAULT_TIMEOUT,
        ensemble: int = 1,
        combine: str = "majority",
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not 0 < timeout <= 24 * 3600:
            raise ValueError(f"timeout must be > 0 seconds and at most a day, got {timeout!r}")
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be an integer >= 1, got {ensemble!r}")
        if combine not in COMBINERS:
            raise ValueError(f"combine must be one of {', '.join(COMBINERS)}, got {combine!r}")
        self.requests_uri = requests
        self.replies_uri = replies
        self.group = group
        self.consumer = f"{group}.reader"
        self.timeout = float(timeout)
        self.ensemble = ensemble
        self.how = combine
        self._env = env
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiter] = {}
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._requests: StreamLog | None = None
        self._replies: StreamLog | None = None
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open both streams, create the reply group at the end of the reply stream, start reading."""
        env = os.environ if self._env is None else self._env
        self._requests = open_stream_log(self.requests_uri, env)
        self._replies = open_stream_log(self.replies_uri, env)
        self._replies.ensure_group(self.group, start="$")
        # Replies a crashed predictor of this group read but never acked: nobody waits for them now.
        while stale := self._replies.read_pending(self.group, self.consumer, REPLY_READ_COUNT):
            self._replies.ack(self.group, [message.id for message in stale])
        self._reader = threading.Thread(
            target=self._read_replies, name="genius-predictor-replies", daemon=True
        )
        self._reader.start()

    def alive(self) -> bool:
        """True while the reply reader runs (the predictor's health)."""
        return self._reader is not None and self._reader.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        """Stop reading replies and release the streams; callers still waiting time out."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        for stream in (self._requests, self._replies):
            if stream is not None:
                stream.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``queries``, ``answered``, ``timeouts``, ``failed``, ``duplicates`` (a member's second
        reply, ignored), ``unmatched`` (replies to queries no longer waited for), ``in_flight``."""
        with self._lock:
            return {**{name: 0 for name in _COUNTERS}, **self.counts, "in_flight": len(self._waiting)}

    # ------------------------------------------------------------------ asking
    def ask(self, queries: Sequence[Any], *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Enqueue ``queries`` (one append), wait for their answers; one result per query, in order:
        ``{"id", "prediction", "workers"}`` (+ ``"members"`` and ``"errors"`` for an ensemble).

        Raises :class:`PredictionTimeout` when a query lacks answers after ``timeout`` seconds (default:
        the broker's), :class:`PredictionFailed` when every answer of a query is an error.
        """
        if self._requests is None:
            raise InferenceError("the broker is not started")
        wait = self.timeout if timeout is None else float(timeout)
        ids = [uuid.uuid4().hex for _ in queries]
        waiters = [_Waiter(self.ensemble) for _ in queries]
        with self._lock:  # registered before the append: a fast reply always finds its waiter
            self._waiting.update(zip(ids, waiters, strict=True))
            self.counts["queries"] += len(ids)
        deadline = time.time() + wait
        try:
            records = [
                Record({"id": query_id, "query": query, "deadline": deadline})
                for query_id, query in zip(ids, queries, strict=True)
            ]
            self._requests.append(records, want_ids=False)
            ends = time.monotonic() + wait
            for query_id, waiter in zip(ids, waiters, strict=True):
                if not waiter.done.wait(max(0.0, ends - time.monotonic())):
                    with self._lock:
                        self.counts["timeouts"] += 1
                    got = len(waiter.answers)
                    raise PredictionTimeout(
                        f"query {query_id}: {got} of {waiter.need} answer(s) within {wait:g}s "
                        "(are enough workers running, one consumer group per ensemble member?)"
                    )
            return [self._result(query_id, waiter) for query_id, waiter in zip(ids, waiters, strict=True)]
        finally:
            with self._lock:
                for query_id in ids:
                    self._waiting.pop(query_id, None)

    def handle(self, body: Any) -> dict[str, Any]:
        """The ``POST /predict`` route: ``{"query": q}`` → one result; ``{"queries": [...]}`` →
        ``{"ids": [...], "predictions": [...]}``."""
        if isinstance(body, dict) and "query" in body:
            return self.ask([body["query"]])[0]
        if isinstance(body, dict) and isinstance(body.get("queries"), list) and body["queries"]:
            results = self.ask(body["queries"])
            return {"ids": [r["id"] for r in results], "predictions": [r["prediction"] for r in results]}
        raise BadQuery('expected a JSON body {"query": ...} or {"queries": [...]} (a non-empty list)')

    def _result(self, query_id: str, waiter: _Waiter) -> dict[str, Any]:
        with self._lock:
            answers = dict(waiter.answers)
        good = {m: a["prediction"] for m, a in answers.items() if "error" not in a}
        bad = {m: a["error"] for m, a in answers.items() if "error" in a}
        if not good:
            with self._lock:
                self.counts["failed"] += 1
            first = next(iter(bad.items()))
            raise PredictionFailed(
                f"query {query_id}: {first[0]}: {first[1].get('type')}: {first[1].get('message')}"
            )
        with self._lock:
            self.counts["answered"] += 1
        result: dict[str, Any] = {
            "id": query_id,
            "prediction": next(iter(good.values())) if self.ensemble == 1 else combine(good, self.how),
            "workers": sorted(a.get("worker", m) for m, a in answers.items()),
        }
        if self.ensemble > 1:
            result["members"] = good
            if bad:
                result["errors"] = bad
        return result

    # ------------------------------------------------------------------ the reply reader
    def _read_replies(self) -> None:
        assert self._replies is not None
        while not self._stop.is_set():
            try:
                batch = self._replies.read_new(
                    self.group, self.consumer, REPLY_READ_COUNT, block_ms=REPLY_READ_BLOCK_MS
                )
            except Exception as exc:  # the stream is unreachable for a moment: callers time out meanwhile
                log.warning("reading replies failed: %s", exc)
                self._stop.wait(0.5)
                continue
            if not batch:
                continue
            with self._lock:
                for message in batch:
                    self._dispatch(message.data)
            try:
                self._replies.ack(self.group, [message.id for message in batch])
            except Exception as exc:  # pending replies of this reader are harmless: never read again
                log.warning("acknowledging replies failed: %s", exc)

    def _dispatch(self, reply: Any) -> None:
        """File one reply with its waiter (under the lock)."""
        if not isinstance(reply, dict) or "id" not in reply:
            self.counts["unmatched"] += 1
            return
        waiter = self._waiting.get(str(reply["id"]))
        if waiter is None:
            self.counts["unmatched"] += 1  # timed out, or another predictor's query
            return
        member = str(reply.get("member", "-"))
        if member in waiter.answers:
            self.counts["duplicates"] += 1
            return
        if waiter.done.is_set():
            return  # an ensemble's k answers are in: a further member's answer is not needed
        waiter.answers[member] = reply
        if len(waiter.answers) >= waiter.need:
            waiter.done.set()


class Predictor(Task):
    """The HTTP face of the pattern, run as a genius service (a ``service`` section in its spec).

    ``POST /predict`` ``{"query": q}`` → ``{"id", "prediction", "workers"}``; ``{"queries": [...]}`` →
    ``{"ids", "predictions"}``; ``GET /stats`` → the counters of :meth:`QueryBroker.stats`; ``GET
    /health`` → 200 while the reply reader runs. Errors: 400 for a bad body, 504 when the answers do not
    arrive in time, 500 when the model failed (its error type and message in the body).
    """

    def serve(
        self,
        requests: str,
        replies: str,
        timeout: float = DEFAULT_TIMEOUT,
        ensemble: int = 1,
        combine: str = "majority",
        group: str | None = None,
        port: int | None = None,
    ) -> None:
        """Serve until stopped. ``requests``: the request stream's URI (the workers' input, without
        ``group``); ``replies``: the reply stream's URI (the workers' output); ``timeout``: seconds a
        caller waits; ``ensemble``/``combine``: answers of that many members, combined (:func:`combine`);
        ``group``: this predictor's group on the reply stream (default ``predictor.<dag>.<task>.<map
        index>``); ``port``: default ``$SERVICE_PORT``."""
        from airflow_genius.core.service import serve_http

        broker = QueryBroker(
            requests,
            replies,
            group=group or self._default_group(),
            timeout=timeout,
            ensemble=ensemble,
            combine=combine,
        )
        broker.start()
        try:
            serve_http(
                {"/predict": broker.handle, "/stats": lambda _body: broker.stats()},
                port=port,
                ready=broker.alive,
            )
        finally:
            broker.stop()
            for name, value in broker.stats().items():
                self.log_metric(name, value)

    def _default_group(self) -> str:
        who = self.identity
        return "predictor" if who is None else f"predictor.{who.dag_id}.{who.task_id}.{who.map_index}"


__all__ = [
    "COMBINERS",
    "BadQuery",
    "InferenceError",
    "InferenceWorker",
    "PredictionFailed",
    "PredictionTimeout",
    "Predictor",
    "QueryBroker",
    "combine",
]
