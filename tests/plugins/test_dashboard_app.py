"""The dashboard app on its own (no Airflow): real SQLite stores, FastAPI's TestClient.

Proves: records of several stores are merged newest first with status, history, duration, metrics,
window, error and the Airflow task instance link; filters by DAG/task/status; a broken store is reported
without hiding the others; everything from a record is HTML-escaped; the JSON endpoints; the record page
(also with the UI tab's unreplaced ``{MAP_INDEX}``); authentication and per-DAG permissions hooks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from airflow_genius.core.state import RunKey, Status, open_state
from airflow_genius.plugins.dashboard_app import Store, create_app

DONE = RunKey("etl", "fetch", "manual__2024-05-06T00:00:00+00:00")
BROKEN = RunKey("etl", "count", "manual__2024-05-06T00:00:00+00:00")
MAPPED = RunKey("other", "score", "scheduled__1", 2)
STREAM = RunKey("stream", "window", "scheduled__2")


@pytest.fixture
def stores(tmp_path: Path) -> list[Store]:
    """Two SQLite stores with four records between them, and one store that cannot be opened."""
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    with open_state(first) as state:
        state.start_run(DONE, try_number=1)
        state.finish_run(DONE, Status.SUCCESS, try_number=1, result={"records": 7}, metrics={"rows": 7})
        state.start_run(BROKEN, try_number=1)
        error = {"type": "ValueError", "message": "<script>alert(1)</script>", "traceback": "Traceback: boom"}
        state.finish_run(BROKEN, Status.FAILED, try_number=1, error=error)
    with open_state(second) as state:
        state.start_run(MAPPED, try_number=2)
        state.queue_run(STREAM, try_number=1)
        state.update_run(STREAM, window={"start": 10, "end": 20, "checkpoint": "1-0"})

    def broken() -> None:
        raise ConnectionError("store is down")

    return [
        Store("first", lambda: open_state(first)),
        Store("second", lambda: open_state(second)),
        Store("broken", broken),  # type: ignore[arg-type]
    ]


def mounted(app: FastAPI) -> TestClient:
    """The app under /genius, as the plugin mounts it on Airflow's API server."""
    root = FastAPI()
    root.mount("/genius", app)
    return TestClient(root)


def test_list_page_shows_every_store_and_record_safely(stores: list[Store]) -> None:
    client = mounted(create_app(lambda: stores, airflow_base=lambda: "/airflow"))
    page = client.get("/genius/")
    assert page.status_code == 200
    text = page.text
    for key in (DONE, BROKEN, MAPPED, STREAM):
        assert key.run_id in text
    assert "✓ SUCCESS" in text and "✗ FAILED" in text and "▶ RUNNING" in text and "… QUEUED" in text
    assert "rows = 7" in text and "&quot;checkpoint&quot;: &quot;1-0&quot;" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "broken: unavailable (ConnectionError: store is down)" in text
    assert "first: 2 record(s)" in text and "second: 2 record(s)" in text
    assert "<abbr title='second'>S2</abbr>" in text
    assert "/airflow/dags/etl/runs/manual__2024-05-06T00%3A00%3A00%2B00%3A00/tasks/fetch'" in text
    assert "/airflow/dags/other/runs/scheduled__1/tasks/score/mapped/2'" in text
    assert "href='/genius/record?dag_id=etl&amp;task_id=fetch" in text
    assert "<caption>4 record(s)" in text


def test_filters_by_dag_task_and_status(stores: list[Store]) -> None:
    client = mounted(create_app(lambda: stores))
    failed = client.get("/genius/api/records", params={"status": "failed"}).json()["records"]
    assert [(r["task_id"], r["status"]) for r in failed] == [("count", "FAILED")]
    etl = client.get("/genius/api/records", params={"dag_id": "etl", "task_id": "fetch"}).json()
    assert [r["run_id"] for r in etl["records"]] == [DONE.run_id]
    assert client.get("/genius/", params={"dag_id": "other"}).text.count("<tr><td>") == 1
    bad = client.get("/genius/", params={"status": "LOST"})
    assert bad.status_code == 400 and "unknown status" in bad.text
    assert client.get("/genius/api/records", params={"limit": 0}).status_code == 400
    limited = client.get("/genius/api/records", params={"limit": 1}).json()["records"]
    assert len(limited) == 1 and limited[0]["run_id"] == STREAM.run_id  # the newest update


def test_json_records_carry_duration_link_and_store_reports(stores: list[Store]) -> None:
    client = mounted(create_app(lambda: stores))
    body = client.get("/genius/api/records").json()
    by_task = {r["task_id"]: r for r in body["records"]}
    assert by_task["fetch"]["result"] == {"records": 7} and by_task["fetch"]["store"] == "first"
    assert by_task["fetch"]["duration_seconds"] >= 0
    assert by_task["score"]["duration_seconds"] >= 0  # running: time since it started
    assert by_task["window"]["duration_seconds"] is None and by_task["window"]["window"]["end"] == 20
    assert by_task["score"]["airflow_url"] == "/dags/other/runs/scheduled__1/tasks/score/mapped/2"
    assert [h["status"] for h in by_task["count"]["history"]] == ["QUEUED", "RUNNING", "FAILED"]
    assert {s["label"]: s["error"] for s in body["stores"]} == {
        "first": None,
        "second": None,
        "broken": "ConnectionError: store is down",
    }


def test_record_page_and_json(stores: list[Store]) -> None:
    client = mounted(create_app(lambda: stores))
    query = {"dag_id": "etl", "task_id": "count", "run_id": BROKEN.run_id, "map_index": "{MAP_INDEX}"}
    page = client.get("/genius/record", params=query)
    assert page.status_code == 200
    assert "Traceback: boom" in page.text and "<details open>" in page.text
    one = client.get("/genius/api/record", params={**query, "map_index": -1}).json()["records"]
    assert one[0]["error"]["type"] == "ValueError"
    mapped = client.get(
        "/genius/api/record",
        params={"dag_id": "other", "task_id": "score", "run_id": "scheduled__1", "map_index": 2},
    )
    assert mapped.json()["records"][0]["try_number"] == 2
    missing = client.get("/genius/record", params={**query, "run_id": "nope"})
    assert missing.status_code == 404 and "broken: ConnectionError" in missing.text
    assert client.get("/genius/api/record", params={**query, "run_id": "nope"}).status_code == 404


def test_authentication_and_dag_permissions(stores: list[Store]) -> None:
    async def user(request: Request) -> str:
        name = request.headers.get("x-user")
        if not name:
            raise HTTPException(401, "Not authenticated")
        return name

    app = create_app(
        lambda: stores,
        user=user,
        allowed_dags=lambda caller, dag_ids: dag_ids if caller == "admin" else dag_ids & {"etl"},
        login_url=lambda request: "/auth/login?next=x",
    )
    client = mounted(app)
    anonymous = client.get("/genius/")
    assert anonymous.status_code == 401 and "href='/auth/login?next=x'" in anonymous.text
    assert client.get("/genius/api/records").json() == {"detail": "Not authenticated"}
    viewer = client.get("/genius/api/records", headers={"x-user": "viewer"}).json()["records"]
    assert {r["dag_id"] for r in viewer} == {"etl"}
    admin = client.get("/genius/api/records", headers={"x-user": "admin"}).json()["records"]
    assert {r["dag_id"] for r in admin} == {"etl", "other", "stream"}
    hidden = {"dag_id": "other", "task_id": "score", "run_id": "scheduled__1", "map_index": 2}
    assert client.get("/genius/api/record", params=hidden, headers={"x-user": "viewer"}).status_code == 404
