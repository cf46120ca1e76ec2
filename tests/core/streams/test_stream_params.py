"""Stream URI parameters: every one is checked and typed when the URI is parsed; a bad one is one line
naming the parameter and the URI, and nothing is read, written or recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.errors import SpecError
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.spec import TaskSpec, build_spec
from airflow_genius.core.state import Status, open_state
from airflow_genius.core.streams import StreamUriError, open_stream_log, parse_stream_uri
from airflow_genius.core.streams.base import MAX_COUNT, STREAM_PARAMS
from airflow_genius.core.uris import redact

TESTS_DIR = Path(__file__).resolve().parents[2]
BASES = {"redis": "redis://app@127.0.0.1:6379/15", "sqlite": "sqlite:///streams.db"}

#: (query added to ``?stream=s&group=g``, the parameter the message must name)
BAD_PARAMS = [
    ("batch=abc", "batch"),
    ("batch=-1", "batch"),
    ("batch=0", "batch"),
    ("batch=1.5", "batch"),
    ("batch=+5", "batch"),
    ("batch=1_000", "batch"),
    ("batch=1e3", "batch"),
    ("batch=", "batch"),
    (f"batch={MAX_COUNT + 1}", "batch"),
    ("flush_every=0", "flush_every"),
    ("flush_every=many", "flush_every"),
    ("maxlen=-5", "maxlen"),
    ("maxlen=0", "maxlen"),
    ("claim_idle=soon", "claim_idle"),
    ("claim_idle=0", "claim_idle"),
    ("claim_idle=-1", "claim_idle"),
    ("claim_idle=nan", "claim_idle"),
    ("claim_idle=inf", "claim_idle"),
    ("claim_idle=1e400", "claim_idle"),
    ("claim_idle=99999999999", "claim_idle"),
    ("consumer=", "consumer"),
    ("consumer=%20%20", "consumer"),
    ("group=%20", "group"),
    ("bacth=5", "bacth"),
    ("Batch=5", "Batch"),
    ("claim-idle=5", "claim-idle"),
    ("block_ms=5", "block_ms"),
    ("batch=1&batch=2", "batch"),
]
REDIS_ONLY = [("dedup_ttl=-1", "dedup_ttl"), ("dedup_ttl=0", "dedup_ttl"), ("dedup_ttl=forever", "dedup_ttl")]


def check_one_line(exc: BaseException, uri: str, name: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert message.startswith(f"stream URI {redact(uri)!r}: "), message
    assert name in message.split(": ", 1)[1], message


@pytest.mark.parametrize("backend", sorted(BASES))
@pytest.mark.parametrize(("query", "name"), BAD_PARAMS)
def test_a_bad_parameter_is_one_line_naming_it_and_the_uri(backend: str, query: str, name: str) -> None:
    uri = f"{BASES[backend]}?stream=s&group=g&{query}"
    with pytest.raises(StreamUriError) as caught:
        parse_stream_uri(uri, need_group=True)
    check_one_line(caught.value, uri, name)
    with pytest.raises(StreamUriError):  # opening parses the same way: nothing is connected or created
        open_stream_log(uri)


@pytest.mark.parametrize(("query", "name"), REDIS_ONLY)
def test_dedup_ttl_must_be_positive_seconds(query: str, name: str) -> None:
    uri = f"{BASES['redis']}?stream=s&{query}"
    with pytest.raises(StreamUriError) as caught:
        parse_stream_uri(uri)
    check_one_line(caught.value, uri, name)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("sqlite:///s.db?stream=s&dedup_ttl=60", "parameter dedup_ttl (seconds a window's dedup set lives)"),
        ("sqlite://host/s.db?stream=s", "names a host"),
        ("sqlite://?stream=s", "has no file path"),
        ("redis://127.0.0.1:6379/x?stream=s", "the path must be a Redis database number"),
        ("redis://127.0.0.1:99999/0?stream=s", "the port must be a number"),
        ("redis://127.0.0.1:6379/0?group=g", "needs ?stream=<name>"),
        ("redis://127.0.0.1:6379/0?stream=s", "needs &group=<consumer group> to be read"),
        ("kafka://broker/0?stream=s&group=g", "expected a scheme among redis, rediss, sqlite"),
    ],
)
def test_a_bad_stream_address_is_one_line(uri: str, problem: str) -> None:
    with pytest.raises(StreamUriError) as caught:
        parse_stream_uri(uri, need_group=True)
    assert str(caught.value).startswith(f"stream URI {uri!r}: {problem}"), str(caught.value)


def test_parameters_are_typed_once_when_the_uri_is_parsed() -> None:
    address = parse_stream_uri(
        "redis://cache:6379/3?stream=s&group=g&consumer=c1&batch=50&flush_every=7&maxlen=100"
        "&claim_idle=2.5&dedup_ttl=60"
    )
    assert (address.stream, address.group, address.consumer, address.db) == ("s", "g", "c1", 3)
    assert (address.batch, address.flush_every, address.maxlen) == (50, 7, 100)
    assert (address.claim_idle, address.dedup_ttl) == (2.5, 60.0)
    plain = parse_stream_uri("sqlite:////tmp/x.db?stream=s")
    assert plain.path == Path("/tmp/x.db") and plain.batch is None and plain.claim_idle is None
    assert set(STREAM_PARAMS) == {
        "stream",
        "group",
        "consumer",
        "batch",
        "flush_every",
        "maxlen",
        "claim_idle",
        "dedup_ttl",
    }


# ---------------------------------------------------------------------- through a spec and the runtime
def bolt_spec(place: StreamPlace, state_uri: str, *, input_query: str = "", output_query: str = "") -> str:
    """A stream bolt's spec as JSON, with raw queries appended to its URIs (not validated here)."""
    data = build_spec(
        "genius_stream_tasks:PassThrough",
        "process",
        kind="bolt",
        kwargs={"fanout": 1},
        input_uri=place.uri("in", "g"),
        output_uri=place.uri("out"),
        dag_id="d",
        task_id="t",
        run_id="r1",
        state_uri=state_uri,
        max_records=10,
    ).to_dict()
    data["input"]["uri"] += input_query
    data["output"]["uri"] += output_query
    return json.dumps(data)


