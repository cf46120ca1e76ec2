"""An ML team's workflow as genius tasks: ingest a labelled text data set, train a classifier, evaluate a
model version, serve it over HTTP, benchmark the service, and write a report.

Needs the ``ml`` extra (scikit-learn). The data are generated, deterministically, from word lists: no
download at run time. Run it without Airflow (docs/ml.md has the DAG and every runner)::

    genius rise airflow_genius.examples.ml:TextDatasetSpout generate --output /tmp/ml/data --kwarg rows=2000
    genius rise airflow_genius.examples.ml:TrainClassifier train --input /tmp/ml/data/<partition> \\
        --output /tmp/ml/train --model git+file:///srv/models.git --kwarg model_name=classifier
    genius rise airflow_genius.examples.ml:EvaluateClassifier evaluate --input /tmp/ml/data/<partition> \\
        --model git+file:///srv/models.git --model-name classifier --model-version latest

Steps and what they record:

- :class:`TextDatasetSpout` ``generate(rows, seed, test_fraction)``: ``train.jsonl``, ``test.jsonl``
  (``{"id", "text", "label"}`` per line) and ``dataset.json`` (the split and the labels).
- :class:`TrainClassifier` ``train(model_name, ...)``: fits a TF-IDF + logistic regression pipeline on
  ``train.jsonl``, logs ``accuracy`` (on ``test.jsonl``), ``train_rows``, ``fit_seconds``, and saves the
  fitted pipeline as a new version of ``model_name`` through the step's model manager; returns the version.
- :class:`EvaluateClassifier` ``evaluate()``: the version named by the step's model section (``latest``
  or an id), on ``test.jsonl``: ``accuracy`` and per-class counts.
- :class:`ClassifierService` ``serve()``: ``POST /predict {"texts": [...]}`` →
  ``{"labels": [...], "probabilities": [{label: p}, ...]}`` (``core/service.py``'s ``serve_http``).
- :class:`BenchmarkClient` ``run(requests, concurrency, batch)``: calls ``$SERVICE_URL/predict`` and logs
  ``requests``, ``errors``, ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``,
  ``latency_mean_ms`` and ``throughput_rps``; writes each request's latency to ``latencies.jsonl``.
- :class:`MlReport` ``report()``: ``report.html`` (``core/report.py``) and ``summary.json`` of this DAG
  run's records.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_genius.core.task import Bolt, Spout, Task

if TYPE_CHECKING:
    from airflow_genius.core.data import BatchOutput


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Words that say which topic a sentence is about (the label is the topic).
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "sports": _words(
        "match goal team coach league season player score stadium referee tournament striker defence "
        "trophy penalty injury transfer fans"
    ),
    "finance": _words(
        "market shares bank interest inflation investor bond profit revenue earnings dividend currency "
        "loan budget stocks rates quarter fund"
    ),
    "weather": _words(
        "rain storm forecast temperature wind snow sunny cloud humidity flood heatwave frost showers "
        "thunder drought breeze fog hail"
    ),
    "technology": _words(
        "software chip network startup cloud app robot algorithm laptop data server update battery "
        "processor developer browser smartphone code"
    ),
}
#: Words of any topic (they carry no label information).
FILLER_WORDS: tuple[str, ...] = _words(
    "the a today new report people said after week city big more first local expected again many year "
    "some latest news could while"
)
#: The pipeline file inside a model version, and its description.
MODEL_FILE = "model.joblib"
MODEL_INFO_FILE = "model.json"


# ---------------------------------------------------------------------- data
def make_sentence(rng: random.Random, label: str, *, noise: float = 0.2) -> str:
    """One sentence about ``label``: topic words mixed with filler, and a share ``noise`` of words from
    other topics (so the task is not trivially separable)."""
    others = [topic for topic in TOPIC_WORDS if topic != label]
    words = []
    for _ in range(rng.randint(6, 14)):
        draw = rng.random()
        if draw < noise:
            words.append(rng.choice(TOPIC_WORDS[rng.choice(others)]))
        elif draw < noise + 0.35:
            words.append(rng.choice(FILLER_WORDS))
        else:
            words.append(rng.choice(TOPIC_WORDS[label]))
    return " ".join(words)


def make_dataset(
    rows: int, seed: int, *, noise: float = 0.2, label_noise: float = 0.02
) -> list[dict[str, Any]]:
    """``rows`` labelled sentences, the same for the same arguments; ``label_noise`` of the labels are
    wrong (as in real annotations).

    >>> make_dataset(2, seed=1) == make_dataset(2, seed=1), len(make_dataset(5, seed=2))
    (True, 5)
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    labels = sorted(TOPIC_WORDS)
    records = []
    for index in range(rows):
        label = labels[index % len(labels)]
        text = make_sentence(rng, label, noise=noise)
        if rng.random() < label_noise:
            label = rng.choice([other for other in labels if other != label])
        records.append({"id": index, "text": text, "label": label})
    rng.shuffle(records)
    return records


