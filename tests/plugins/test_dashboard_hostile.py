"""The dashboard renders any stored record, refuses bad query parameters with one line, and never shows
a store password (real Redis: the ``redis_url`` fixture).

Hostile records are written with the store's own insert primitive, as a record written before today's
value checks (or by another writer) would be: the dashboard must show them all, escaped, beside the
good ones — one bad record never breaks a view.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_genius.core.state import RunKey, Status, open_state
from airflow_genius.core.state.base import RunRecord, Transition, utcnow
from airflow_genius.plugins.dashboard_app import Store, create_app

pytestmark = pytest.mark.redis

GOOD = RunKey("etl", "fetch", "manual__1")
HOSTILE = RunKey("etl", "count", "manual__1")
SECRET = "hunter2-S3CRET"


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


#: (what the record holds, text the list page shows for it)
HOSTILE_RECORDS = [
    pytest.param({"result": "\ud800"}, "\\ud800", id="lone-surrogate-result"),
    pytest.param({"result": {"k\udc80": ["\udfff"]}}, "k\\udc80", id="surrogate-key"),
    pytest.param({"result": "a\x00b"}, "a\\u0000b", id="nul-result"),
    pytest.param({"error": {"type": "E\x00", "message": "<script>alert(1)</script>\ud800", "traceback": "\x00"}},
                 "&lt;script&gt;alert(1)&lt;/script&gt;\\ud800", id="hostile-error"),
    pytest.param({"error": ["not", "a", "mapping"]}, "&quot;mapping&quot;", id="error-not-a-mapping"),
    pytest.param({"metrics": {"loss": float("nan"), "big": float("inf"), "\ud800": 1}}, "loss = &quot;nan&quot;",
                 id="non-finite-metrics"),
    pytest.param({"result": "x" * 2_000_000}, "(2000002 chars)", id="huge-result"),
    pytest.param({"result": deep(200)}, "nested deeper than 64 levels", id="deep-result"),
    pytest.param({"window": {"checkpoint": "</td></tr></table><h1>x"}}, "&lt;/td&gt;&lt;/tr&gt;", id="html-window"),
    pytest.param({"history": "hostile-history"}, "m\\ud800 &lt;b&gt;", id="hostile-history"),
    pytest.param({"metrics": {f"m{i}": i for i in range(5000)}}, "… and 4980 more", id="many-metrics"),
]  # fmt: skip


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[str]:
    """A Redis state URI with a prefix of its own; its keys are deleted afterwards."""
    import redis

    prefix = f"tdash{uuid.uuid4().hex[:10]}"
    yield f"{redis_url}?prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def write(uri: str, key: RunKey, **fields: Any) -> None:
    """Store a record as given (the store's insert primitive: no value policy in between)."""
    now = utcnow()
    history = (Transition(Status.RUNNING, now, 1), Transition(Status.SUCCESS, now, 1))
    if fields.pop("history", None):
        history = (*history, Transition(Status.SUCCESS, now, 1, host="h\x00st", message="m\ud800 <b>"))
    status = Status.FAILED if fields.get("error") else Status.SUCCESS
    record = RunRecord(key, status, 1, history, now, now, **fields)
    with open_state(uri) as state:
        assert state._insert(record)  # type: ignore[attr-defined]


def snapshot(uri: str) -> dict[str, Any]:
    """Every record of the store as JSON text (to prove bad requests change nothing)."""
    with open_state(uri) as state:
        return {str(r.key): json.dumps(r.to_dict(), sort_keys=True) for r in state.list_runs(limit=100)}


def client_for(uri: str, *extra: Store) -> TestClient:
    return TestClient(create_app(lambda: [Store("redis", lambda: open_state(uri)), *extra]))


@pytest.mark.parametrize(("fields", "shown"), HOSTILE_RECORDS)
def test_every_view_renders_a_hostile_record_beside_the_good_ones(
    redis_store: str, fields: dict[str, Any], shown: str
) -> None:
    with open_state(redis_store) as state:
        state.start_run(GOOD, try_number=1)
        state.finish_run(GOOD, Status.SUCCESS, try_number=1, result={"rows": 7})
    write(redis_store, HOSTILE, **fields)
    before = snapshot(redis_store)
    client = client_for(redis_store)

    page = client.get("/")
    assert page.status_code == 200
    assert GOOD.task_id in page.text and HOSTILE.task_id in page.text and "rows" in page.text
    assert shown in page.text
    assert "<script>" not in page.text.split("<script>\ndocument", 1)[0]  # only the page's own script
    page.content.decode("utf-8")  # valid UTF-8 whatever was stored

    listing = client.get("/api/records")
    assert listing.status_code == 200
    records = {r["task_id"]: r for r in json.loads(listing.text)["records"]}
    assert set(records) == {"fetch", "count"} and records["fetch"]["result"] == {"rows": 7}
    if fields.get("result") == "\ud800":  # ensure_ascii JSON keeps the stored value exactly
        assert records["count"]["result"] == "\ud800"

    query = {"dag_id": HOSTILE.dag_id, "task_id": HOSTILE.task_id, "run_id": HOSTILE.run_id}
    assert client.get("/record", params=query).status_code == 200
    for view, params in (("/run", {"dag_id": "etl", "run_id": "manual__1"}), ("/task", query)):
        charted = client.get(view, params=params)  # the charts of a run and of a task take any record
        assert charted.status_code == 200 and HOSTILE.task_id in charted.text, view
        assert "cannot be drawn" not in charted.text
        charted.content.decode("utf-8")
    one = client.get("/api/record", params=query)
    assert one.status_code == 200 and json.loads(one.text)["records"][0]["task_id"] == "count"
    assert snapshot(redis_store) == before  # the views only read


def test_a_record_that_cannot_be_shown_is_named_in_its_row(redis_store: str) -> None:
    write(redis_store, HOSTILE, result=1)
    write(redis_store, GOOD, result=2)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    def opener() -> Any:
        state = open_state(redis_store)
        real = state.list_runs

        def list_runs(**kwargs: Any) -> list[RunRecord]:
            found = real(**kwargs)
            return [replace(r, result=Unprintable()) if r.key == HOSTILE else r for r in found]

        state.list_runs = list_runs  # type: ignore[method-assign]
        return state

    client = TestClient(create_app(lambda: [Store("redis", opener)]))
    page = client.get("/")
    assert page.status_code == 200
    assert "this record cannot be shown (RuntimeError: no text)" in page.text and GOOD.task_id in page.text
    records = client.get("/api/records").json()["records"]
    assert {r["task_id"]: r.get("display_error") for r in records} == {
        "fetch": None,
        "count": "RuntimeError: no text",
    }


BAD_PARAMETERS = [
    pytest.param("/", {"status": "LOST"}, "status: unknown status", id="status-unknown"),
    pytest.param("/api/records", {"status": "\x00"}, "status: unknown status", id="status-nul"),
    pytest.param("/", {"limit": "0"}, "limit: expected an integer from 1 to 1000", id="limit-zero"),
    pytest.param("/api/records", {"limit": "-5"}, "limit: expected an integer", id="limit-negative"),
    pytest.param("/api/records", {"limit": "1001"}, "limit: expected an integer", id="limit-too-big"),
    pytest.param("/", {"limit": "ten"}, "limit: expected an integer", id="limit-text"),
    pytest.param("/api/records", {"limit": "1e3"}, "limit: expected an integer", id="limit-float"),
    pytest.param("/api/records", {"limit": "9" * 400}, "limit: expected an integer", id="limit-huge"),
    pytest.param("/", {"dag_id": "a\x00b"}, "dag_id: expected at most 250 characters", id="dag-nul"),
    pytest.param("/api/records", {"dag_id": "d" * 251}, "dag_id: expected at most 250", id="dag-too-long"),
    pytest.param("/api/records", {"task_id": "a\nb"}, "task_id: expected at most 250", id="task-newline"),
    pytest.param("/record", {"task_id": "t", "run_id": "r"}, "dag_id: required", id="record-no-dag"),
    pytest.param("/api/record", {"dag_id": "d", "task_id": "t"}, "run_id: required", id="record-no-run"),
    pytest.param("/api/record", {"dag_id": "d", "task_id": "t", "run_id": "r\x1b[2J"}, "run_id: expected",
                 id="run-escape-sequence"),
    pytest.param("/record", {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": "abc"},
                 "map_index: expected an integer from -1", id="map-index-text"),
    pytest.param("/api/record", {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": "-2"},
                 "map_index: expected an integer from -1", id="map-index-negative"),
    pytest.param("/api/record", {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": str(2**31)},
                 "map_index: expected an integer from -1", id="map-index-huge"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "params", "expected"), BAD_PARAMETERS)
def test_bad_query_parameters_are_one_line_400s(
    redis_store: str, path: str, params: dict[str, str], expected: str
) -> None:
    write(redis_store, GOOD, result={"rows": 7})
    before = snapshot(redis_store)
    answer = client_for(redis_store).get(path, params=params)
    assert answer.status_code == 400
    if path.startswith("/api/"):
        detail = answer.json()["detail"]
    else:
        detail = answer.text.split("<h1>Bad request</h1><p>", 1)[1].split("</p>", 1)[0]
    assert detail.startswith(expected), detail
    assert "\n" not in detail and len(detail) < 300
    assert snapshot(redis_store) == before


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param(f"redis://:{SECRET}@127.0.0.1:6379/15", id="userinfo"),
        pytest.param(f"redis://127.0.0.1:6379/15?password={SECRET}", id="password"),
        pytest.param(f"redis://127.0.0.1:6379/15?prefix=x&AUTH_TOKEN={SECRET}", id="token"),
    ],
)
def test_a_configured_uri_with_a_password_is_refused_and_never_shown(
    redis_store: str, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_genius.plugins import dashboard

    options = {"dashboard_state_uris": f"{redis_store}, {uri}", "dashboard_state_conn_ids": ""}
    monkeypatch.setattr(dashboard, "_option", lambda name: options.get(name, ""))
    write(redis_store, GOOD, result={"rows": 7})
    client = TestClient(create_app(dashboard.configured_stores))
    for answer in (client.get("/"), client.get("/api/records")):
        assert answer.status_code == 200 and SECRET not in answer.text
    stores = client.get("/api/records").json()
    assert [r["task_id"] for r in stores["records"]] == [GOOD.task_id]
    (refused,) = [s for s in stores["stores"] if s["error"]]
    assert "***" in refused["label"]
    assert refused["error"].startswith("StateError: [genius] dashboard_state_uris must not embed a password")
    assert "GENIUS_STATE_PASSWORD" in refused["error"]
