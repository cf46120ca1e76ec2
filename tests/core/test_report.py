"""``write_report`` and ``genius report`` on records the real runtime wrote (SQLite and Redis): the
benchmark chart holds each client's measured numbers, tasks get their history, stream tasks their
windows, the file needs nothing from the network, and hostile ids stay escaped."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from genius_samples.bench import ChartMarks

from airflow_genius.core import build_spec, open_state
from airflow_genius.core.charts import number_text
from airflow_genius.core.cli import main as genius
from airflow_genius.core.errors import GeniusError
from airflow_genius.core.report import write_report
from airflow_genius.core.runtime import run_spec
from airflow_genius.core.state import RunKey, Status

DAG = "bench_dag"
RUNS = ("manual__1", "manual__2")
LATENCY = {"p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"}


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("redis", id="redis", marks=pytest.mark.redis)]
)
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    uri = f"{request.getfixturevalue('redis_url')}?prefix=trep{uuid.uuid4().hex[:10]}"
    yield uri
    with open_state(uri) as state:
        state.purge()  # type: ignore[attr-defined]


def run_clients(state_uri: str, tmp_path: Path) -> None:
    """Two runs of a DAG: two mapped benchmark clients each, and one plain task."""
    for run_id in RUNS:
        for map_index in (0, 1):
            spec = build_spec(
                "genius_samples.bench:LatencyProbe",
                "measure",
                kwargs={"requests": 30, "size": 5_000 * (map_index + 1)},
                dag_id=DAG,
                task_id="client",
                run_id=run_id,
                map_index=map_index,
                state_uri=state_uri,
            )
            assert run_spec(spec, work_dir=tmp_path / "work").ok
        adder = build_spec(
            "genius_samples.tasks:Adder", "add", args=[1, 2], dag_id=DAG, task_id="add", run_id=run_id,
            state_uri=state_uri,
        )  # fmt: skip
        assert run_spec(adder, work_dir=tmp_path / "work").ok


def assert_self_contained(page: str) -> None:
    without_namespace = page.replace("xmlns='http://www.w3.org/2000/svg'", "")
    assert not re.search(r"https?://|<script|<link|<img|<iframe|\bsrc=|@import|url\(", without_namespace)


def test_report_of_a_dag_charts_every_client_with_its_measured_numbers(
    state_uri: str, tmp_path: Path
) -> None:
    run_clients(state_uri, tmp_path)
    with open_state(state_uri) as state:
        written = write_report(state, tmp_path / "out" / "report.html", dag_id=DAG)
        records = {r.key: r for r in state.list_runs(dag_id=DAG)}
    assert written == tmp_path / "out" / "report.html"
    page = written.read_text(encoding="utf-8")
    assert_self_contained(page)
    marks = ChartMarks.of(page)

    latency = [m for m in marks if m["chart"] == "benchmark-latency"]
    assert len(latency) == len(RUNS) * 2 * 3  # per run: two clients, three percentiles
    newest = RUNS[-1]  # benchmark sections: newest run first
    for run_id in RUNS:
        for index in (0, 1):
            metrics = records[RunKey(DAG, "client", run_id, index)].metrics
            assert metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"]
    first_section = latency[:6]
    assert {(m["series"], m["category"]): m["value"] for m in first_section} == {
        (f"client[{index}]", category): number_text(
            records[RunKey(DAG, "client", newest, index)].metrics[name]
        )
        for index in (0, 1)
        for category, name in LATENCY.items()
    }
    throughput = [m for m in marks if m["chart"] == "benchmark-throughput"][:2]
    assert [(m["series"], float(m["value"])) for m in throughput] == [
        (f"client[{i}]", records[RunKey(DAG, "client", newest, i)].metrics["throughput_rps"]) for i in (0, 1)
    ]

    # history: duration and every numeric metric, one point per run and client
    durations = [m for m in marks if m["chart"] == "history-duration"]
    assert {(m["series"], m["x"]) for m in durations} >= {
        (f"client[{i}]", run) for i in (0, 1) for run in RUNS
    }
    assert ("add", RUNS[0]) in {(m["series"], m["x"]) for m in durations}
    assert "latency_p99_ms</figcaption>" in page and "calls</figcaption>" in page
    # the table: every record with its metrics
    for key in records:
        assert (
            f"<td>{key.run_id}</td><td>{key.task_id}{'' if key.map_index < 0 else f'[{key.map_index}]'}</td>"
            in page
        )
    assert page.count("<td>SUCCESS</td>") == len(records) == 6


def test_report_of_one_run(state_uri: str, tmp_path: Path) -> None:
    run_clients(state_uri, tmp_path)
    with open_state(state_uri) as state:
        page = write_report(state, tmp_path / "run.html", dag_id=DAG, run_id=RUNS[0]).read_text()
    assert RUNS[0] in page and RUNS[1] not in page
    marks = ChartMarks.of(page)
    assert {m["series"] for m in marks if m["chart"] == "benchmark-latency"} == {"client[0]", "client[1]"}
    assert not [m for m in marks if m["chart"].startswith("history")]  # one run: no line to draw


def test_report_refuses_what_it_cannot_report(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    with open_state(uri) as state:
        with pytest.raises(GeniusError, match=r"^report: no run records for DAG 'nope' in "):
            write_report(state, tmp_path / "r.html", dag_id="nope")
        with pytest.raises(GeniusError, match=r"^report: dag_id: expected a non-empty string"):
            write_report(state, tmp_path / "r.html", dag_id="")
    assert not (tmp_path / "r.html").exists()


def test_stream_windows_are_charted_per_window(tmp_path: Path) -> None:
    """A stream spout and two bounded windows of a stream bolt (embedded SQLite log), run for real."""
    uri, log = f"sqlite:///{tmp_path}/state.db", f"sqlite:///{tmp_path}/streams.db"
    common = {"dag_id": "stream_dag", "state_uri": uri}
    spout = build_spec(
        "airflow_genius.examples.tasks:QuoteStreamSpout", "publish", kwargs={"count": 20}, kind="spout",
        task_id="publish", run_id="scheduled__1", output_uri=f"{log}?stream=raw", **common,
    )  # fmt: skip
    assert run_spec(spout, work_dir=tmp_path / "work").ok
    for run_id in ("scheduled__1", "scheduled__2"):
        bolt = build_spec(
            "airflow_genius.examples.tasks:Enrich", "process", kind="bolt", task_id="enrich", run_id=run_id,
            input_uri=f"{log}?stream=raw&group=enrich", output_uri=f"{log}?stream=enriched", max_records=15,
            **common,
        )  # fmt: skip
        assert run_spec(bolt, work_dir=tmp_path / "work").ok
    with open_state(uri) as state:
        page = write_report(state, tmp_path / "r.html", dag_id="stream_dag").read_text()
        records = {r.key.run_id: r for r in state.list_runs(dag_id="stream_dag", task_id="enrich")}
    windows = [m for m in ChartMarks.of(page) if m["chart"] == "stream-windows"]
    assert [(m["category"], m["series"]) for m in windows] == [
        ("scheduled__1", "enrich"),
        ("scheduled__2", "enrich"),
    ]
    for mark in windows:
        metrics = records[mark["category"]].metrics
        assert float(mark["value"]) == pytest.approx(metrics["window_records"] / metrics["duration_seconds"])
    assert [records[run].metrics["window_records"] for run in ("scheduled__1", "scheduled__2")] == [15, 5]


def test_hostile_ids_and_metric_names_stay_escaped(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    hostile = "<script>alert(1)</script>'\"\x1b"
    with open_state(uri) as state:
        for run in ("r1", "r2"):
            key = RunKey(DAG, hostile, run, 0)
            state.start_run(key, try_number=1)
            metrics = {"latency_p50_ms": 1.0, hostile: 2.5, "throughput_rps": "fast"}
            state.finish_run(key, Status.SUCCESS, try_number=1, metrics=metrics)
        page = write_report(state, tmp_path / "r.html", dag_id=DAG).read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;\\x1b" in page
    marks = ChartMarks.of(page)
    assert {m["series"] for m in marks if m["chart"] == "benchmark-latency"} == {
        "<script>alert(1)</script>'\"\\x1b[0]"
    }
    assert not [m for m in marks if m["chart"] == "benchmark-throughput"]  # text draws nothing
    assert "No client logged throughput_rps as a number." in page


def test_genius_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    run_clients(uri, tmp_path)
    out = tmp_path / "report.html"
    assert genius(["report", "--state", uri, "--dag-id", DAG, "--run-id", RUNS[1], "-o", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().err
    assert {m["series"] for m in ChartMarks.of(out.read_text()) if m["chart"] == "benchmark-latency"} == {
        "client[0]",
        "client[1]",
    }
    assert genius(["report", "--state", uri, "--dag-id", DAG, "--run-id", "gone", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("genius: error: report: no run records for DAG 'bench_dag' run 'gone'")
    assert error.count("\n") == 1


def test_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/state.db"
    with open_state(uri) as state:
        state.start_run(RunKey(DAG, "t", "r"), try_number=1)
        (tmp_path / "file").write_text("not a folder")
        with pytest.raises(GeniusError, match=r"^report: cannot write '.*/file/r\.html': "):
            write_report(state, tmp_path / "file" / "r.html", dag_id=DAG)