def genius_run(spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{TESTS_DIR / 'core' / 'streams'}"},
        input=spec,
        timeout=60,
    )


def test_genius_run_refuses_bad_parameters_before_touching_streams_or_state(
    place: StreamPlace, tmp_path: Path
) -> None:
    state_uri = f"sqlite:///{tmp_path}/state.db"
    inputs = place.open("in")
    fill(inputs, 3)
    inputs.ensure_group("g")
    cases = [
        ("&batch=abc", "", "input.uri: parameter batch='abc'"),
        ("&claim_idle=soon", "", "input.uri: parameter claim_idle='soon'"),
        ("&bacth=5", "", "input.uri: unknown parameter 'bacth'; did you mean 'batch'?"),
        ("", "&flush_every=0", "output.uri: parameter flush_every='0'"),
        ("", "&maxlen=-5", "output.uri: parameter maxlen='-5'"),
    ]
    if place.backend == "redis":
        cases.append(("", "&dedup_ttl=-1", "output.uri: parameter dedup_ttl='-1'"))
    for input_query, output_query, expected in cases:
        spec = bolt_spec(place, state_uri, input_query=input_query, output_query=output_query)
        with pytest.raises(SpecError, match="^" + expected.replace("?", r"\?").replace("(", r"\(")):
            TaskSpec.from_json(spec)
        done = genius_run(spec)
        assert done.returncode == 2, done.stderr[-500:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"genius: error: {expected}"), lines[:3]
    # Nothing was read, written or recorded.
    assert inputs.pending_ids("g") == [] and len(inputs.read_all()) == 3
    assert place.open("out").length() == 0
    assert not (tmp_path / "state.db").exists()


def test_typed_parameters_reach_the_window_and_the_output(place: StreamPlace, tmp_path: Path) -> None:
    fill(place.open("in"), 5)
    spec = TaskSpec.from_json(
        bolt_spec(
            place,
            f"sqlite:///{tmp_path}/state.db",
            input_query="&consumer=worker-7&batch=2",
            output_query="&flush_every=2&maxlen=1000",
        )
    )
    outcome = run_spec(spec)
    assert outcome.ok, outcome.error
    assert outcome.record.window is not None and outcome.record.window["consumer"] == "worker-7"
    assert outcome.result["sources"] == [0, 1, 2, 3, 4]  # read two at a time, all five in the window
    assert [m.data["src"] for m in place.open("out").read_all()] == [0, 1, 2, 3, 4]


@pytest.mark.redis
def test_a_positive_dedup_ttl_keeps_output_exactly_once_across_a_retry(
    redis_url: str, tmp_path: Path
) -> None:
    import redis

    place = StreamPlace("redis", redis_url, f"ttl{os.getpid()}:")
    fill(place.open("in"), 3)
    state = open_state(f"sqlite:///{tmp_path}/state.db")

    def attempt(try_number: int):  # type: ignore[no-untyped-def]
        spec = build_spec(
            "genius_stream_tasks:PassThrough",
            "process",
            kind="bolt",
            kwargs={"fail_on_try": 1},
            input_uri=place.uri("in", "g"),
            output_uri=place.uri("out", dedup_ttl=60, flush_every=1),  # each send is durable at once
            dag_id="d",
            task_id="t",
            run_id="r1",
            try_number=try_number,
            max_records=10,
        )
        return run_spec(spec, state=state)

    client = redis.Redis.from_url(redis_url)
    try:
        assert attempt(1).status is Status.FAILED  # its three records were written before the failure
        assert attempt(2).ok
        assert len(place.open("out").read_all()) == 3  # not 6: the retry's sends were deduplicated
        (dedup_key,) = client.keys(f"{place.prefix}out:genius:dedup:*")
        assert 0 < client.ttl(dedup_key) <= 60
    finally:
        keys = client.keys(f"{place.prefix}*")
        if keys:
            client.delete(*keys)
        client.close()
        state.close()
