"""The Genius dashboard as a plain FastAPI app: run records of one or more state stores, as HTML and JSON.

No Airflow here: :mod:`airflow_genius.plugins.dashboard` passes in the stores from ``[genius]`` config,
the Airflow user dependency and the DAG-permission filter. On its own (tests, a quick look at a store)::

    from airflow_genius.core.state import open_state
    from airflow_genius.plugins.dashboard_app import Store, create_app

    app = create_app(lambda: [Store("local", lambda: open_state("sqlite:///.genius/state.db"))])
    # uvicorn.run(app)  ->  /            HTML list, filter with ?dag_id=&task_id=&status=&limit=
    #                        /record      one run key: ?dag_id=&task_id=&run_id=&map_index=
    #                        /run         one DAG run, with its benchmark charts: ?dag_id=&run_id=
    #                        /task        one task across runs, with its charts: ?dag_id=&task_id=&limit=
    #                        /api/records and /api/record: the same as JSON

Every store is opened per request and closed after it; a store that fails is reported on the page (and in
the JSON ``stores`` list) without hiding the records of the others. Any record a store returns is shown
(lone surrogates, NUL, NaN, huge or deep values: see :mod:`.dashboard_html`); a record that still cannot
be shown is named in place of its row. Query parameters are checked: a bad one is HTTP 400 with one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from airflow_genius.core.report import instant
from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status
from airflow_genius.core.state.base import utcnow
from airflow_genius.plugins import dashboard_html as html

#: Largest ``limit`` a request may ask for (per store), and the default.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: Longest dag, task or run id a request may name (Airflow's own limit).
MAX_ID_CHARS = 250
#: Largest map index a request may name (Airflow stores it as a 32-bit integer).
MAX_MAP_INDEX = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Store:
    """A state store the dashboard reads: a label (never a password) and how to open it."""

    label: str
    open: Callable[[], StateManager]


@dataclass(frozen=True)
class StoreReport:
    """How reading one store went: records found or the error (type and message)."""

    label: str
    count: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Filters:
    """Query filters of the list views."""

    dag_id: str | None = None
    task_id: str | None = None
    status: Status | None = None
    limit: int = 100

    def query(self) -> str:
        """The filters as a query string (for links between the HTML and JSON views)."""
        pairs = {"dag_id": self.dag_id, "task_id": self.task_id, "limit": self.limit}
        pairs["status"] = self.status.value if self.status else None
        return urlencode({k: v for k, v in pairs.items() if v})


@dataclass(frozen=True)
class Row:
    """One record as found in one store."""

    store: str
    record: RunRecord

    @property
    def duration_seconds(self) -> float | None:
        """Finished: RUNNING → end of the last try. Running: time since it started. Else None (also
        when the stored times cannot be compared)."""
        record = self.record
        try:
            if record.status.terminal:
                return record.duration_seconds
            if record.status is Status.RUNNING:
                started = next((e.at for e in reversed(record.history) if e.status is Status.RUNNING), None)
                return (utcnow() - started).total_seconds() if started else None
        except (TypeError, ValueError, OverflowError):  # naive and aware times mixed, out of range
            return None
        return None

    def to_dict(self, airflow_url: str) -> dict[str, Any]:
        """The record as plain JSON (:func:`~.dashboard_html.displayable`); a record that cannot be
        converted keeps its key, its store and a ``display_error``."""
        try:
            data = {
                **self.record.to_dict(),
                "store": self.store,
                "duration_seconds": self.duration_seconds,
                "airflow_url": airflow_url,
            }
            return dict(html.displayable(data))
        except Exception as exc:  # one record that cannot be shown must not take the answer down
            key = self.record.key
            return {
                "dag_id": key.dag_id,
                "task_id": key.task_id,
                "run_id": key.run_id,
                "map_index": key.map_index,
                "store": self.store,
                "display_error": _short_error(exc),
            }


def ti_path(key: RunKey) -> str:
    """The Airflow 3 UI path of a record's task instance (``/mapped/<i>`` for mapped tasks).

    >>> ti_path(RunKey("etl", "count", "manual__2024-05-06T00:00:00+00:00", 3))
    '/dags/etl/runs/manual__2024-05-06T00%3A00%3A00%2B00%3A00/tasks/count/mapped/3'
    """
    dag, task, run = (quote(part, safe="", errors="backslashreplace") for part in key.parts()[:3])
    path = f"/dags/{dag}/runs/{run}/tasks/{task}"
    return f"{path}/mapped/{key.map_index}" if key.map_index >= 0 else path


def collect(stores: Sequence[Store], filters: Filters) -> tuple[list[Row], list[StoreReport]]:
    """Records of every store matching ``filters``, newest first, at most ``filters.limit``."""
    rows, reports = _read_each(
        stores,
        lambda state: state.list_runs(
            dag_id=filters.dag_id, task_id=filters.task_id, status=filters.status, limit=filters.limit
        ),
    )
    rows.sort(key=lambda row: instant(row.record.updated_at), reverse=True)
    return rows[: filters.limit], reports


def find(stores: Sequence[Store], key: RunKey) -> tuple[list[Row], list[StoreReport]]:
    """The record of ``key`` in every store that has one."""

    def read(state: StateManager) -> list[RunRecord]:
        record = state.get_run(key)
        return [] if record is None else [record]

    return _read_each(stores, read)


def _read_each(
    stores: Sequence[Store], read: Callable[[StateManager], Sequence[RunRecord]]
) -> tuple[list[Row], list[StoreReport]]:
    """``read`` in every store, each opened and closed here; a store that fails is reported in its
    :class:`StoreReport` and the others still answer."""
    rows: list[Row] = []
    reports: list[StoreReport] = []
    for store in stores:
        try:
            with store.open() as state:
                found = read(state)
        except Exception as exc:  # one broken store must not hide the others
            reports.append(StoreReport(store.label, error=_short_error(exc)))
            continue
        rows.extend(Row(store.label, record) for record in found)
        reports.append(StoreReport(store.label, count=len(found)))
    return rows, reports


def bad_parameter(name: str, problem: str, got: str) -> HTTPException:
    """HTTP 400 with one line: ``<name>: <problem>, got <value>`` (the value cut and escaped)."""
    shown = repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return HTTPException(400, f"{name}: {problem}, got {shown}")


def parse_map_index(text: str | None) -> int:
    """``map_index`` from a query: an integer from -1, or -1 for an empty or unfilled value.

    The UI's task instance tab leaves ``{MAP_INDEX}`` unreplaced for unmapped tasks:

    >>> parse_map_index("{MAP_INDEX}"), parse_map_index("3"), parse_map_index("")
    (-1, 3, -1)
    >>> parse_map_index("x")
    Traceback (most recent call last):
    ...
    fastapi.exceptions.HTTPException: 400: map_index: expected an integer from -1 to 2147483647, got 'x'
    """
    value = (text or "").strip()
    if value in ("", "{MAP_INDEX}"):
        return -1
    if not re.fullmatch(r"-?[0-9]{1,10}", value) or not -1 <= int(value) <= MAX_MAP_INDEX:
        raise bad_parameter("map_index", f"expected an integer from -1 to {MAX_MAP_INDEX}", str(text))
    return int(value)


def parse_limit(text: str | None) -> int:
    """``limit`` from a query: an integer from 1 to :data:`MAX_LIMIT` (empty: :data:`DEFAULT_LIMIT`)."""
    value = (text or "").strip()
    if not value:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,7}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise bad_parameter("limit", f"expected an integer from 1 to {MAX_LIMIT}", str(text))
    return int(value)


def parse_status(text: str | None) -> Status | None:
    """``status`` from a query: a status name in any case (empty: any status)."""
    if not text:
        return None
    try:
        return Status(text.strip().upper())
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise bad_parameter("status", f"unknown status; expected one of {known}", text) from None


def parse_id(name: str, text: str | None, *, required: bool = False) -> str | None:
    """A dag, task or run id from a query: at most :data:`MAX_ID_CHARS` characters, no control
    characters (empty: no filter, or HTTP 400 when ``required``)."""
    if not text:
        if required:
            raise HTTPException(400, f"{name}: required")
        return None
    if len(text) > MAX_ID_CHARS or _CONTROL.search(text):
        raise bad_parameter(name, f"expected at most {MAX_ID_CHARS} characters, no control characters", text)
    return text


def not_found(what: str, reports: Sequence[StoreReport]) -> HTTPException:
    """HTTP 404 saying what is missing, and which stores could not be read."""
    broken = [f"{r.label}: {r.error}" for r in reports if r.error]
    return HTTPException(404, what + (f" (unavailable: {'; '.join(broken)})" if broken else ""))


def _short_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most about 300 characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:300] + "…"


class SafeJSONResponse(JSONResponse):
    """JSON that any stored value survives: ASCII only (a lone surrogate is written ``\\ud800``, which
    JSON allows), the content made plain by :func:`~.dashboard_html.displayable` first."""

    def render(self, content: Any) -> bytes:
        return json.dumps(html.displayable(content), ensure_ascii=True, allow_nan=False).encode("ascii")


def html_response(
    text: str, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """An HTML answer that always encodes (the pages escape everything; this is the last guard)."""
    return HTMLResponse(text.encode("utf-8", "backslashreplace"), status_code=status_code, headers=headers)


UserDependency = Callable[[Request], Awaitable[Any]]
DagFilter = Callable[[Any, set[str]], set[str]]


@dataclass(frozen=True)
class Dashboard:
    """What :func:`create_app` was given; the routes read it from ``request.app.state.genius``."""

    stores: Callable[[], Sequence[Store]]
    user: UserDependency | None = None
    allowed_dags: DagFilter | None = None
    airflow_base: Callable[[], str] = lambda: ""
    login_url: Callable[[Request], str] | None = None

    def permitted(self, caller: Any, rows: list[Row]) -> list[Row]:
        """The rows of DAGs whose task instances ``caller`` may read."""
        if self.allowed_dags is None:
            return rows
        ok = self.allowed_dags(caller, {row.record.key.dag_id for row in rows})
        return [row for row in rows if row.record.key.dag_id in ok]

    def airflow_url(self, key: RunKey) -> str:
        """The Airflow UI page of a record's task instance."""
        return self.airflow_base().rstrip("/") + ti_path(key)

    def records(self, caller: Any, filters: Filters) -> tuple[list[Row], list[StoreReport]]:
        """:func:`collect` over the stores, keeping the rows ``caller`` may read."""
        rows, reports = collect(self.stores(), filters)
        return self.permitted(caller, rows), reports

    def lookup(self, caller: Any, key: RunKey) -> list[Row]:
        """The records of ``key`` that ``caller`` may read; HTTP 404 when there is none."""
        rows, reports = find(self.stores(), key)
        rows = self.permitted(caller, rows)
        if not rows:
            raise not_found(f"no run record for {key}", reports)
        return rows


