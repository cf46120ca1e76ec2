"""The benchmark chart in a real browser: run the ML Geniusfile (dags_examples/ml.genius.yaml, local
runner: a real classifier served on the worker, two benchmark clients calling it), open its DAG run
page's **Genius run** tab and read one chart series per client whose bars hold exactly the numbers in
the client's run record.

Shares the session's Airflow stack and chromium with the other UI tests (``conftest.py``).

    .venv/bin/pytest tests/ui -m ui -s
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_genius.core.charts import number_text
from airflow_genius.core.state import RunKey, open_state
from ui.airflow_stack import AirflowStack

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.ui]

DAG_ID = "genius_ml_geniusfile"  # tests/ui/dags/genius_ui_ml.py
CLIENTS = ("bench[0]", "bench[1]")
RUN_TIMEOUT = 600  # seconds: eight LocalExecutor tasks, slow on a loaded machine
CHARTS = {
    "benchmark-latency": {"p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"},
    "benchmark-throughput": {"throughput": "throughput_rps"},
}


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def test_benchmark_chart_shows_each_clients_measured_numbers(
    stack: AirflowStack, token: str, page: Any, artifacts: Path
) -> None:
    stack.wait_for(lambda: stack.api(f"/api/v2/dags/{DAG_ID}", token), 300, f"DAG {DAG_ID}")
    # the model store the DAG file points the Geniusfile at
    models = Path(stack.env["GENIUS_EXAMPLE_DATA"]) / "models.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(models)], check=True)
    trigger = {"logical_date": None, "conf": {"rows": 400, "requests": 30}}
    run_id = stack.post(f"/api/v2/dags/{DAG_ID}/dagRuns", trigger, token)["dag_run_id"]
    run = stack.wait_for(
        lambda: stack.finished_run(token, DAG_ID, lambda r: r["dag_run_id"] == run_id),
        RUN_TIMEOUT,
        f"the {DAG_ID} run",
    )
    assert run["state"] == "success", stack.logs()
    with open_state(f"sqlite:///{stack.home}/genius/state.db") as state:
        measured = {
            label: state.require_run(RunKey(DAG_ID, "bench", run_id, index)).metrics
            for index, label in enumerate(CLIENTS)
        }
    assert all(metrics["requests"] == 30 and metrics["errors"] == 0 for metrics in measured.values())

    # The DAG run page's "Genius run" tab (the plugin's dag_run view) shows the run's charts.
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
    page.get_by_role("link", name="Genius run").click()
    frame = page.frame_locator("iframe")
    expect(frame.locator("h1")).to_contain_text(f"Run {run_id}")
    for chart_id, bars in CHARTS.items():
        chart = frame.locator(f"figure[data-chart='{chart_id}'] svg")
        expect(chart).to_be_visible()
        expect(chart.locator("g.series")).to_have_count(len(measured))  # one series per client
        for label, metrics in measured.items():
            series = chart.locator(f"g.series[data-series='{label}']")
            expect(series).to_have_count(1)
            marks = series.locator("rect")
            expect(marks).to_have_count(len(bars))
            shown = {
                marks.nth(i).get_attribute("data-category"): marks.nth(i).get_attribute("data-value")
                for i in range(len(bars))
            }
            assert shown == {category: number_text(metrics[name]) for category, name in bars.items()}, label
    frame.locator("figure[data-chart='benchmark-latency']").screenshot(path=artifacts / "benchmark-chart.png")
    page.screenshot(path=artifacts / "benchmark-run-tab.png", full_page=True)
