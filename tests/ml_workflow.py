"""The ML Geniusfile (dags_examples/ml.genius.yaml) on one runner: the same file with only its
``defaults.runner`` line changed, one real ``dag.test()``, and the same checks for every runner.

In a test (child processes have tests/ on PYTHONPATH)::

    folder = geniusfile_on("docker", tmp_path / "dags")          # the copy and its loader DAG file
    result, output = run_ml_workflow(run_python, {**env, **ml_env(data, model_uri, port)}, folder)
    check_ml_run(result, output, state_uri=..., model_uri=..., cache=tmp_path / "cache")

The run: ingest (:data:`ROWS` rows) → train (a new model version) → evaluate that version → the service
``serve`` → two benchmark clients ``bench[0]``/``bench[1]`` (:data:`REQUESTS` requests each) → report,
and the teardown ``serve_stop``.
"""

from __future__ import annotations

import difflib
import re
import shutil
import socket
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GENIUSFILE = ROOT / "dags_examples" / "ml.genius.yaml"
#: The DAG file that exposes the Geniusfiles of its folder (copied beside the copy of the Geniusfile).
LOADER = ROOT / "dags_examples" / "genius_geniusfiles.py"
DAG_ID = "genius_ml_geniusfile"
#: Small runs: the whole suite's time matters more than the model's accuracy (still well above chance).
ROWS = 400
REQUESTS = 50
CLIENTS = ("bench[0]", "bench[1]")
TASKS = {"ingest", "train", "evaluate", "serve", *CLIENTS, "serve_stop", "report"}
BENCH_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps")
#: Four topics: chance is 0.25; the generated sentences are far easier than that.
MIN_ACCURACY = 0.7
#: The one line a user changes (under ``defaults:``).
_RUNNER_LINE = re.compile(r"^(\s+runner:\s*)local\b", re.MULTILINE)


def free_port() -> int:
    """A TCP port free on this host now (the service listens on the host's ports on every runner here)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def geniusfile_on(runner: str, folder: Path) -> Path:
    """Copy the ML Geniusfile into ``folder`` with ``defaults.runner`` set to ``runner`` — that line and
    nothing else changed (asserted) — beside a copy of the loader DAG file; returns ``folder``."""
    from airflow_genius.core.geniusfile import parse_geniusfile

    original = GENIUSFILE.read_text()
    text = _RUNNER_LINE.sub(lambda match: match.group(1) + runner, original, count=1)
    changed = [
        line
        for line in difflib.unified_diff(original.splitlines(), text.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(changed) == (0 if runner == "local" else 2), changed  # one line out, one line in
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml.genius.yaml").write_text(text)
    shutil.copyfile(LOADER, folder / f"{DAG_ID}.py")
    # the line is the one every step follows (no step names a runner of its own)
    parsed = parse_geniusfile(text, env={})
    assert parsed.defaults.runner == runner and {t.runner for t in parsed.tasks} == {runner}
    return folder


def ml_env(data_root: str, model_uri: str, port: int) -> dict[str, str]:
    """The variables of the Geniusfile that every run sets: data root, model store, service port."""
    return {
        "GENIUS_EXAMPLE_DATA": data_root,
        "GENIUS_EXAMPLE_MODEL_URI": model_uri,
        "GENIUS_EXAMPLE_ML_PORT": str(port),
    }


def run_ml_workflow(
    run_python: Any, env: dict[str, str], folder: Path, *, timeout: float = 900
) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of the copied Geniusfile's DAG with :data:`ROWS` and :data:`REQUESTS`."""
    from genius_dagtest import dag_test

    conf = {"rows": ROWS, "requests": REQUESTS}
    return dag_test(run_python, env, folder, DAG_ID, conf, timeout=timeout)  # type: ignore[no-any-return]


def check_ml_run(result: dict[str, Any], output: str, *, state_uri: str, model_uri: str, cache: Path) -> None:
    """Every task succeeded; train saved a real model version with a real accuracy; evaluate loaded that
    version; the service was ready and the teardown stopped it (SUCCESS); each client measured
    latencies without errors; the report's committed output holds ``report.html`` with one chart
    series per client, showing the clients' own numbers."""
    from genius_samples.bench import ChartMarks

    from airflow_genius.core import Status, open_state
    from airflow_genius.core.charts import number_text
    from airflow_genius.core.data import BatchInput
    from airflow_genius.core.models import open_model_manager

    states = {
        ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti["state"]
        for ti in result["tis"]
    }
    assert result["state"] == "success" and states == dict.fromkeys(TASKS, "success"), (
        states,
        output[-8000:],
    )
    run_id = result["run_id"]
    with open_state(state_uri) as state:
        records = {
            r.key.task_id if r.key.map_index < 0 else f"{r.key.task_id}[{r.key.map_index}]": r
            for r in state.list_runs(dag_id=DAG_ID, limit=100)
            if r.key.run_id == run_id
        }
    assert set(records) == TASKS - {"serve_stop"}, sorted(records)  # the stop task runs no genius task
    assert all(r.status is Status.SUCCESS for r in records.values()), {
        k: (r.status, r.error) for k, r in records.items()
    }

    train, evaluate, serve = records["train"], records["evaluate"], records["serve"]
    version = train.metrics["model_version"]
    assert re.fullmatch(r"v\d{6}", version) and train.result["version"] == version, train.result
    assert MIN_ACCURACY <= train.metrics["accuracy"] <= 1.0, train.metrics
    assert train.metrics["train_rows"] + train.metrics["test_rows"] == ROWS
    with open_model_manager(model_uri) as models:
        saved = {v.version: v for v in models.list_versions("classifier")}
    assert saved[version].metadata["accuracy"] == train.metrics["accuracy"], saved
    # evaluate loaded the version this run's train saved: its model.json names that run, and the same
    # test split gives the same accuracy
    assert evaluate.result["trained_by"] == {"dag_id": DAG_ID, "task_id": "train", "run_id": run_id}
    assert evaluate.metrics["accuracy"] == train.metrics["accuracy"]

    assert serve.result["ready"] is True and "SIGTERM" in serve.result["stopped"], serve.result
    assert serve.info["service"]["ready_at"], serve.info

    clients = {key: r.metrics for key, r in records.items() if "latency_p50_ms" in r.metrics}
    assert set(clients) == set(CLIENTS)
    for metrics in clients.values():
        assert all(metrics[name] > 0 for name in BENCH_METRICS), metrics
        assert metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"]
        assert metrics["requests"] == REQUESTS and metrics["errors"] == 0, metrics

    report = records["report"]
    assert report.metrics["benchmark_clients"] == len(CLIENTS)
    committed = BatchInput(report.metrics["output_location"], cache_dir=cache, committed_only=True)
    page = committed.read_text("report.html")
    marks = ChartMarks.of(page)
    # one series per client in each chart; its p50 bar and its throughput bar show the client's numbers
    for chart, category, metric in (
        ("benchmark-latency", "p50", "latency_p50_ms"),
        ("benchmark-throughput", "throughput", "throughput_rps"),
    ):
        shown = {
            m["series"]: m["value"] for m in marks if (m["chart"], m.get("category")) == (chart, category)
        }
        assert shown == {client: number_text(clients[client][metric]) for client in CLIENTS}, (chart, shown)