def _dashboard(request: Request) -> Dashboard:
    board: Dashboard = request.app.state.genius
    return board


async def _current_user(request: Request) -> Any:
    """The caller, through the ``user`` dependency given to :func:`create_app` (None without one)."""
    user = _dashboard(request).user
    return await user(request) if user is not None else None


def _list_filters(
    dag_id: str | None = None, task_id: str | None = None, status: str | None = None, limit: str | None = None
) -> Filters:
    """The filters of the list views, from their query parameters."""
    return Filters(
        parse_id("dag_id", dag_id), parse_id("task_id", task_id), parse_status(status), parse_limit(limit)
    )


def _record_key(
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    map_index: str | None = None,
) -> RunKey:
    """The run key of the record views, from their query parameters."""
    return RunKey(
        str(parse_id("dag_id", dag_id, required=True)),
        str(parse_id("task_id", task_id, required=True)),
        str(parse_id("run_id", run_id, required=True)),
        parse_map_index(map_index),
    )


def _mount_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


# The caller comes first in every route: an anonymous request is 401 before its parameters are checked.
Caller = Annotated[Any, Depends(_current_user)]
Board = Annotated[Dashboard, Depends(_dashboard)]
ListFilters = Annotated[Filters, Depends(_list_filters)]
RecordKey = Annotated[RunKey, Depends(_record_key)]

