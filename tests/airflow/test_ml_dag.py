"""dags_examples/genius_ml.py in a real ``dag.test()``: ingest → train → evaluate → serve → two benchmark
clients → stop (teardown) → report, on the worker, with a real git model repository."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from airflow_fixtures import RunPython
from genius_dagtest import dag_test

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.core.data.locations import parse_data_uri

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
BENCH_METRICS = {
    "requests",
    "errors",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "throughput_rps",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def test_the_ml_workflow_dag(run_python: RunPython, airflow_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "models.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(repo)], check=True)
    env = {
        **airflow_env,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_EXAMPLE_DATA": str(tmp_path / "data"),
        "GENIUS_EXAMPLE_MODEL_URI": f"git+file://{repo}",
        "GENIUS_EXAMPLE_ML_PORT": str(free_port()),
    }
    result, output = dag_test(run_python, env, EXAMPLES, "genius_ml", {"rows": 800, "requests": 40})
    tis = {
        ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti
        for ti in result["tis"]
    }
    assert result["state"] == "success" and all(ti["state"] == "success" for ti in tis.values()), (
        tis,
        output[-5000:],
    )
    assert tis["ingest"]["xcom"]["rows"] == 800
    assert tis["train"]["xcom"]["version"] == "v000001" and tis["train"]["xcom"]["accuracy"] >= 0.8
    # evaluate loaded the version train saved: the same test split gives the same accuracy
    assert tis["evaluate"]["xcom"]["accuracy"] == tis["train"]["xcom"]["accuracy"]
    assert tis["serve_stop"]["xcom"]["stopped"] == "terminated"
    assert tis["report"]["xcom"]["benchmark_clients"] == 2
    with open_state(env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        served = state.require_run(RunKey("genius_ml", "serve", result["run_id"]))
        clients = [state.require_run(RunKey("genius_ml", "bench", result["run_id"], i)) for i in (0, 1)]
    assert served.status is Status.SUCCESS and "SIGTERM" in served.result["stopped"]
    for client, batch in zip(clients, (1, 8), strict=True):
        assert set(client.metrics) >= BENCH_METRICS
        assert (
            client.metrics["requests"] == 40
            and client.metrics["errors"] == 0
            and client.metrics["batch"] == batch
        )
    report = parse_data_uri(tis["report"]["xcom"]["report"]).path
    assert report is not None and "<svg" in report.read_text()
