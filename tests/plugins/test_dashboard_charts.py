"""The dashboard's charts on records the real runtime wrote (SQLite and Redis stores, FastAPI's
TestClient): a run's page holds one benchmark series per client with its measured numbers, a task's page
its history, a stream task's page its windows; hostile ids and metric names stay escaped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from genius_samples.bench import ChartMarks

from airflow_genius.core import build_spec, open_state
from airflow_genius.core.charts import number_text
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.state import RunKey, Status
from airflow_genius.plugins.dashboard_app import Store, create_app

DAG = "bench"
RUNS = ("manual__1", "manual__2")


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis", marks=pytest.mark.redis)]
)
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    uri = f"{request.getfixturevalue('redis_url')}?prefix=tdch{uuid.uuid4().hex[:10]}"
    yield uri
    with open_state(uri) as state:
        state.purge()  # type: ignore[attr-defined]


def client_for(uri: str) -> TestClient:
    return TestClient(create_app(lambda: [Store("store", lambda: open_state(uri))]))


def run_benchmark(uri: str, tmp_path: Path) -> None:
    """Two DAG runs, each with three mapped clients of the sample benchmark class."""
    for run_id in RUNS:
        for index in range(3):
            spec = build_spec(
                "genius_samples.bench:LatencyProbe", "measure", kwargs={"requests": 20}, dag_id=DAG,
                task_id="client", run_id=run_id, map_index=index, state_uri=uri,
            )  # fmt: skip
            assert run_spec(spec, work_dir=tmp_path / "work").ok


def test_run_page_shows_one_benchmark_series_per_client(state_uri: str, tmp_path: Path) -> None:
    run_benchmark(state_uri, tmp_path)
    page = client_for(state_uri).get("/run", params={"dag_id": DAG, "run_id": RUNS[0]})
    assert page.status_code == 200
    with open_state(state_uri) as state:
        records = [r for r in state.list_runs(dag_id=DAG) if r.key.run_id == RUNS[0]]
    marks = ChartMarks.of(page.text)
    for chart, metrics in (
        ("benchmark-latency", ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")),
        ("benchmark-throughput", ("throughput_rps",)),
    ):
        found = [m for m in marks if m["chart"] == chart]
        assert sorted({m["series"] for m in found}) == ["client[0]", "client[1]", "client[2]"]
        for record in records:
            mine = [m["value"] for m in found if m["series"] == f"client[{record.key.map_index}]"]
            assert mine == [number_text(record.metrics[name]) for name in metrics]
    assert page.text.count("<tr><td>") == 3  # the run's records, below the charts
    assert RUNS[1] not in page.text


def test_task_page_charts_duration_and_metrics_across_runs(state_uri: str, tmp_path: Path) -> None:
    run_benchmark(state_uri, tmp_path)
    page = client_for(state_uri).get("/task", params={"dag_id": DAG, "task_id": "client"})
    assert page.status_code == 200
    marks = ChartMarks.of(page.text)
    durations = [m for m in marks if m["chart"] == "history-duration"]
    assert {(m["series"], m["x"]) for m in durations} == {(f"client[{i}]", r) for i in range(3) for r in RUNS}
    with open_state(state_uri) as state:
        record = state.require_run(RunKey(DAG, "client", RUNS[1], 2))
    p99 = [
        m["value"]
        for m in marks
        if m["chart"] == "history-metric" and m["series"] == "client[2]" and m["x"] == RUNS[1]
    ]
    assert number_text(record.metrics["latency_p99_ms"]) in p99
    assert "Stream windows" not in page.text  # not a stream task


def test_stream_task_page_charts_its_windows(tmp_path: Path) -> None:
    uri, log = f"sqlite:///{tmp_path}/state.db", f"sqlite:///{tmp_path}/streams.db"
    spout = build_spec(
        "airflow_genius.examples.tasks:QuoteStreamSpout", "publish", kwargs={"count": 12}, kind="spout",
        dag_id="stream", task_id="publish", run_id="scheduled__1", output_uri=f"{log}?stream=raw", state_uri=uri,
    )  # fmt: skip
    assert run_spec(spout, work_dir=tmp_path / "work").ok
    for run_id in ("scheduled__1", "scheduled__2", "scheduled__3"):
        bolt = build_spec(
            "airflow_genius.examples.tasks:Enrich", "process", kind="bolt", dag_id="stream", task_id="enrich",
            run_id=run_id, input_uri=f"{log}?stream=raw&group=g", output_uri=f"{log}?stream=out",
            max_records=5, state_uri=uri,
        )  # fmt: skip
        assert run_spec(bolt, work_dir=tmp_path / "work").ok
    page = client_for(uri).get("/task", params={"dag_id": "stream", "task_id": "enrich"})
    windows = [m for m in ChartMarks.of(page.text) if m["chart"] == "stream-windows"]
    with open_state(uri) as state:
        records = {r.key.run_id: r for r in state.list_runs(dag_id="stream", task_id="enrich")}
    assert [m["category"] for m in windows] == ["scheduled__1", "scheduled__2", "scheduled__3"]
    assert [records[m["category"]].metrics["window_records"] for m in windows] == [5, 5, 2]
    for mark in windows:
        metrics = records[mark["category"]].metrics
        assert float(mark["value"]) == pytest.approx(metrics["window_records"] / metrics["duration_seconds"])
    spout_page = client_for(uri).get("/task", params={"dag_id": "stream", "task_id": "publish"})
    assert "data-chart='stream-windows'" not in spout_page.text  # a stream output alone has no window


def test_pages_link_to_each_other_and_refuse_what_is_missing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    run_benchmark(uri, tmp_path)
    client = client_for(uri)
    listing = client.get("/").text
    assert f"href='/run?dag_id={DAG}&amp;run_id={RUNS[0]}'" in listing
    assert f"href='/task?dag_id={DAG}&amp;task_id=client'" in listing
    record = client.get(
        "/record", params={"dag_id": DAG, "task_id": "client", "run_id": RUNS[0], "map_index": 1}
    )
    assert "this DAG run</a>" in record.text and "this task across runs</a>" in record.text
    missing = client.get("/run", params={"dag_id": DAG, "run_id": "nope"})
    assert missing.status_code == 404 and "no run records for run &#x27;nope&#x27; of DAG" in missing.text
    assert client.get("/task", params={"dag_id": DAG, "task_id": "nope"}).status_code == 404
    assert client.get("/run", params={"dag_id": DAG}).status_code == 400
    assert client.get("/task", params={"dag_id": DAG, "task_id": "client", "limit": "0"}).status_code == 400
    # a run without clients has no benchmark chart
    adder = build_spec("genius_samples.tasks:Adder", "add", args=[1], dag_id=DAG, task_id="add", run_id="plain",
                       state_uri=uri)  # fmt: skip
    assert run_spec(adder, work_dir=tmp_path / "work").ok
    plain = client.get("/run", params={"dag_id": DAG, "run_id": "plain"})
    assert plain.status_code == 200 and "data-chart='benchmark" not in plain.text


def test_hostile_task_ids_and_metric_names_stay_escaped_in_charts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    hostile = "</svg><script>alert(1)</script>'\"&"  # a task id the query may name: no control character
    with open_state(uri) as state:
        for run in ("r1", "r2"):
            key = RunKey(DAG, hostile, run, 0)
            state.start_run(key, try_number=1)
            metrics = {
                "latency_p50_ms": 1.5,
                "latency_p99_ms": True,
                hostile + "\x1b": 2,
                "throughput_rps": "x",
            }
            state.finish_run(key, Status.SUCCESS, try_number=1, metrics=metrics)
    client = client_for(uri)
    for view, params in (
        ("/run", {"dag_id": DAG, "run_id": "r1"}),
        ("/task", {"dag_id": DAG, "task_id": hostile}),
    ):
        page = client.get(view, params=params)
        assert page.status_code == 200
        assert "<script>" not in page.text.split("<script>\ndocument", 1)[0]  # only the page's own script
        assert "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;&amp;" in page.text
    task_page = client.get("/task", params={"dag_id": DAG, "task_id": hostile}).text
    assert (
        "<figcaption>&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;&amp;\\x1b</figcaption>"
        in task_page
    )
    marks = ChartMarks.of(client.get("/run", params={"dag_id": DAG, "run_id": "r1"}).text)
    label = "</svg><script>alert(1)</script>'\"&[0]"
    # one bar: p50; a bool p99 and a text throughput draw nothing
    assert [(m["chart"], m["series"], m["category"], m["value"]) for m in marks] == [
        ("benchmark-latency", label, "p50", "1.5")
    ]