routes = APIRouter()


@routes.get("/", response_class=HTMLResponse)
def records_html(caller: Caller, board: Board, request: Request, filters: ListFilters) -> HTMLResponse:
    """The records matching the filters, newest first."""
    rows, reports = board.records(caller, filters)
    text = html.records_page(rows, reports, filters, base=_mount_path(request), airflow_url=board.airflow_url)
    return html_response(text)


@routes.get("/api/records")
def records_json(caller: Caller, board: Board, filters: ListFilters) -> Response:
    """The records matching the filters as JSON, with how each store answered."""
    rows, reports = board.records(caller, filters)
    return SafeJSONResponse(
        {
            "records": [row.to_dict(board.airflow_url(row.record.key)) for row in rows],
            "stores": [report.__dict__ for report in reports],
        }
    )


@routes.get("/record", response_class=HTMLResponse)
def record_html(caller: Caller, board: Board, request: Request, key: RecordKey) -> HTMLResponse:
    """One run record (from every store that has it)."""
    rows = board.lookup(caller, key)
    return html_response(html.record_page(rows, base=_mount_path(request), airflow_url=board.airflow_url))


@routes.get("/api/record")
def record_json(caller: Caller, board: Board, key: RecordKey) -> Response:
    """One run record as JSON."""
    rows = board.lookup(caller, key)
    return SafeJSONResponse({"records": [row.to_dict(board.airflow_url(row.record.key)) for row in rows]})


