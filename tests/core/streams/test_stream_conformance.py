"""One conformance suite for both stream backends (Redis Streams, embedded SQLite log)."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.errors import SpecError
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.core.streams import Record, StreamError, open_stream_log, parse_stream_uri


def test_append_keeps_order_with_increasing_ids(place: StreamPlace) -> None:
    log = place.open("s")
    ids = fill(log, 5)
    assert [log.id_key(i) for i in ids] == sorted(log.id_key(i) for i in ids)
    assert len(set(ids)) == 5
    assert [m.data for m in log.read_all()] == [{"n": n} for n in range(5)]
    assert log.length() == 5
    assert [m.data["n"] for m in log.get([ids[3], ids[1]])] == [3, 1]


def test_dedup_ids_make_appends_idempotent(place: StreamPlace) -> None:
    log = place.open("s")
    first = log.append([Record({"x": 1}, "w|1|0"), Record({"x": 2}, "w|1|1")], scope="w")
    again = log.append([Record({"x": 1}, "w|1|0"), Record({"x": 3}, "w|2|0")], scope="w")
    assert None not in first
    assert again[0] is None and again[1] is not None
    assert [m.data for m in log.read_all()] == [{"x": 1}, {"x": 2}, {"x": 3}]


def test_group_delivers_each_record_once_across_consumers(place: StreamPlace) -> None:
    log = place.open("s", "g")
    fill(log, 10)
    log.ensure_group("g")
    log.ensure_group("g")  # idempotent
    a = log.read_new("g", "a", 4)
    b = log.read_new("g", "b", 100)
    assert [m.data["n"] for m in a] == [0, 1, 2, 3]
    assert [m.data["n"] for m in b] == list(range(4, 10))
    assert log.read_new("g", "a", 10) == []
    assert len(log.pending_ids("g")) == 10


def test_pending_until_acked_and_replayed_to_its_consumer(place: StreamPlace) -> None:
    log = place.open("s", "g")
    ids = fill(log, 3)
    log.ensure_group("g")
    log.read_new("g", "a", 10)
    assert [m.id for m in log.read_pending("g", "a", 10)] == ids
    assert log.read_pending("g", "b", 10) == []
    assert log.ack("g", ids[:2]) == 2
    assert log.ack("g", ids[:2]) == 0  # acking twice is harmless
    assert log.pending_ids("g") == ids[2:]
    assert [m.id for m in log.read_pending("g", "a", 10)] == ids[2:]


def test_groups_are_independent_and_start_position(place: StreamPlace) -> None:
    log = place.open("s")
    fill(log, 2)
    log.ensure_group("all", start="0")
    log.ensure_group("late", start="$")
    fill(log, 1, start=2)
    assert [m.data["n"] for m in log.read_new("all", "c", 10)] == [0, 1, 2]
    assert [m.data["n"] for m in log.read_new("late", "c", 10)] == [2]


def test_autoclaim_takes_over_idle_pending_of_a_dead_consumer(place: StreamPlace) -> None:
    log = place.open("s", "g")
    ids = fill(log, 3)
    log.ensure_group("g")
    log.read_new("g", "dead", 10)
    assert log.autoclaim("g", "alive", 60_000, 10) == []  # not idle long enough
    time.sleep(0.05)
    claimed = log.autoclaim("g", "alive", 20, 10)
    assert [m.id for m in claimed] == ids
    assert [m.id for m in log.read_pending("g", "alive", 10)] == ids
    assert log.read_pending("g", "dead", 10) == []


def test_blocking_read_waits_then_returns_empty(place: StreamPlace) -> None:
    log = place.open("s", "g")
    log.ensure_group("g")
    started = time.monotonic()
    assert log.read_new("g", "c", 10, block_ms=150) == []
    assert time.monotonic() - started >= 0.1


def test_maxlen_bounds_the_stream(place: StreamPlace) -> None:
    log = place.open("s", maxlen=10)
    for start in range(0, 300, 50):
        fill(log, 50, start=start)
    # Redis trims approximately (MAXLEN ~): whole macro-nodes only; SQLite trims exactly.
    assert 10 <= log.length() < 300
    assert log.read_all()[-1].data == {"n": 299}


def test_missing_record_is_reported(place: StreamPlace) -> None:
    log = place.open("s")
    fill(log, 1)
    with pytest.raises(StreamError, match="no longer in stream"):
        log.get(["999999999-0" if place.backend == "redis" else "999"])


def _reader(uri: str, consumer: str, queue: multiprocessing.Queue) -> None:
    log = open_stream_log(uri)
    got: list[int] = []
    while True:
        batch = log.read_new("g", consumer, 7)
        if not batch:
            break
        got += [m.data["n"] for m in batch]
    queue.put(got)


def test_concurrent_processes_never_share_a_record(place: StreamPlace) -> None:
    uri = place.uri("s", "g")
    log = open_stream_log(uri)
    fill(log, 400)
    log.ensure_group("g")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_reader, args=(uri, f"c{i}", queue)) for i in range(3)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    merged = sorted(n for got in results for n in got)
    assert merged == list(range(400))


# ---------------------------------------------------------------------- URIs and the spec
def test_stream_uris_parse_and_are_validated() -> None:
    address = parse_stream_uri("redis://127.0.0.1:6379/0?stream=events&group=g&maxlen=100")
    assert (address.stream, address.group, address.params["maxlen"]) == ("events", "g", "100")
    with pytest.raises(StreamError, match="stream="):
        parse_stream_uri("redis://h/0?group=g")
    with pytest.raises(StreamError, match="group="):
        parse_stream_uri("sqlite:///x.db?stream=s", need_group=True)
    with pytest.raises(StreamError, match="GENIUS_STATE_PASSWORD"):
        parse_stream_uri("redis://u:secret@h/0?stream=s")


def _spec(**kw: object) -> TaskSpec:
    return build_spec("pkg.mod:C", "go", kind="bolt", dag_id="d", task_id="t", run_id="r", **kw)  # type: ignore[arg-type]


def test_spec_accepts_stream_input_and_output() -> None:
    spec = _spec(input_uri="redis://h:6379/0?stream=in&group=g", output_uri="sqlite:///o.db?stream=out")
    assert (spec.input and spec.input.type, spec.output and spec.output.type) == ("stream", "stream")
    assert TaskSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"input_uri": "redis://h/0?stream=in"}, "input.uri", "group="),
        ({"input_uri": "redis://h/0?group=g"}, "input.uri", "stream="),
        ({"input_uri": "/data", "output_uri": "redis://h/0"}, "output.uri", "stream="),
        ({"input_uri": "/data", "output_uri": "redis://u:pw@h/0?stream=o"}, "output.uri", "password"),
        ({"input_uri": "/data", "input_type": "stream"}, "input.type", "expected one of batch, stream"),
    ],
)
def test_spec_rejects_bad_stream_uris(kw: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        _spec(**kw)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert "pw" not in str(caught.value)
