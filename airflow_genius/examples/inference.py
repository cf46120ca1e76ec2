"""A small model for the inference pattern (``core/inference.py``): deterministic, dependency-free, cheap.

Run the worker and the predictor without Airflow (each in its own shell; Redis on localhost)::

    genius run --spec worker.json      # SentimentWorker.answer, unbounded, input ?stream=queries&group=sentiment
    genius run --spec predictor.json   # Predictor.serve with a service section (port 8000)
    curl -s localhost:8000/predict -d '{"query": {"text": "a great and happy day"}}'
    # {"id": "…", "prediction": {"label": "positive", "score": 1.0}, "workers": ["…"]}

``docs/inference.md`` shows both specs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from collections import Counter
from typing import Any

from airflow_genius.core.inference import InferenceWorker
from airflow_genius.core.task import Task

#: Texts :class:`PredictClient` sends (cycled).
SAMPLE_TEXTS = (
    "a great and happy day",
    "an awful, boring film",
    "the train leaves at nine",
    "good food but a terrible wait",
    "we love this nice place",
)
POSITIVE = frozenset({"good", "great", "happy", "love", "excellent", "fine", "nice", "best", "glad", "fun"})
NEGATIVE = frozenset({"bad", "awful", "sad", "hate", "terrible", "poor", "worst", "angry", "boring", "ugly"})
#: How each variant labels a text without sentiment words (an ensemble's members disagree there).
VARIANTS = {"balanced": "neutral", "optimist": "positive", "pessimist": "negative"}


def score_text(text: str) -> float:
    """(positive words - negative words) / sentiment words, in [-1, 1]; 0.0 without any.

    >>> score_text("a great day, not a bad one")
    0.0
    >>> score_text("Great, happy, sad")
    0.333
    """
    words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
    positive = sum(word in POSITIVE for word in words)
    negative = sum(word in NEGATIVE for word in words)
    total = positive + negative
    return round((positive - negative) / total, 3) if total else 0.0


class SentimentWorker(InferenceWorker):
    """Labels texts positive / negative / neutral by counting lexicon words.

    A query is ``{"text": "..."}`` or the text itself; the prediction is ``{"label", "score"}``. Method
    kwargs (passed to :meth:`setup`): ``variant`` — how a text without sentiment words is labelled
    (``balanced``: neutral, ``optimist``, ``pessimist``; ensemble members that disagree), ``delay`` —
    seconds spent per query (to stand for a heavier model in tests and benchmarks).
    """

    def setup(self, variant: str = "balanced", delay: float = 0.0) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
        self.variant = variant
        self.delay = float(delay)

    def predict(self, query: Any) -> dict[str, Any]:
        text = query.get("text") if isinstance(query, dict) else query
        if not isinstance(text, str):
            raise ValueError(f'a query is {{"text": "..."}} or a string, got {query!r}'[:200])
        if self.delay:
            time.sleep(self.delay)
        score = score_text(text)
        label = "positive" if score > 0 else "negative" if score < 0 else VARIANTS[self.variant]
        return {"label": label, "score": score}


class PredictClient(Task):
    """Sends queries to the predictor its operator was given (``SERVICE_URL``, from ``service=``) and
    records the latencies and the labels in its run record."""

    def ask(self, count: int = 20, timeout: float = 60.0) -> dict[str, Any]:
        """``POST /predict`` ``count`` sample texts one by one; returns the label counts."""
        base = os.environ.get("SERVICE_URL")
        if not base:
            raise RuntimeError("SERVICE_URL is not set: run this task with service=<the predictor task id>")
        url = base.rstrip("/") + "/predict"
        labels: Counter[str] = Counter()
        latencies = []
        for i in range(count):
            body = json.dumps({"query": {"text": SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)]}}).encode()
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - the service URL
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the service URL
                labels[json.loads(answer.read())["prediction"]["label"]] += 1
            latencies.append((time.perf_counter() - started) * 1000)
        if latencies:
            self.log_metric("latency_ms_median", round(statistics.median(latencies), 3))
            self.log_metric("latency_ms_max", round(max(latencies), 3))
        self.log_metric("queries", count)
        return {"url": url, "queries": count, "labels": dict(sorted(labels.items()))}
