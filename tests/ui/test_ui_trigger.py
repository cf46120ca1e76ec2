"""The Airflow 3 UI in a real browser: trigger the example DAG through its Params form, then read the run
records in the Genius dashboard (SQLite and Redis stores), its task instance tab and its extra link.

One stack (api-server, scheduler, dag-processor; LocalExecutor) and one headless chromium per session.
Screenshots land in ``.genius/artifacts/ui/<time>/`` (the path is printed; ``pytest -s`` shows it).

    .venv/bin/pytest tests/ui -m ui -s
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_genius.core.state import RunKey, Status, open_state
from ui.airflow_stack import AirflowStack

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.ui, pytest.mark.redis]

DAG_ID = "genius_batch_pipeline"
LINK_DAG_ID = "genius_ui_record_link"
RUN_TIMEOUT = 600  # seconds for a DAG run: two LocalExecutor tasks, slow on a loaded machine
#: The dashboard's page in the Airflow UI. Airflow mirrors the iframe's location into the page URL, so
#: ``/plugin/genius`` becomes ``/plugin/genius/genius/`` (plus the filter's query) once the dashboard
#: has loaded in the frame; the URL is either, depending on how fast the frame was.
DASHBOARD_URL = re.compile(r"/plugin/genius(/genius/?)?(\?.*)?$")


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture(scope="module")
def redis_record(redis_store: str) -> RunKey:
    """A FAILED record with metrics and a stream window, written straight into the Redis store."""
    key = RunKey("genius_redis_probe", "window_bolt", f"scheduled__{uuid.uuid4().hex[:8]}")
    with open_state(redis_store) as state:
        state.start_run(key, try_number=1)
        state.update_run(key, window={"start_id": "1-0", "end_id": "9-0", "max_records": 50})
        error = {"type": "KeyError", "message": "missing field 'text'", "traceback": "Traceback (probe)"}
        state.finish_run(key, Status.FAILED, try_number=1, error=error, metrics={"consumed": 42})
    return key


def _ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}"


def _rest_ti(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"


@pytest.fixture(scope="module")
def triggered_run(page: Any, stack: AirflowStack, token: str, artifacts: Path) -> dict[str, Any]:
    """genius_batch_pipeline triggered from its UI form with count=7, finished."""
    # the stack only waits for the API: the DAG page has a Trigger button once the DAG is parsed
    stack.wait_for(lambda: stack.api(f"/api/v2/dags/{DAG_ID}", token), 300, f"DAG {DAG_ID}")
    page.goto(f"{stack.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("count").fill("7")
    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog).to_be_hidden()
    run = stack.wait_for(
        lambda: stack.finished_run(token, DAG_ID, lambda r: (r.get("conf") or {}).get("count") == 7),
        RUN_TIMEOUT,
        f"the {DAG_ID} run triggered from the form",
    )
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'], safe='')}")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=artifacts / "triggered-run.png")
    assert run["state"] == "success", f"run {run['dag_run_id']} ended {run['state']}\n{stack.logs()}"
    return run


def test_form_param_reaches_the_task(
    triggered_run: dict[str, Any], stack: AirflowStack, token: str, page: Any, artifacts: Path
) -> None:
    run_id = triggered_run["dag_run_id"]
    assert triggered_run["conf"] == {"count": 7, "top": 5}
    assert triggered_run["run_type"] == "manual"
    xcom = stack.api(f"{_rest_ti(DAG_ID, run_id, 'fetch')}/xcomEntries/return_value", token)
    assert xcom is not None and xcom["value"]["records"] == 7, xcom

    # The task instance page's "Genius record" tab (the plugin's external view) shows the record.
    page.goto(stack.url + _ti_path(DAG_ID, run_id, "fetch"))
    page.get_by_role("link", name="Genius record").click()
    frame = page.frame_locator("iframe")
    expect(frame.locator("h1")).to_contain_text(f"{DAG_ID}.fetch@{run_id}")
    expect(frame.get_by_text('"records": 7').first).to_be_visible()
    expect(frame.locator("dd .status").first).to_have_text("✓ SUCCESS")
    page.screenshot(path=artifacts / "task-instance-record-tab.png")


def test_dashboard_lists_sqlite_and_redis_records(
    triggered_run: dict[str, Any],
    redis_record: RunKey,
    redis_store: str,
    stack: AirflowStack,
    token: str,
    page: Any,
    artifacts: Path,
) -> None:
    run_id = triggered_run["dag_run_id"]
    # The plugin's menu entry: Browse → Genius opens the dashboard inside the Airflow UI.
    page.goto(f"{stack.url}/dags")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Genius").click()
    expect(page).to_have_url(DASHBOARD_URL)
    frame = page.frame_locator("iframe")
    expect(frame.locator("h1")).to_have_text("Genius run records")
    table = frame.locator("table")
    fetch_row = table.locator("tr", has_text=f"{DAG_ID} · fetch")
    expect(fetch_row).to_contain_text(run_id)
    expect(fetch_row).to_contain_text("✓ SUCCESS")
    expect(fetch_row).to_contain_text("records = 7")
    redis_row = table.locator("tr", has_text=redis_record.run_id)
    expect(redis_row).to_contain_text("✗ FAILED")
    expect(redis_row).to_contain_text("KeyError")
    expect(redis_row).to_contain_text("consumed = 42")
    expect(redis_row).to_contain_text('"end_id": "9-0"')
    stores = frame.get_by_role("list", name="State stores")
    expect(stores).to_contain_text(f"sqlite:///{stack.home}/genius/state.db: ")
    expect(stores).to_contain_text(f"{redis_store}: 1 record(s)")
    expect(stores).not_to_contain_text("unavailable")
    page.screenshot(path=artifacts / "dashboard.png", full_page=True)

    # Filter by status through the form: only the Redis record failed.
    frame.get_by_label("Status").select_option("FAILED")
    frame.get_by_role("button", name="Filter").click()
    expect(frame.locator("caption")).to_contain_text("1 record(s)")
    expect(table.locator("tbody tr")).to_contain_text(redis_record.run_id)

    # The link to the task instance leaves the iframe for the Airflow page.
    page.goto(f"{stack.url}/plugin/genius")
    fetch_row.get_by_role("link", name="task instance in Airflow").click()
    page.wait_for_url(lambda url: f"/dags/{DAG_ID}/runs/" in url and url.endswith("/tasks/fetch"))

    # JSON endpoint with a REST token; anonymous callers are refused.
    body = stack.api(f"/genius/api/records?dag_id={DAG_ID}", token)
    assert {r["task_id"]: r["result"]["records"] for r in body["records"]} == {"fetch": 7, "count": 7}
    assert all(report["error"] is None for report in body["stores"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.url}/genius/api/records", timeout=10)
    assert refused.value.code == 401


def test_record_extra_link_opens_the_record(
    stack: AirflowStack, token: str, page: Any, artifacts: Path
) -> None:
    stack.wait_for(lambda: stack.api(f"/api/v2/dags/{LINK_DAG_ID}", token), 300, f"DAG {LINK_DAG_ID}")
    started = stack.post(f"/api/v2/dags/{LINK_DAG_ID}/dagRuns", {"logical_date": None}, token)
    run_id = started["dag_run_id"]
    run = stack.wait_for(
        lambda: stack.finished_run(token, LINK_DAG_ID, lambda r: r["dag_run_id"] == run_id),
        RUN_TIMEOUT,
        f"the {LINK_DAG_ID} run",
    )
    assert run["state"] == "success", stack.logs()
    links = stack.api(f"{_rest_ti(LINK_DAG_ID, run_id, 'probe')}/links", token)
    url = links["extra_links"]["Genius record"]
    assert url.startswith(f"{stack.url}/genius/record?dag_id={LINK_DAG_ID}&task_id=probe"), url
    page.goto(url)
    expect(page.locator("h1")).to_have_text(f"{LINK_DAG_ID}.probe@{run_id}")
    expect(page.get_by_text('"records": 3').first).to_be_visible()
    page.screenshot(path=artifacts / "record-extra-link.png", full_page=True)
    assert links["extra_links"]["Genius output"].startswith("file://")