@routes.get("/run", response_class=HTMLResponse)
def run_html(
    caller: Caller, board: Board, request: Request, dag_id: str | None = None, run_id: str | None = None
) -> HTMLResponse:
    """The records of one DAG run, with its benchmark charts."""
    dag = str(parse_id("dag_id", dag_id, required=True))
    run = str(parse_id("run_id", run_id, required=True))
    rows, reports = board.records(caller, Filters(dag_id=dag, limit=MAX_LIMIT))
    rows = [row for row in rows if row.record.key.run_id == run]
    if not rows:
        raise not_found(f"no run records for run {run!r} of DAG {dag!r}", reports)
    text = html.run_page(
        rows, reports, dag_id=dag, run_id=run, base=_mount_path(request), airflow_url=board.airflow_url
    )
    return html_response(text)


@routes.get("/task", response_class=HTMLResponse)
def task_html(
    caller: Caller,
    board: Board,
    request: Request,
    dag_id: str | None = None,
    task_id: str | None = None,
    limit: str | None = None,
) -> HTMLResponse:
    """The records of one task across runs, with its history and stream window charts."""
    dag = str(parse_id("dag_id", dag_id, required=True))
    task = str(parse_id("task_id", task_id, required=True))
    rows, reports = board.records(caller, Filters(dag_id=dag, task_id=task, limit=parse_limit(limit)))
    if not rows:
        raise not_found(f"no run records for task {task!r} of DAG {dag!r}", reports)
    text = html.task_page(
        rows, reports, dag_id=dag, task_id=task, base=_mount_path(request), airflow_url=board.airflow_url
    )
    return html_response(text)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """An HTTP error as JSON under ``/api``, else as a page with a way on (log in, or the list)."""
    if request.url.path.rstrip("/").endswith(("/api/records", "/api/record")):
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    login_url = _dashboard(request).login_url
    link = None
    if exc.status_code == 401 and login_url is not None:
        link = (login_url(request), "Log in to Airflow")
    elif exc.status_code != 401:
        link = (_mount_path(request) + "/", "All run records")
    title = {401: "Not logged in", 403: "Forbidden", 404: "Not found"}.get(exc.status_code, "Bad request")
    text = html.message_page(title, str(exc.detail), link=link)
    return html_response(text, status_code=exc.status_code, headers=exc.headers)


async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A request FastAPI itself refused: HTTP 400, one line."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return await http_error(request, HTTPException(400, f"{where}: {first.get('msg', 'invalid')}"))


def create_app(
    stores: Callable[[], Sequence[Store]],
    *,
    user: UserDependency | None = None,
    allowed_dags: DagFilter | None = None,
    airflow_base: Callable[[], str] = lambda: "",
    login_url: Callable[[Request], str] | None = None,
) -> FastAPI:
    """The dashboard app.

    :param stores: called per request: the stores to read (config may change without a restart).
    :param user: async FastAPI dependency returning the caller (raise ``HTTPException(401)`` when
        anonymous); ``None``: no authentication (tests, a local look).
    :param allowed_dags: ``(user, dag_ids) -> permitted dag_ids``; records of other DAGs are hidden.
    :param airflow_base: prefix of Airflow UI links (``""``: same origin, ``/airflow`` behind a proxy).
    :param login_url: where an anonymous browser should log in (``request`` → URL) for 401 pages.
    """
    app = FastAPI(
        title="Genius dashboard",
        description="Run records of airflow-genius state stores.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.genius = Dashboard(stores, user, allowed_dags, airflow_base, login_url)
    app.include_router(routes)
    app.exception_handler(HTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    return app
