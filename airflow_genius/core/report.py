"""Charts of run records, and a self-contained HTML report of one DAG (or one DAG run).

What is charted (the dashboard shows the same charts, from the same functions):

* **Benchmark** (:func:`benchmark_charts`): the clients of one DAG run — records with
  ``latency_p50_ms`` in their metrics, one client per task instance, labelled ``task_id`` or
  ``task_id[map_index]`` — as grouped bars of ``latency_p50_ms`` / ``latency_p95_ms`` /
  ``latency_p99_ms`` and bars of ``throughput_rps``.
* **History** (:func:`history_charts`): a task's run duration and each numeric metric across its runs
  (one line per map index, runs in the order they were created).
* **Stream windows** (:func:`window_chart`): records per second of each window of a stream task — a
  bounded run's ``window_records`` over its ``duration_seconds``; an unbounded run's ``records`` over its
  ``duration_seconds`` (the mean of its windows: per-window times are not recorded).

The report (:func:`write_report`) is one HTML file with inline CSS and SVG, nothing to fetch::

    from airflow_genius.core.report import write_report
    from airflow_genius.core.state import open_state

    with open_state("sqlite:///.genius/state.db") as state:
        write_report(state, "report.html", dag_id="ml_benchmark")              # every run of the DAG
        write_report(state, "run.html", dag_id="ml_benchmark", run_id="manual__1")  # one run

``genius report --state URI --dag-id D [--run-id R] -o report.html`` does the same from a shell.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_genius.core.charts import CHART_STYLE, Series, bar_chart, escape, is_number, line_chart
from airflow_genius.core.errors import GeniusError
from airflow_genius.core.state import RunKey, RunRecord, StateManager

#: The metric that makes a run record a benchmark client (see docs/dashboard.md).
BENCHMARK_METRIC = "latency_p50_ms"
#: Bars of the latency chart: (category, metric).
LATENCY_METRICS = (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"), ("p99", "latency_p99_ms"))
THROUGHPUT_METRIC = "throughput_rps"
#: Most records a report reads (newest first), most runs with a benchmark chart, most metric charts
#: per task (the others are named under the charts).
MAX_RECORDS = 2000
MAX_BENCHMARK_RUNS = 10
MAX_METRIC_CHARTS = 12

_REPORT_STYLE = """
:root { color-scheme: light dark; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; max-width: 80rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #8885; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; }
code { font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; }
ul.metrics { margin: 0; padding-left: 1rem; }
"""


def client_label(key: RunKey) -> str:
    """How charts name a task instance: ``task_id``, or ``task_id[map_index]`` when mapped.

    >>> client_label(RunKey("bench", "client", "manual__1", 2)), client_label(RunKey("d", "t", "r"))
    ('client[2]', 't')
    """
    return f"{key.task_id}[{key.map_index}]" if key.map_index >= 0 else key.task_id


def instant(moment: Any) -> float:
    """A sort key for any stored time (naive ones read as local time, like ``datetime`` does)."""
    try:
        return float(moment.timestamp())
    except (AttributeError, OverflowError, ValueError, OSError):
        return 0.0


def metrics_of(record: RunRecord) -> Mapping[str, Any]:
    """The record's metrics, or nothing when what is stored is not a mapping."""
    return record.metrics if isinstance(record.metrics, Mapping) else {}


def run_seconds(record: RunRecord) -> float | None:
    """RUNNING → end of the last try, or None (unfinished, or stored times that do not compare)."""
    try:
        return record.duration_seconds
    except (TypeError, ValueError, OverflowError):
        return None


def unique(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per run key (the first one: a key may be found in several stores)."""
    found: dict[RunKey, RunRecord] = {}
    for record in records:
        found.setdefault(record.key, record)
    return list(found.values())


def by_creation(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Oldest first, then by task and map index (deterministic for equal times)."""
    return sorted(
        records, key=lambda r: (instant(r.created_at), r.key.run_id, r.key.task_id, r.key.map_index)
    )


def benchmark_clients(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The benchmark clients among ``records``, ordered by task id and map index."""
    clients = [r for r in unique(records) if BENCHMARK_METRIC in metrics_of(r)]
    return sorted(clients, key=lambda r: (r.key.task_id, r.key.map_index))


def benchmark_charts(records: Iterable[RunRecord]) -> str:
    """Latency (p50/p95/p99) and throughput bars of one DAG run's clients; ``""`` without clients."""
    clients = benchmark_clients(records)
    if not clients:
        return ""
    latency = [
        Series(client_label(r.key), [metrics_of(r).get(metric) for _, metric in LATENCY_METRICS])
        for r in clients
    ]
    throughput = [Series(client_label(r.key), [metrics_of(r).get(THROUGHPUT_METRIC)]) for r in clients]
    return (
        "<div class='genius-charts'>"
        + bar_chart(
            "Latency per client",
            [category for category, _ in LATENCY_METRICS],
            latency,
            unit="ms",
            chart_id="benchmark-latency",
            empty_note="No client logged latency_p50_ms / latency_p95_ms / latency_p99_ms as numbers.",
        )
        + bar_chart(
            "Throughput per client",
            ["throughput"],
            throughput,
            unit="requests/s",
            chart_id="benchmark-throughput",
            empty_note=f"No client logged {THROUGHPUT_METRIC} as a number.",
        )
        + "</div>"
    )


def _runs_and_series(records: Sequence[RunRecord]) -> tuple[list[str], list[str]]:
    """x positions (run ids, in order of creation) and series (task instances) of ``records``."""
    runs = list(dict.fromkeys(r.key.run_id for r in records))
    instances = sorted({(r.key.task_id, r.key.map_index) for r in records})
    return runs, [client_label(RunKey("_", task, "_", index)) for task, index in instances]


def history_charts(records: Iterable[RunRecord]) -> str:
    """Run duration and each numeric metric over the runs of ``records`` (one task), as lines."""
    ordered = by_creation(unique(records))
    if not ordered:
        return ""
    runs, labels = _runs_and_series(ordered)
    cells = {(r.key.run_id, client_label(r.key)): r for r in ordered}

    def series_of(value: Any) -> list[Series]:
        return [
            Series(label, [value(cells[(run, label)]) if (run, label) in cells else None for run in runs])
            for label in labels
        ]

    names = sorted({name for r in ordered for name, v in metrics_of(r).items() if is_number(v)}, key=str)
    charts = [line_chart("Run duration", runs, series_of(run_seconds), unit="s", chart_id="history-duration")]
    for name in names[:MAX_METRIC_CHARTS]:
        charts.append(
            line_chart(
                str(name),
                runs,
                series_of(lambda r, name=name: metrics_of(r).get(name)),
                chart_id="history-metric",
            )
        )
    more = [str(name) for name in names[MAX_METRIC_CHARTS:]]
    listed = ", ".join(more[:20]) + (f" and {len(more) - 20} more" if len(more) > 20 else "")
    note = f"<p>Not charted: {escape(listed)}</p>" if more else ""
    return f"<div class='genius-charts'>{''.join(charts)}</div>{note}"


def window_rate(record: RunRecord) -> tuple[float, bool] | None:
    """(records per second, unbounded?) of a stream task's run, or None when it recorded no window.

    Bounded: ``window_records / duration_seconds``; unbounded: ``records / duration_seconds``.
    """
    if not isinstance(record.window, Mapping):
        return None
    metrics = metrics_of(record)
    seconds: Any = metrics.get("duration_seconds")
    if not is_number(seconds) or seconds <= 0:
        return None
    if is_number(metrics.get("window_records")):
        return metrics["window_records"] / seconds, False
    if is_number(metrics.get("records")) and is_number(metrics.get("windows")):
        return metrics["records"] / seconds, True
    return None


def is_stream(records: Iterable[RunRecord]) -> bool:
    """Whether any of ``records`` recorded a stream window."""
    return any(isinstance(r.window, Mapping) for r in records)


def window_chart(records: Iterable[RunRecord]) -> str:
    """Records per second of each window of a stream task (bars per run, one series per consumer);
    ``""`` when ``records`` hold no stream window."""
    ordered = [r for r in by_creation(unique(records)) if isinstance(r.window, Mapping)]
    if not ordered:
        return ""
    rates = {(r.key.run_id, client_label(r.key)): window_rate(r) for r in ordered}
    runs, labels = _runs_and_series(ordered)
    series = [
        Series(label, [(rates.get((run, label)) or (None, False))[0] for run in runs]) for label in labels
    ]
    unbounded = any(rate and rate[1] for rate in rates.values())
    note = " (unbounded runs: the mean of the run's windows)" if unbounded else ""
    return bar_chart(
        f"Stream window throughput{note}",
        runs,
        series,
        unit="records/s",
        chart_id="stream-windows",
        empty_note="No finished window yet (records per second needs window_records and duration_seconds).",
    )


# ---------------------------------------------------------------------- the report
def _metric_text(value: Any) -> str:
    if is_number(value):
        return f"{value:.6g}" if isinstance(value, float) else str(value)
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = "<not shown>"
    return text if len(text) <= 200 else text[:200] + "…"


def _metrics_cell(record: RunRecord) -> str:
    metrics = metrics_of(record)
    if not metrics:
        return "—"
    items = sorted(metrics.items(), key=lambda item: str(item[0]))
    lines = "".join(f"<li><code>{escape(name)} = {escape(_metric_text(v))}</code></li>" for name, v in items)
    return f"<ul class='metrics'>{lines}</ul>"


def _outcome_cell(record: RunRecord) -> str:
    error = record.error
    if isinstance(error, Mapping):
        return f"<strong>{escape(error.get('type') or 'Error')}</strong>: {escape(str(error.get('message'))[:500])}"
    return escape(_metric_text(error)) if error else ""


def _runs_table(records: Sequence[RunRecord]) -> str:
    headers = ("Run", "Task", "Status", "Try", "Duration (s)", "Updated (UTC)", "Metrics", "Error")
    head = "".join(f"<th scope='col'>{h}</th>" for h in headers)
    rows = []
    for record in records:
        seconds = run_seconds(record)
        try:
            updated = f"{record.updated_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"
        except (AttributeError, ValueError, OverflowError, OSError):
            updated = str(record.updated_at)
        cells = (
            escape(record.key.run_id),
            escape(client_label(record.key)),
            escape(record.status.value),
            escape(record.try_number),
            "—" if seconds is None else f"{seconds:.3f}",
            escape(updated),
            _metrics_cell(record),
            _outcome_cell(record),
        )
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    caption = f"{len(records)} run record(s), oldest first"
    return f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def report_html(records: Sequence[RunRecord], *, dag_id: str, run_id: str | None = None) -> str:
    """The report page of ``records`` (one DAG, or one run of it): benchmark charts per run (the newest
    :data:`MAX_BENCHMARK_RUNS`), per task the history (with two runs or more) and stream windows, then
    the table of every record. Deterministic: the same records give the same text."""
    ordered = by_creation(unique(records))
    runs = list(dict.fromkeys(r.key.run_id for r in ordered))
    tasks = sorted({r.key.task_id for r in ordered})
    sections = []
    benchmark_runs = [
        run for run in reversed(runs) if benchmark_clients(r for r in ordered if r.key.run_id == run)
    ]
    if benchmark_runs:
        parts = [
            f"<h3>Run {escape(run)}</h3>" + benchmark_charts(r for r in ordered if r.key.run_id == run)
            for run in benchmark_runs[:MAX_BENCHMARK_RUNS]
        ]
        sections.append("<section aria-label='Benchmark'><h2>Benchmark</h2>" + "".join(parts) + "</section>")
    task_parts = []
    for task in tasks:
        mine = [r for r in ordered if r.key.task_id == task]
        charts = window_chart(mine) if is_stream(mine) else ""
        if len({r.key.run_id for r in mine}) > 1:
            charts = history_charts(mine) + charts
        if charts:
            task_parts.append(f"<h3>Task {escape(task)}</h3>{charts}")
    if task_parts:
        sections.append(
            "<section aria-label='Tasks'><h2>Tasks across runs</h2>" + "".join(task_parts) + "</section>"
        )
    sections.append(f"<section aria-label='Runs'><h2>Run records</h2>{_runs_table(ordered)}</section>")
    newest = max((instant(r.updated_at) for r in ordered), default=0.0)
    as_of = datetime.fromtimestamp(newest, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    scope = f"DAG {dag_id}" + (f", run {run_id}" if run_id is not None else "")
    title = f"Genius report: {scope}"
    summary = (
        f"<p>{len(ordered)} run record(s) of {len(runs)} run(s) and {len(tasks)} task(s);"
        f" last update {escape(as_of)}.</p>"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_REPORT_STYLE}{CHART_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{summary}{''.join(sections)}</main></body></html>"
    )


def write_report(
    state: StateManager, path: str | os.PathLike[str], *, dag_id: str, run_id: str | None = None
) -> Path:
    """Write the self-contained HTML report (inline CSS and SVG charts, no external resource) of one DAG,
    or of one of its runs when ``run_id`` is given, to ``path``; returns the path written.

    Reads the newest :data:`MAX_RECORDS` records of the DAG from ``state``. The file is replaced
    atomically (written beside it, then renamed); missing parent folders are created. Raises
    :class:`~airflow_genius.core.errors.GeniusError` (one line) for an empty ``dag_id`` / ``run_id``,
    when the store holds no record to report, or when the file cannot be written.
    """
    if not isinstance(dag_id, str) or not dag_id:
        raise GeniusError(f"report: dag_id: expected a non-empty string, got {dag_id!r}")
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise GeniusError(f"report: run_id: expected a non-empty string or None, got {run_id!r}")
    records = state.list_runs(dag_id=dag_id, limit=MAX_RECORDS)
    if run_id is not None:
        records = [r for r in records if r.key.run_id == run_id]
    if not records:
        which = f"DAG {dag_id!r}" + (f" run {run_id!r}" if run_id is not None else "")
        raise GeniusError(f"report: no run records for {which} in {state.store_label()}")
    text = report_html(records, dag_id=dag_id, run_id=run_id)
    target = Path(path)
    try:
        _write_atomically(target, text)
    except OSError as exc:
        raise GeniusError(f"report: cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return target


def _write_atomically(target: Path, text: str) -> None:
    """Write beside ``target`` and rename over it: a reader never sees half a report."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(text)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
