"""Server-rendered HTML of the Genius dashboard: small, dependency-free and accessible.

Every value that comes from a run record is escaped (task code controls results, errors and metrics)
and made printable: control characters and lone surrogates are written as escapes (``\\x00``,
``\\ud800``), values nested deeper than :data:`MAX_DEPTH` are cut, and a record that still cannot be shown
becomes one row saying so — it never takes the page down. Pages: the list (:func:`records_page`), one
record (:func:`record_page`), one DAG run with its benchmark charts (:func:`run_page`) and one task
across runs with its history and stream window charts (:func:`task_page`); the charts are inline SVG
from :mod:`airflow_genius.core.report`, and a chart that cannot be drawn becomes a note.
A GET form filters, ``<details>`` folds history and tracebacks, status is written as text (colour only
repeats it), tables have captions and header scopes, and the page follows the browser's light/dark
preference. The one script: inside the Airflow UI the page sits in a sandboxed iframe that may not
navigate the top window, so links to Airflow pages (``data-airflow``) are handed to the UI's router
(same origin, ``history.pushState`` + ``popstate``); outside a frame they are ordinary links.

>>> from airflow_genius.plugins.dashboard_html import fmt_duration
>>> fmt_duration(3725.5)
'1 h 2 min 5 s'
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow_genius.core import report
from airflow_genius.core.charts import CHART_STYLE, escape
from airflow_genius.core.state import Status

if TYPE_CHECKING:
    from airflow_genius.plugins.dashboard_app import Filters, Row, StoreReport

#: Longest JSON shown inline in the table (the record page and the JSON endpoint show more).
INLINE_JSON_CHARS = 300
#: Longest JSON or traceback shown on a record page.
DETAIL_CHARS = 20_000
#: Deepest nesting of lists/dicts shown (stored values are at most 64 deep); deeper parts become a note.
MAX_DEPTH = 64
#: Metrics and history entries shown per record in the list (the record page shows up to ``DETAIL_ITEMS``).
INLINE_ITEMS = 20
DETAIL_ITEMS = 1000
#: Larger integers are shown as a note: ``str()`` refuses integers of more than 4,300 digits.
_MAX_INT_BITS = 14_000

_STYLE = """
:root { color-scheme: light dark; --fg:#1b1f24; --bg:#fff; --muted:#57606a; --line:#d0d7de;
  --ok:#116329; --bad:#a40e26; --run:#0550ae; --wait:#7d4e00; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6edf3; --bg:#0d1117; --muted:#9da7b3;
  --line:#30363d; --ok:#56d364; --bad:#ff7b72; --run:#79c0ff; --wait:#e3b341; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 .75rem; } h2 { font-size: 1.05rem; }
form { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: 1rem; }
label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, select, button { font: inherit; padding: .25rem .4rem; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; color: var(--muted); padding-bottom: .4rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left; vertical-align: top; }
td:nth-child(9) { min-width: 12rem; }
th { font-size: .8rem; text-transform: uppercase; color: var(--muted); }
code, pre { font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; }
.status { font-weight: 600; } .SUCCESS { color: var(--ok); } .FAILED, .CANCELLED { color: var(--bad); }
.RUNNING { color: var(--run); } .QUEUED { color: var(--wait); }
.stores { color: var(--muted); margin: .5rem 0 1rem; padding-left: 1.2rem; }
.store-error { color: var(--bad); }
a:focus, button:focus, summary:focus, input:focus, select:focus { outline: 2px solid var(--run); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { color: var(--muted); }
"""

_SCRIPT = """
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a[data-airflow]") : null;
  if (!link || window.top === window || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  try {
    var top = window.top;
    if (top.location.origin !== window.location.origin) { return; }
    event.preventDefault();
    top.history.pushState({}, "", link.getAttribute("href"));
    top.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
  } catch (error) { /* not allowed: the link stays in the frame */ }
});
"""

_MARK = {
    Status.SUCCESS: "✓",
    Status.FAILED: "✗",
    Status.CANCELLED: "⊘",
    Status.RUNNING: "▶",
    Status.QUEUED: "…",
}


def displayable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON that any encoder takes: NaN/Infinity and huge integers as text, mapping
    keys as text, other objects as their ``str()``, nesting cut at :data:`MAX_DEPTH`. Strings are kept as
    they are (lone surrogates included): :func:`escape` them for HTML, ``ensure_ascii`` them for JSON.

    >>> displayable({"loss": float("nan"), 1: [[["deep"]]]}, depth=MAX_DEPTH - 2)
    {'loss': 'nan', '1': ['<nested deeper than 64 levels>']}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _MAX_INT_BITS else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_DEPTH:
            return f"<nested deeper than {MAX_DEPTH} levels>"
        if isinstance(value, Mapping):
            return {str(key): displayable(item, depth + 1) for key, item in value.items()}
        return [displayable(item, depth + 1) for item in value]
    return str(value)


def page(title: str, body: str, *, status_code_note: str = "") -> str:
    """A whole HTML document around ``body`` (already escaped)."""
    note = f"<p role='alert'>{escape(status_code_note)}</p>" if status_code_note else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}{CHART_STYLE}</style></head>"
        f"<body><main>{note}{body}</main><script>{_SCRIPT}</script></body></html>"
    )


def airflow_link(href: str, text: str) -> str:
    """A link to an Airflow UI page that also works from inside the UI's plugin iframe."""
    return f"<a href='{escape(href)}' target='_top' data-airflow>{escape(text)}</a>"


def fmt_time(moment: datetime | None) -> str:
    """``<time>`` in UTC, or an em dash."""
    if moment is None:
        return "—"
    utc = moment.astimezone(timezone.utc)
    return f"<time datetime='{escape(utc.isoformat())}'>{utc:%Y-%m-%d %H:%M:%S} UTC</time>"


def fmt_duration(seconds: float | None) -> str:
    """Human duration: ``0.42 s``, ``12.3 s``, ``3 min 4 s``, ``1 h 2 min 5 s``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ([f"{hours} h"] if hours else []) + [f"{minutes} min", f"{secs} s"]
    return " ".join(parts)


def fmt_json(value: Any, limit: int = INLINE_JSON_CHARS) -> str:
    """Compact JSON of ``value`` in ``<code>``, cut at ``limit`` characters (escaped)."""
    if value is None or value == {} or value == []:
        return "—"
    text = json.dumps(displayable(value), ensure_ascii=False, sort_keys=True)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text)} chars)"
    return f"<code>{escape(text)}</code>"


def fmt_metrics(metrics: Any, limit: int = 80, *, items: int = INLINE_ITEMS) -> str:
    """Metrics as ``name = value`` lines (each value cut at ``limit`` characters, at most ``items``)."""
    if not metrics:
        return "—"
    if not isinstance(metrics, Mapping):
        return fmt_json(metrics, limit)
    shown = displayable(dict(sorted(metrics.items(), key=lambda item: str(item[0]))[:items]))

    def value_text(value: Any) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= limit else text[:limit] + "…"

    lines = "".join(
        f"<li><code>{escape(name)} = {escape(value_text(value))}</code></li>" for name, value in shown.items()
    )
    more = f"<li>… and {len(metrics) - items} more</li>" if len(metrics) > items else ""
    return f"<ul style='margin:0;padding-left:1rem'>{lines}{more}</ul>"


def fmt_status(status: Status) -> str:
    return f"<span class='status {status.value}'>{_MARK[status]} {status.value}</span>"


def fmt_error(error: Any, *, limit: int = INLINE_JSON_CHARS) -> str:
    """``Type: message`` with the traceback folded in ``<details>``."""
    if not error:
        return "—"
    if not isinstance(error, Mapping):  # not what genius writes: show it as it is
        return fmt_json(error, limit)
    kind = escape(str(error.get("type") or "Error"))
    message = str(error.get("message") or "")
    message = message if len(message) <= limit else message[:limit] + "…"
    text = f"<strong>{kind}</strong>: {escape(message)}"
    traceback = error.get("traceback")
    if traceback:
        trace = str(traceback)[-DETAIL_CHARS:]
        text += f"<details><summary>traceback</summary><pre>{escape(trace)}</pre></details>"
    return text


def fmt_history(row: Row, *, items: int = INLINE_ITEMS, open_: bool = False) -> str:
    """The append-only history, folded: ``N transitions`` (the last ``items`` of them listed)."""
    history = row.record.history
    start = max(len(history) - items, 0)
    entries = "".join(
        f"<li>{fmt_status(entry.status)} {fmt_time(entry.at)} · try {escape(entry.try_number)}"
        + (f" · {escape(entry.host)}" if entry.host else "")
        + (f" · {escape(entry.message)}" if entry.message else "")
        + "</li>"
        for entry in history[start:]
    )
    earlier = f"<p>… {start} earlier transition(s) not shown</p>" if start else ""
    label = f"{len(history)} transition{'s' if len(history) != 1 else ''}"
    details = "<details open>" if open_ else "<details>"
    return f"{details}<summary>{label}</summary>{earlier}<ol start='{start + 1}'>{entries}</ol></details>"


def _filter_form(filters: Filters, action: str) -> str:
    options = "".join(
        f"<option value='{s.value}'{' selected' if filters.status is s else ''}>{s.value}</option>"
        for s in Status
    )
    return (
        f"<form method='get' action='{escape(action)}' aria-label='Filter run records'>"
        f"<label>DAG<input name='dag_id' value='{escape(filters.dag_id or '')}'></label>"
        f"<label>Task<input name='task_id' value='{escape(filters.task_id or '')}'></label>"
        "<label>Status<select name='status'>"
        f"<option value=''>any</option>{options}</select></label>"
        f"<label>Limit<input name='limit' type='number' min='1' max='1000' value='{filters.limit}'></label>"
        "<button type='submit'>Filter</button></form>"
    )


def _stores_list(stores: Sequence[StoreReport], codes: dict[str, str]) -> str:
    items = []
    for store in stores:
        code = f"<strong>{codes[store.label]}</strong> "
        if store.error:
            items.append(
                f"<li class='store-error'>{code}{escape(store.label)}: unavailable ({escape(store.error)})</li>"
            )
        else:
            items.append(f"<li>{code}{escape(store.label)}: {store.count} record(s)</li>")
    return f"<ul class='stores' aria-label='State stores'>{''.join(items)}</ul>"


def store_codes(stores: Sequence[StoreReport]) -> dict[str, str]:
    """Short names of the stores for the table (``S1``, ``S2`` … in configuration order)."""
    return {store.label: f"S{index}" for index, store in enumerate(stores, start=1)}


def record_href(base: str, row: Row) -> str:
    """Dashboard URL of one record (``base`` is the dashboard's mount path)."""
    key = row.record.key
    query = urlencode(
        {"dag_id": key.dag_id, "task_id": key.task_id, "run_id": key.run_id, "map_index": key.map_index},
        errors="backslashreplace",
    )
    return f"{base}/record?{query}"


def records_page(
    rows: Sequence[Row],
    stores: Sequence[StoreReport],
    filters: Filters,
    *,
    base: str,
    airflow_url: Any,
) -> str:
    """The list page: filter form, store summary, one table row per run record.

    ``airflow_url(key)`` gives the Airflow UI link of a record's task instance.
    """
    codes = store_codes(stores)
    caption = (
        f"{len(rows)} record(s), most recently updated first"
        f" (JSON: <a href='{escape(base)}/api/records?{escape(filters.query())}'>api/records</a>)"
    )
    body = (
        "<h1>Genius run records</h1>"
        f"{_filter_form(filters, base + '/')}"
        f"{_stores_list(stores, codes)}"
        f"{records_table(rows, codes, caption, base=base, airflow_url=airflow_url)}"
    )
    return page("Genius run records", body)


def records_table(
    rows: Sequence[Row], codes: Mapping[str, str], caption: str, *, base: str, airflow_url: Any
) -> str:
    """The table of run records (``caption`` is HTML, already escaped)."""
    body_rows = "".join(
        _table_row(row, code=codes.get(row.store, "?"), base=base, airflow_url=airflow_url) for row in rows
    )
    if not rows:
        body_rows = "<tr><td colspan='11'>No run records match.</td></tr>"
    headers = (
        "Store",
        "DAG · task",
        "Run",
        "Status",
        "Try",
        "Updated",
        "Duration",
        "History",
        "Metrics",
        "Window / checkpoint",
        "Error · result",
    )
    head = "".join(f"<th scope='col'>{h}</th>" for h in headers)
    return (
        f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{body_rows}</tbody></table>"
    )


def run_href(base: str, dag_id: str, run_id: str) -> str:
    """Dashboard URL of one DAG run's page."""
    query = urlencode({"dag_id": dag_id, "run_id": run_id}, errors="backslashreplace")
    return f"{base}/run?{query}"


def task_href(base: str, dag_id: str, task_id: str) -> str:
    """Dashboard URL of one task's page (its runs across DAG runs)."""
    query = urlencode({"dag_id": dag_id, "task_id": task_id}, errors="backslashreplace")
    return f"{base}/task?{query}"


def _charts_section(label: str, charts: str) -> str:
    """A titled section of charts (empty when there is no chart)."""
    if not charts:
        return ""
    return f"<section aria-label='{escape(label)}'><h2>{escape(label)}</h2>{charts}</section>"


def _chart_or_note(draw: Any, rows: Sequence[Row]) -> str:
    """``draw(records)``; a failure becomes a note (one odd record must not take the page down)."""
    try:
        return str(draw([row.record for row in rows]))
    except Exception as exc:
        return f"<p>The chart cannot be drawn ({escape(type(exc).__name__)}: {escape(str(exc)[:200])})</p>"


def run_page(
    rows: Sequence[Row],
    stores: Sequence[StoreReport],
    *,
    dag_id: str,
    run_id: str,
    base: str,
    airflow_url: Any,
) -> str:
    """One DAG run: the benchmark charts when it has clients (records with ``latency_p50_ms``), then
    its records (every store)."""
    codes = store_codes(stores)
    benchmark = _chart_or_note(report.benchmark_charts, rows)
    caption = f"{len(rows)} record(s) of this run, most recently updated first"
    body = (
        f"<p><a href='{escape(base)}/'>← all run records</a></p>"
        f"<h1>Run {escape(run_id)} · {escape(dag_id)}</h1>"
        f"{_stores_list(stores, codes)}"
        f"{_charts_section('Benchmark', benchmark)}"
        f"{records_table(rows, codes, caption, base=base, airflow_url=airflow_url)}"
    )
    return page(f"Genius run {dag_id} {run_id}", body)


def task_page(
    rows: Sequence[Row],
    stores: Sequence[StoreReport],
    *,
    dag_id: str,
    task_id: str,
    base: str,
    airflow_url: Any,
) -> str:
    """One task across its recent runs: duration and numeric metrics as lines, the stream windows'
    throughput for a stream task, then its records."""
    codes = store_codes(stores)
    history = _chart_or_note(report.history_charts, rows)
    windows = ""
    if report.is_stream(row.record for row in rows):
        windows = _chart_or_note(report.window_chart, rows)
    caption = f"{len(rows)} record(s) of this task, most recently updated first"
    body = (
        f"<p><a href='{escape(base)}/'>← all run records</a></p>"
        f"<h1>Task {escape(task_id)} · {escape(dag_id)}</h1>"
        f"{_stores_list(stores, codes)}"
        f"{_charts_section('Across runs', history)}"
        f"{_charts_section('Stream windows', windows)}"
        f"{records_table(rows, codes, caption, base=base, airflow_url=airflow_url)}"
    )
    return page(f"Genius task {dag_id} {task_id}", body)


def _table_row(row: Row, *, code: str, base: str, airflow_url: Any) -> str:
    try:
        cells = _table_cells(row, code=code, base=base, airflow_url=airflow_url)
    except Exception as exc:  # one record that cannot be shown must not take the page down
        return f"<tr><td>{code}</td><td colspan='10'>{escape(row.record.key)}: {unshowable(exc)}</td></tr>"
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _table_cells(row: Row, *, code: str, base: str, airflow_url: Any) -> tuple[str, ...]:
    record = row.record
    key = record.key
    mapped = f" [{key.map_index}]" if key.map_index >= 0 else ""
    outcome = fmt_error(record.error) if record.error else fmt_json(record.result)
    cells = (
        f"<abbr title='{escape(row.store)}'>{code}</abbr>",
        f"{escape(key.dag_id)} · {escape(key.task_id)}{mapped}"
        f"<br><a href='{escape(task_href(base, key.dag_id, key.task_id))}'>task across runs</a>",
        f"<a href='{escape(record_href(base, row))}'>{escape(key.run_id)}</a>"
        f"<br><a href='{escape(run_href(base, key.dag_id, key.run_id))}'>whole run</a>"
        f"<br>{airflow_link(airflow_url(key), 'task instance in Airflow')}",
        fmt_status(record.status),
        str(record.try_number),
        fmt_time(record.updated_at),
        fmt_duration(row.duration_seconds),
        fmt_history(row),
        fmt_metrics(record.metrics),
        fmt_json(record.window),
        outcome,
    )
    return cells


def record_page(rows: Sequence[Row], *, base: str, airflow_url: Any) -> str:
    """One run key's record(s) in full (several stores may hold the same key)."""
    sections = "".join(_record_section(row, airflow_url=airflow_url) for row in rows)
    key = rows[0].record.key
    title = str(key)
    links = (
        f"<p><a href='{escape(base)}/'>← all run records</a>"
        f" · <a href='{escape(run_href(base, key.dag_id, key.run_id))}'>this DAG run</a>"
        f" · <a href='{escape(task_href(base, key.dag_id, key.task_id))}'>this task across runs</a></p>"
    )
    body = f"{links}<h1>{escape(title)}</h1>{sections}"
    return page(f"Genius record {title}", body)


def _record_section(row: Row, *, airflow_url: Any) -> str:
    heading = f"<section aria-label='{escape(row.store)}'><h2>{escape(row.store)}</h2>"
    try:
        items = _record_items(row, airflow_url=airflow_url)
    except Exception as exc:  # one record that cannot be shown must not take the page down
        return f"{heading}<p>{unshowable(exc)}</p></section>"
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in items)
    return f"{heading}<dl>{rows}</dl></section>"


def _record_items(row: Row, *, airflow_url: Any) -> list[tuple[str, str]]:
    record = row.record
    items: Iterable[tuple[str, str]] = (
        ("Store", escape(row.store)),
        ("Status", fmt_status(record.status)),
        ("Try", str(record.try_number)),
        ("Airflow", airflow_link(airflow_url(record.key), "task instance")),
        ("Created", fmt_time(record.created_at)),
        ("Updated", fmt_time(record.updated_at)),
        ("Heartbeat", fmt_time(record.heartbeat_at)),
        ("Duration", fmt_duration(row.duration_seconds)),
        ("Metrics", fmt_metrics(record.metrics, DETAIL_CHARS, items=DETAIL_ITEMS)),
        ("Window / checkpoint", fmt_json(record.window, DETAIL_CHARS)),
        ("Result", fmt_json(record.result, DETAIL_CHARS)),
        ("Error", fmt_error(record.error, limit=DETAIL_CHARS)),
        ("Info", fmt_json(record.info, DETAIL_CHARS)),
        ("History", fmt_history(row, items=DETAIL_ITEMS, open_=True)),
    )
    return list(items)


def message_page(title: str, message: str, *, link: tuple[str, str] | None = None) -> str:
    """A short page for 401/404/400 answers (``link`` = (href, text))."""
    extra = f"<p><a href='{escape(link[0])}' target='_top'>{escape(link[1])}</a></p>" if link else ""
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>{extra}")


def unshowable(exc: BaseException) -> str:
    """Escaped note for a record that cannot be shown (the type and the start of the error)."""
    return f"this record cannot be shown ({escape(type(exc).__name__)}: {escape(str(exc)[:200])})"