def read_split(task_input: Any, name: str) -> tuple[list[str], list[str]]:
    """Texts and labels of ``train.jsonl`` or ``test.jsonl`` in a step's input partition."""
    if task_input is None:
        raise ValueError(
            "this step needs the data set as its input (the TextDatasetSpout's output partition)"
        )
    if name not in task_input.files():
        raise ValueError(f"the input has no {name!r}: is it a TextDatasetSpout output partition?")
    records = list(task_input.iter_json_lines(name))
    return [str(r["text"]) for r in records], [str(r["label"]) for r in records]


def batch_output(task: Task) -> BatchOutput:
    """The step's batch output partition (a clear error without one)."""
    from airflow_genius.core.data import BatchOutput

    if not isinstance(task.output, BatchOutput):
        raise ValueError(f"{type(task).__name__} writes files: give the step a batch output (output_uri)")
    return task.output


def jsonl(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


# ---------------------------------------------------------------------- model files
def save_pipeline(pipeline: Any, folder: Path, info: dict[str, Any]) -> None:
    """The fitted pipeline (joblib) and a JSON description of it, as one model version's folder."""
    import joblib

    joblib.dump(pipeline, folder / MODEL_FILE)
    (folder / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_pipeline(model_path: Path | None) -> tuple[Any, dict[str, Any]]:
    """The pipeline and its description from a loaded model version (the step's ``model_path``).

    joblib unpickles: load only models your own pipeline saved.
    """
    if model_path is None:
        raise ValueError(
            "this step needs a model version: give it a model URI and name (model: {uri, name, version})"
        )
    import joblib

    info = json.loads((Path(model_path) / MODEL_INFO_FILE).read_text())
    return joblib.load(Path(model_path) / MODEL_FILE), info


def class_counts(labels: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per class: how many test rows it has (``support``), how many of them were right, how many rows
    were predicted as it.

    >>> class_counts(["a", "a", "b"], ["a", "b", "b"])
    {'a': {'support': 2, 'correct': 1, 'predicted': 1}, 'b': {'support': 1, 'correct': 1, 'predicted': 2}}
    """
    support, guessed = Counter(labels), Counter(predicted)
    correct = Counter(label for label, guess in zip(labels, predicted, strict=True) if label == guess)
    return {
        label: {"support": support[label], "correct": correct[label], "predicted": guessed[label]}
        for label in sorted(set(support) | set(guessed))
    }


# ---------------------------------------------------------------------- tasks
class TextDatasetSpout(Spout):
    """Ingests a labelled text data set (news-like sentences about four topics) as JSON lines."""

    def generate(self, rows: int = 2000, seed: int = 7, test_fraction: float = 0.2) -> dict[str, Any]:
        """Write ``rows`` sentences into the output partition: ``train.jsonl``, ``test.jsonl`` (the last
        ``test_fraction`` of a seeded shuffle) and ``dataset.json`` (the split and the labels)."""
        if rows < 10:
            raise ValueError(f"rows must be at least 10, got {rows}")
        if not 0.05 <= test_fraction <= 0.5:
            raise ValueError(f"test_fraction must be between 0.05 and 0.5, got {test_fraction}")
        output = batch_output(self)
        records = make_dataset(rows, seed)
        cut = rows - max(1, round(rows * test_fraction))
        train, test = records[:cut], records[cut:]
        output.save(jsonl(train), "train.jsonl")
        output.save(jsonl(test), "test.jsonl")
        summary = {
            "rows": rows,
            "seed": seed,
            "test_fraction": test_fraction,
            "train_rows": len(train),
            "test_rows": len(test),
            "labels": dict(sorted(Counter(r["label"] for r in records).items())),
        }
        output.save(summary, "dataset.json")
        self.log_metric("rows", rows)
        self.log_metric("train_rows", len(train))
        self.log_metric("test_rows", len(test))
        return summary


class TrainClassifier(Bolt):
    """Fits a TF-IDF + logistic regression text classifier and saves it as a new model version."""

    def train(
        self,
        model_name: str = "classifier",
        c: float = 10.0,
        max_features: int = 20000,
        ngram_max: int = 2,
    ) -> dict[str, Any]:
        """Fit on ``train.jsonl``, score on ``test.jsonl``, save the pipeline as a new version of
        ``model_name`` through the step's model manager; returns the version and the scores.

        ``c`` is the inverse regularisation strength, ``ngram_max`` the longest word n-gram.
        """
        from sklearn import __version__ as sklearn_version
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        if self.model is None:
            raise ValueError(
                "TrainClassifier.train saves a model version: give the step a model URI (model_uri=)"
            )
        train_texts, train_labels = read_split(self.input, "train.jsonl")
        test_texts, test_labels = read_split(self.input, "test.jsonl")
        params = {"c": c, "max_features": max_features, "ngram_max": ngram_max}
        pipeline = Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(ngram_range=(1, ngram_max), max_features=max_features, sublinear_tf=True),
                ),
                ("classify", LogisticRegression(C=c, max_iter=1000)),
            ]
        )
        started = time.perf_counter()
        pipeline.fit(train_texts, train_labels)
        fit_seconds = time.perf_counter() - started
        predicted = list(pipeline.predict(test_texts))
        accuracy = sum(p == t for p, t in zip(predicted, test_labels, strict=True)) / len(test_labels)
        scores = {
            "accuracy": round(accuracy, 4),
            "train_rows": len(train_texts),
            "test_rows": len(test_texts),
            "fit_seconds": round(fit_seconds, 4),
        }
        for name, value in scores.items():
            self.log_metric(name, value)
        run = self.identity
        info = {
            "name": model_name,
            "classes": [str(label) for label in pipeline.classes_],
            "params": params,
            "scores": scores,
            "sklearn": sklearn_version,
            "trained_by": {"dag_id": run.dag_id, "task_id": run.task_id, "run_id": run.run_id}
            if run
            else None,
        }
        with tempfile.TemporaryDirectory(prefix="genius-classifier-") as folder:
            save_pipeline(pipeline, Path(folder), info)
            version = self.model.save(folder, model_name, metadata={**scores, "params": params})
        self.log_metric("model_version", version)
        result = {"model": model_name, "version": version, **scores, "params": params}
        if self.output is not None:
            batch_output(self).save(result, "training.json")
        return result


class EvaluateClassifier(Bolt):
    """Evaluates a saved classifier version (the step's model section) on the test split."""

    def evaluate(self) -> dict[str, Any]:
        """Accuracy and per-class counts of the loaded version on ``test.jsonl``; with an output, also
        ``evaluation.json``."""
        pipeline, info = load_pipeline(self.model_path)
        texts, labels = read_split(self.input, "test.jsonl")
        predicted = [str(label) for label in pipeline.predict(texts)]
        correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
        accuracy = round(correct / len(labels), 4)
        self.log_metric("accuracy", accuracy)
        self.log_metric("test_rows", len(labels))
        result = {
            "model": info.get("name"),
            "params": info.get("params"),
            "trained_by": info.get("trained_by"),
            "accuracy": accuracy,
            "test_rows": len(labels),
            "classes": class_counts(labels, predicted),
        }
        if self.output is not None:
            batch_output(self).save(result, "evaluation.json")
        return result


class BadRequest(ValueError):
    """A request the service refuses (answered 400)."""

    http_status = 400


class ClassifierService(Task):
    """Serves a saved classifier version: ``POST /predict {"texts": [...]}`` → labels and probabilities."""

    def serve(self, max_texts: int = 1000) -> None:
        """Load the step's model version and serve ``/predict`` on ``$SERVICE_PORT`` until stopped;
        ``max_texts``: most texts in one request."""
        from airflow_genius.core.service import serve_http

        pipeline, info = load_pipeline(self.model_path)
        classes = [str(label) for label in pipeline.classes_]

        def predict(body: Any) -> dict[str, Any]:
            texts = body.get("texts") if isinstance(body, dict) else None
            if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
                raise BadRequest('expected a JSON body {"texts": ["…", …]}')
            if len(texts) > max_texts:
                raise BadRequest(f"at most {max_texts} texts per request, got {len(texts)}")
            if not texts:
                return {"labels": [], "probabilities": []}
            rows = pipeline.predict_proba(texts)
            return {
                "labels": [classes[int(row.argmax())] for row in rows],
                "probabilities": [
                    {label: round(float(p), 4) for label, p in zip(classes, row, strict=True)} for row in rows
                ],
            }

        serve_http({"/predict": predict, "/info": lambda _body: info})


# ---------------------------------------------------------------------- benchmark
def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, nearest rank.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 99), percentile([5.0], 95)
    (2.0, 4.0, 5.0)
    """
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_metrics(
    latencies_ms: Sequence[float], *, requests: int, errors: int, seconds: float
) -> dict[str, Any]:
    """The benchmark metrics of a client run (names shared with the report and the dashboard charts).

    >>> latency_metrics([10.0, 20.0, 30.0, 40.0], requests=5, errors=1, seconds=0.5)["throughput_rps"]
    10.0
    """
    ordered = sorted(latencies_ms)
    return {
        "requests": requests,
        "errors": errors,
        "latency_p50_ms": round(percentile(ordered, 50), 3),
        "latency_p95_ms": round(percentile(ordered, 95), 3),
        "latency_p99_ms": round(percentile(ordered, 99), 3),
        "latency_mean_ms": round(sum(ordered) / len(ordered), 3),
        "throughput_rps": round(requests / seconds, 3) if seconds > 0 else 0.0,
    }


class _Connection:
    """One keep-alive HTTP connection of a benchmark worker (reopened after an error)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SERVICE_URL must be an http(s) URL, got {url!r}")
        self._parts = parts
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self._conn is None:
            kind = (
                http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            )
            self._conn = kind(self._parts.hostname or "", self._parts.port, timeout=self._timeout)
        try:
            self._conn.request("POST", path, payload, {"Content-Type": "application/json"})
            answer = self._conn.getresponse()
            return answer.status, answer.read()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class BenchmarkClient(Spout):
    """Load-tests a prediction service (``$SERVICE_URL``): latency percentiles and throughput."""

    def run(
        self,
        requests: int = 200,
        concurrency: int = 4,
        batch: int = 1,
        timeout: float = 10.0,
        seed: int = 11,
    ) -> dict[str, Any]:
        """Send ``requests`` ``POST /predict`` requests of ``batch`` texts each from ``concurrency``
        threads (one keep-alive connection each); log the benchmark metrics and write every request's
        latency to ``latencies.jsonl`` in the output."""
        if requests < 1 or concurrency < 1 or batch < 1:
            raise ValueError(
                f"requests, concurrency and batch must be >= 1, got {requests}, {concurrency}, {batch}"
            )
        base = os.environ.get("SERVICE_URL")
        if not base:
            raise RuntimeError("SERVICE_URL is not set: run this step as a client of the service (service=)")
        path = urllib.parse.urlsplit(base).path.rstrip("/") + "/predict"
        texts = [record["text"] for record in make_dataset(max(batch * 8, 64), seed)]
        payloads = [
            json.dumps({"texts": [texts[(i * batch + j) % len(texts)] for j in range(batch)]}).encode()
            for i in range(requests)
        ]
        samples: list[dict[str, Any]] = []
        lock = threading.Lock()
        next_index = iter(range(requests))

        def worker(number: int) -> None:
            connection = _Connection(base, timeout)
            try:
                for index in _locked(next_index, lock):
                    started = time.perf_counter()
                    try:
                        status, _body = connection.post(path, payloads[index])
                        error = None if status == 200 else f"HTTP {status}"
                    except (OSError, http.client.HTTPException) as exc:
                        status, error = 0, f"{type(exc).__name__}: {exc}"
                    sample: dict[str, Any] = {"i": index, "worker": number, "ms": round((time.perf_counter() - started) * 1000, 3),
                              "status": status}  # fmt: skip
                    if error:
                        sample["error"] = error
                    with lock:
                        samples.append(sample)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(n,), name=f"bench-{n}") for n in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        samples.sort(key=lambda sample: sample["i"])
        ok = [sample["ms"] for sample in samples if "error" not in sample]
        errors = len(samples) - len(ok)
        if not ok:
            raise RuntimeError(f"every request to {base}{path} failed; the first: {samples[0].get('error')}")
        metrics = latency_metrics(ok, requests=len(samples), errors=errors, seconds=seconds)
        for name, value in metrics.items():
            self.log_metric(name, value)
        self.log_metric("concurrency", concurrency)
        self.log_metric("batch", batch)
        if self.output is not None:
            batch_output(self).save(jsonl(samples), "latencies.jsonl")
        return {"url": base + path, "concurrency": concurrency, "batch": batch, **metrics}


def _locked(items: Iterator[int], lock: threading.Lock) -> Iterator[int]:
    """Draw from a shared iterator under a lock (threads take the next request index in turn)."""
    while True:
        with lock:
            item = next(items, None)
        if item is None:
            return
        yield item


# ---------------------------------------------------------------------- report
class MlReport(Spout):
    """Writes the report of this DAG run (training, evaluation, benchmark clients) into its output."""

    def report(self, title: str | None = None) -> dict[str, Any]:
        """``report.html`` (self-contained: inline charts, ``core/report.py``) and ``summary.json`` (the
        metrics and results of every record of this DAG run) in the output partition."""
        from airflow_genius.core.report import write_report

        output = batch_output(self)
        if self.state is None or self.identity is None:
            raise ValueError("MlReport.report reads the run records of its DAG run: run it as a step of one")
        state, run = self.state.manager, self.identity
        records = [r for r in state.list_runs(dag_id=run.dag_id, limit=1000) if r.key.run_id == run.run_id]
        summary: dict[str, Any] = {
            "title": title or f"{run.dag_id} {run.run_id}",
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "steps": [
                {
                    "task_id": r.key.task_id,
                    "map_index": r.key.map_index,
                    "status": r.status.value,
                    "metrics": r.metrics,
                    "result": r.result,
                }
                for r in sorted(records, key=lambda r: (r.key.task_id, r.key.map_index))
                if r.key.task_id != run.task_id
            ],
        }
        output.save(summary, "summary.json")
        page = write_report(state, output.path / "report.html", dag_id=run.dag_id, run_id=run.run_id)
        clients = sum(1 for step in summary["steps"] if "latency_p50_ms" in (step["metrics"] or {}))
        self.log_metric("steps", len(summary["steps"]))
        self.log_metric("benchmark_clients", clients)
        return {
            "report": output.location + "report.html",
            "bytes": page.stat().st_size,
            "steps": len(summary["steps"]),
            "benchmark_clients": clients,
        }
