"""The dashboard plugin inside Airflow's real API app (no browser, no server: FastAPI's TestClient in a
child process with a fresh AIRFLOW_HOME).

Proves: the plugin loads from the plugins folder with its FastAPI app at /genius and its two UI entries;
the app is mounted on Airflow's API app; anonymous callers get 401, a JWT (header or the UI's cookie)
gets records; stores come from ``[genius] dashboard_state_conn_ids`` (a genius_sqlite connection) and
``dashboard_state_uris``, and an unreachable store is reported; the "Genius record" link's URL.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

PROBE = textwrap.dedent(
    """
    import json, sys, types
    from fastapi.testclient import TestClient
    from airflow import plugins_manager
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow_genius.core.state import RunKey, Status, open_state
    from airflow_genius.links.record import GeniusRecordLink

    for uri, dag_id in ((sys.argv[1], "dash_uri"), (sys.argv[2], "dash_conn")):
        with open_state(uri) as state:
            key = RunKey(dag_id, "t", "manual__1")
            state.start_run(key, try_number=1)
            state.finish_run(key, Status.SUCCESS, try_number=1, result={"store": dag_id})
    out = {"plugins": [p for p in plugins_manager.get_plugin_info() if p["name"] == "genius_dashboard"]}
    client = TestClient(create_app())
    out["anonymous"] = client.get("/genius/api/records").status_code
    out["anonymous_html"] = client.get("/genius/").status_code
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    out["records"] = client.get("/genius/api/records", headers={"Authorization": f"Bearer {token}"}).json()
    client.cookies.set("_token", token)
    page = client.get("/genius/record", params={"dag_id": "dash_conn", "task_id": "t", "run_id": "manual__1"})
    out["record_page"] = [page.status_code, "dash_conn.t@manual__1" in page.text]
    ti_key = types.SimpleNamespace(dag_id="d", task_id="t", run_id="manual__1 x", map_index=3)
    out["link"] = GeniusRecordLink().get_link(None, ti_key=ti_key)
    from airflow_genius.links.record import DASHBOARD_PREFIX
    from airflow_genius.plugins.dashboard import URL_PREFIX
    out["same_prefix"] = DASHBOARD_PREFIX == URL_PREFIX
    print("PROBE " + json.dumps(out, default=str))
    """
)


def test_plugin_serves_records_of_configured_stores_to_logged_in_users(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "genius_dashboard.py").write_text(
        "from airflow_genius.plugins.dashboard import GeniusDashboardPlugin  # noqa: F401\n"
    )
    by_uri, by_conn = f"sqlite:///{tmp_path}/uri.db", tmp_path / "conn.db"
    env = {
        **airflow_env,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__API__BASE_URL": "http://airflow.example:8080/",
        "AIRFLOW_CONN_GENIUS_DASH": json.dumps(
            {"conn_type": "genius_sqlite", "extra": {"path": str(by_conn)}}
        ),
        "AIRFLOW__GENIUS__DASHBOARD_STATE_CONN_IDS": "genius_dash",
        # port 1 on loopback refuses connections: an unreachable store must be reported, not fatal
        "AIRFLOW__GENIUS__DASHBOARD_STATE_URIS": f"{by_uri}\nredis://127.0.0.1:1/0",
        # ... once its fault budget is spent: a short one, so the test does not wait out the 60 s default
        "GENIUS_STATE_FAULT_BUDGET": "1",
    }
    done = run_python(PROBE, env, args=[by_uri, f"sqlite:///{by_conn}"])
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-4000:]
    out = json.loads(line.removeprefix("PROBE "))

    (plugin,) = out["plugins"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/genius"
    assert {view["url_route"]: view["destination"] for view in plugin["external_views"]} == {
        "genius": "nav",
        "genius_record": "task_instance",
        "genius_run": "dag_run",
        "genius_task": "task",
    }
    assert out["anonymous"] == 401 and out["anonymous_html"] == 401
    records = out["records"]
    assert {r["dag_id"]: r["store"] for r in records["records"]} == {
        "dash_uri": by_uri,
        "dash_conn": "connection genius_dash",
    }
    assert records["records"][0]["airflow_url"].startswith("/dags/")
    stores = {s["label"]: s for s in records["stores"]}
    assert stores["connection genius_dash"]["count"] == 1 and stores[by_uri]["count"] == 1
    assert "Connection refused" in stores["redis://127.0.0.1:1/0"]["error"]
    assert out["record_page"] == [200, True]
    assert out["same_prefix"]
    assert out["link"] == (
        "http://airflow.example:8080/genius/record?dag_id=d&task_id=t&run_id=manual__1+x&map_index=3"
    )
