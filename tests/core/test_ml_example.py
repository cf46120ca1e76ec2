"""The ML example (airflow_genius/examples/ml.py) on the local runtime, end to end: a generated data set,
real scikit-learn training saved as model versions in a real git repository and on S3 (moto_server),
evaluation of ``latest`` and of a named version, the classifier served by ``genius run`` as a service,
two benchmark clients against it, and the report."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.private_stores import free_port

from airflow_genius.core import RunRecord, Status, build_spec, open_state
from airflow_genius.core.data.locations import parse_data_uri
from airflow_genius.core.models import open_model_manager
from airflow_genius.core.runtime import run_key, run_spec
from airflow_genius.examples.ml import latency_metrics, make_dataset, percentile

pytestmark = pytest.mark.slow

ML = "airflow_genius.examples.ml"
DAG_ID = "ml"
RUN_ID = "r1"
ROWS = 1200
#: Four balanced topics: chance is 0.25. The data are generated from a seed, so the accuracy is the same
#: on every run; the bound leaves room for other scikit-learn versions, not for luck.
ACCURACY_FLOOR = 0.8
BENCH_METRICS = (
    "requests",
    "errors",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "throughput_rps",
)


class Runs:
    """Runs steps of one DAG run on the runtime, against one SQLite state store and work folder."""

    def __init__(self, tmp_path: Path, model_uri: str) -> None:
        self.state_uri = f"sqlite:///{tmp_path}/state.db"
        self.data = tmp_path / "data"
        self.work = tmp_path / "work"
        self.model_uri = model_uri

    def spec(self, cls: str, method: str, task_id: str, **options: Any) -> Any:
        return build_spec(
            f"{ML}:{cls}",
            method,
            state_uri=self.state_uri,
            dag_id=DAG_ID,
            task_id=task_id,
            run_id=RUN_ID,
            **options,
        )

    def run(self, cls: str, method: str, task_id: str, **options: Any) -> RunRecord:
        outcome = run_spec(self.spec(cls, method, task_id, **options), work_dir=self.work)
        assert outcome.status is Status.SUCCESS, outcome.error
        return outcome.record


@pytest.fixture
def git_models(tmp_path: Path) -> str:
    repo = tmp_path / "models.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(repo)], check=True)
    return f"git+file://{repo}"


@pytest.fixture(params=["git", pytest.param("s3", marks=pytest.mark.aws)])
def model_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "git":
        return str(request.getfixturevalue("git_models"))
    return f"s3://{request.getfixturevalue('s3_bucket')}/team/models"


@pytest.fixture
def runs(tmp_path: Path, model_uri: str) -> Runs:
    return Runs(tmp_path, model_uri)


def local_folder(uri: str) -> Path:
    path = parse_data_uri(uri).path
    assert path is not None, uri
    return path


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def serving(runs: Runs, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Any, str]]:
    """``genius run`` of ClassifierService (the latest version) as a service; stopped with SIGTERM."""
    port = free_port()
    spec = runs.spec(
        "ClassifierService",
        "serve",
        "serve",
        model_uri=runs.model_uri,
        model_name="classifier",
        service_port=port,
        ready_timeout=120,
    )
    (tmp_path / "serve.json").write_text(spec.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", str(tmp_path / "serve.json"),
         "--work-dir", str(runs.work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        with open_state(runs.state_uri) as state:
            while True:
                record = state.get_run(run_key(spec))
                service = (record.info.get("service") or {}) if record else {}
                if service.get("ready_at"):
                    break
                assert process.poll() is None, process.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "the classifier service was not ready in 180 s"
                time.sleep(0.1)
        yield process, spec, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_benchmark_metrics_are_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    metrics = latency_metrics([3.0, 1.0, 2.0], requests=4, errors=1, seconds=2.0)
    assert set(metrics) == set(BENCH_METRICS)
    assert metrics["latency_p50_ms"] == 2.0 and metrics["latency_mean_ms"] == 2.0
    assert metrics["throughput_rps"] == 2.0 and metrics["errors"] == 1


def test_docstring_examples() -> None:
    import doctest

    from airflow_genius.examples import ml

    result = doctest.testmod(ml)
    assert result.failed == 0 and result.attempted > 0


def test_the_data_set_is_deterministic_and_balanced() -> None:
    records = make_dataset(400, seed=5)
    assert records == make_dataset(400, seed=5) and records != make_dataset(400, seed=6)
    labels = [r["label"] for r in records]
    assert set(labels) == {"finance", "sports", "technology", "weather"}
    assert all(80 <= labels.count(label) <= 120 for label in set(labels))  # 100 each, up to 2 % relabelled


def test_ingest_train_evaluate_serve_and_benchmark(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # -- ingest
    dataset = runs.run("TextDatasetSpout", "generate", "ingest", kind="spout", kwargs={"rows": ROWS, "seed": 7},
                       output_uri=str(runs.data / "dataset"))  # fmt: skip
    partition = dataset.metrics["output_location"]
    assert dataset.result["train_rows"] + dataset.result["test_rows"] == ROWS
    assert dataset.result["test_rows"] == 240
    folder = local_folder(partition)
    assert sum(1 for _ in (folder / "train.jsonl").open()) == dataset.result["train_rows"]

    # -- train twice: two versions of one model
    def train(task_id: str, **kwargs: Any) -> RunRecord:
        return runs.run("TrainClassifier", "train", task_id, kind="bolt", kwargs={"model_name": "classifier", **kwargs},
                        input_uri=partition, output_uri=str(runs.data / task_id), model_uri=runs.model_uri)  # fmt: skip

    first = train("train")
    second = train("train_small", c=0.5, ngram_max=1, max_features=200)
    assert (first.result["version"], second.result["version"]) == ("v000001", "v000002")
    for record in (first, second):
        assert set(record.metrics) >= {"accuracy", "train_rows", "fit_seconds", "model_version"}
        assert (
            record.metrics["train_rows"] == dataset.result["train_rows"] and record.metrics["fit_seconds"] > 0
        )
    assert first.metrics["accuracy"] >= ACCURACY_FLOOR, first.metrics
    with open_model_manager(runs.model_uri) as models:
        versions = models.list_versions("classifier")
    assert [v.version for v in versions] == ["v000001", "v000002"]
    assert versions[0].metadata["accuracy"] == first.metrics["accuracy"]
    assert set(versions[0].files) == {"model.joblib", "model.json"}

    # -- evaluate the latest version and a named one (the same test split: the same accuracy as training)
    def evaluate(version: str) -> RunRecord:
        return runs.run("EvaluateClassifier", "evaluate", f"evaluate_{version}", kind="bolt", input_uri=partition,
                        model_uri=runs.model_uri, model_name="classifier", model_version=version)  # fmt: skip

    latest, named = evaluate("latest"), evaluate("v000001")
    assert latest.result["params"] == {"c": 0.5, "max_features": 200, "ngram_max": 1}
    assert latest.result["accuracy"] == second.metrics["accuracy"]
    assert named.result["params"]["c"] == 10.0 and named.result["accuracy"] == first.metrics["accuracy"]
    classes = named.result["classes"]
    assert sum(c["support"] for c in classes.values()) == sum(c["predicted"] for c in classes.values()) == 240
    assert sum(c["correct"] for c in classes.values()) == round(named.result["accuracy"] * 240)

    # -- serve (latest) and benchmark it with two clients
    with serving(runs, tmp_path) as (process, spec, url):
        status, answer = post(f"{url}/predict", {"texts": [
            "the striker scored a late goal and the fans cheered the team",
            "the bank raised interest rates as inflation hit the bond market",
            "heavy rain and a storm are in the forecast with strong wind",
            "the startup released a software update for its smartphone app",
        ]})  # fmt: skip
        assert status == 200, answer
        assert answer["labels"] == ["sports", "finance", "weather", "technology"]
        assert all(abs(sum(p.values()) - 1) < 0.01 for p in answer["probabilities"])
        assert post(f"{url}/predict", {"texts": "not a list"})[0] == 400

        monkeypatch.setenv("SERVICE_URL", url)
        for index in (0, 1):
            client = runs.run("BenchmarkClient", "run", "bench", kind="spout", map_index=index,
                              kwargs={"requests": 60, "concurrency": 3, "batch": 2},
                              output_uri=str(runs.data / "bench"))  # fmt: skip
            metrics = client.metrics
            assert metrics["requests"] == 60 and metrics["errors"] == 0, metrics
            assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"]
            assert metrics["throughput_rps"] > 0 and metrics["latency_mean_ms"] > 0
            lines = (local_folder(metrics["output_location"]) / "latencies.jsonl").read_text()
            samples = [json.loads(line) for line in lines.splitlines()]
            assert [s["i"] for s in samples] == list(range(60)) and {s["status"] for s in samples} == {200}
            assert {s["worker"] for s in samples} <= {0, 1, 2}

    # SIGTERM is the service's normal end
    assert process.returncode == 0
    with open_state(runs.state_uri) as state:
        served = state.require_run(run_key(spec))
    assert served.status is Status.SUCCESS and served.result["ready"] is True, served

    # -- the report of this DAG run: a self-contained page and the records' summary
    report = runs.run("MlReport", "report", "report", kind="spout", output_uri=str(runs.data / "report"))
    assert report.result["benchmark_clients"] == 2 and report.result["bytes"] > 1000
    folder = local_folder(report.metrics["output_location"])
    page = (folder / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "<svg" in page
    assert "bench" in page and "train_small" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loaded from elsewhere
    summary = json.loads((folder / "summary.json").read_text())
    steps = {(step["task_id"], step["map_index"]): step for step in summary["steps"]}
    assert steps[("bench", 1)]["metrics"]["requests"] == 60 and ("report", -1) not in steps
    assert steps[("train", -1)]["result"]["version"] == "v000001"
