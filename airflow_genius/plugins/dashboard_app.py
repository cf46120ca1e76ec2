"""The Genius dashboard as a plain FastAPI app: run records of one or more state stores, as HTML and JSON.

No Airflow here: :mod:`airflow_genius.plugins.dashboard` passes in the stores from ``[genius]`` config,
the Airflow user dependency and the DAG-permission filter. On its own (tests, a quick look at a store)::

    from airflow_genius.core.state import open_state
    from airflow_genius.plugins.dashboard_app import Store, create_app

    app = create_app(lambda: [Store("local", lambda: open_state("sqlite:///.genius/state.db"))])
    # uvicorn.run(app)  ->  /            HTML list, filter with ?dag_id=&task_id=&status=&limit=
    #                        /record      one run key: ?dag_id=&task_id=&run_id=&map_index=
    #                        /api/records and /api/record: the same as JSON

Every store is opened per request and closed after it; a store that fails is reported on the page (and in
the JSON ``stores`` list) without hiding the records of the others.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status
from airflow_genius.core.state.base import utcnow
from airflow_genius.plugins import dashboard_html as html

#: Largest ``limit`` a request may ask for (per store).
MAX_LIMIT = 1000


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
        """Finished: RUNNING → end of the last try. Running: time since it started. Else None."""
        record = self.record
        if record.status.terminal:
            return record.duration_seconds
        if record.status is Status.RUNNING:
            started = next((e.at for e in reversed(record.history) if e.status is Status.RUNNING), None)
            return (utcnow() - started).total_seconds() if started else None
        return None

    def to_dict(self, airflow_url: str) -> dict[str, Any]:
        return {
            **self.record.to_dict(),
            "store": self.store,
            "duration_seconds": self.duration_seconds,
            "airflow_url": airflow_url,
        }


def ti_path(key: RunKey) -> str:
    """The Airflow 3 UI path of a record's task instance (``/mapped/<i>`` for mapped tasks).

    >>> ti_path(RunKey("etl", "count", "manual__2024-05-06T00:00:00+00:00", 3))
    '/dags/etl/runs/manual__2024-05-06T00%3A00%3A00%2B00%3A00/tasks/count/mapped/3'
    """
    path = f"/dags/{quote(key.dag_id, safe='')}/runs/{quote(key.run_id, safe='')}/tasks/{quote(key.task_id, safe='')}"
    return f"{path}/mapped/{key.map_index}" if key.map_index >= 0 else path


def collect(stores: Sequence[Store], filters: Filters) -> tuple[list[Row], list[StoreReport]]:
    """Records of every store matching ``filters``, newest first, at most ``filters.limit``."""
    rows: list[Row] = []
    reports: list[StoreReport] = []
    for store in stores:
        try:
            with store.open() as state:
                found = state.list_runs(
                    dag_id=filters.dag_id, task_id=filters.task_id, status=filters.status, limit=filters.limit
                )
        except Exception as exc:  # one broken store must not hide the others
            reports.append(StoreReport(store.label, error=_short_error(exc)))
            continue
        rows.extend(Row(store.label, record) for record in found)
        reports.append(StoreReport(store.label, count=len(found)))
    rows.sort(key=lambda row: row.record.updated_at, reverse=True)
    return rows[: filters.limit], reports


def find(stores: Sequence[Store], key: RunKey) -> tuple[list[Row], list[StoreReport]]:
    """The record of ``key`` in every store that has one."""
    rows: list[Row] = []
    reports: list[StoreReport] = []
    for store in stores:
        try:
            with store.open() as state:
                record = state.get_run(key)
        except Exception as exc:
            reports.append(StoreReport(store.label, error=_short_error(exc)))
            continue
        if record is not None:
            rows.append(Row(store.label, record))
        reports.append(StoreReport(store.label, count=int(record is not None)))
    return rows, reports


def parse_map_index(text: str) -> int:
    """``map_index`` from a query: an integer, or -1 for an empty or unfilled value.

    The UI's task instance tab leaves ``{MAP_INDEX}`` unreplaced for unmapped tasks:

    >>> parse_map_index("{MAP_INDEX}"), parse_map_index("3"), parse_map_index("")
    (-1, 3, -1)
    """
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else -1


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "…"


UserDependency = Callable[[Request], Awaitable[Any]]
DagFilter = Callable[[Any, set[str]], set[str]]


async def _current_user(request: Request) -> Any:
    """The caller, through the ``user`` dependency given to :func:`create_app` (None without one)."""
    user: UserDependency | None = request.app.state.genius_user
    return await user(request) if user is not None else None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Caller = Annotated[Any, Depends(_current_user)]


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

    app.state.genius_user = user

    def permitted(caller: Any, rows: list[Row]) -> list[Row]:
        if allowed_dags is None:
            return rows
        ok = allowed_dags(caller, {row.record.key.dag_id for row in rows})
        return [row for row in rows if row.record.key.dag_id in ok]

    def airflow_url(key: RunKey) -> str:
        return airflow_base().rstrip("/") + ti_path(key)

    def filters_of(dag_id: str | None, task_id: str | None, status: str | None, limit: int) -> Filters:
        chosen: Status | None = None
        if status:
            try:
                chosen = Status(status.upper())
            except ValueError:
                known = ", ".join(s.value for s in Status)
                raise HTTPException(400, f"unknown status {status!r}; expected one of {known}") from None
        return Filters(dag_id or None, task_id or None, chosen, limit)

    def mount_path(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/", response_class=HTMLResponse)
    def records_html(
        caller: Caller,
        request: Request,
        dag_id: str | None = None,
        task_id: str | None = None,
        status: str | None = None,
        limit: Limit = 100,
    ) -> HTMLResponse:
        filters = filters_of(dag_id, task_id, status, limit)
        rows, reports = collect(stores(), filters)
        text = html.records_page(
            permitted(caller, rows), reports, filters, base=mount_path(request), airflow_url=airflow_url
        )
        return HTMLResponse(text)

    @app.get("/api/records")
    def records_json(
        caller: Caller,
        dag_id: str | None = None,
        task_id: str | None = None,
        status: str | None = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        filters = filters_of(dag_id, task_id, status, limit)
        rows, reports = collect(stores(), filters)
        return {
            "records": [row.to_dict(airflow_url(row.record.key)) for row in permitted(caller, rows)],
            "stores": [report.__dict__ for report in reports],
        }

    def lookup(caller: Any, dag_id: str, task_id: str, run_id: str, map_index: str) -> list[Row]:
        try:
            key = RunKey(dag_id, task_id, run_id, parse_map_index(map_index))
        except Exception as exc:
            raise HTTPException(400, str(exc)) from None
        rows, reports = find(stores(), key)
        rows = permitted(caller, rows)
        if not rows:
            broken = [f"{r.label}: {r.error}" for r in reports if r.error]
            detail = f"no run record for {key}" + (f" (unavailable: {'; '.join(broken)})" if broken else "")
            raise HTTPException(404, detail)
        return rows

    @app.get("/record", response_class=HTMLResponse)
    def record_html(
        caller: Caller,
        request: Request,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: str = "-1",
    ) -> HTMLResponse:
        rows = lookup(caller, dag_id, task_id, run_id, map_index)
        return HTMLResponse(html.record_page(rows, base=mount_path(request), airflow_url=airflow_url))

    @app.get("/api/record")
    def record_json(
        caller: Caller,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: str = "-1",
    ) -> dict[str, Any]:
        rows = lookup(caller, dag_id, task_id, run_id, map_index)
        return {"records": [row.to_dict(airflow_url(row.record.key)) for row in rows]}

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.rstrip("/").endswith(("/api/records", "/api/record")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        link = None
        if exc.status_code == 401 and login_url is not None:
            link = (login_url(request), "Log in to Airflow")
        elif exc.status_code != 401:
            link = (mount_path(request) + "/", "All run records")
        title = {401: "Not logged in", 403: "Forbidden", 404: "Not found"}.get(exc.status_code, "Bad request")
        text = html.message_page(title, str(exc.detail), link=link)
        return HTMLResponse(text, status_code=exc.status_code, headers=exc.headers)

    return app
