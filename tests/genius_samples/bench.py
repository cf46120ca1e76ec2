"""A benchmark client for the chart, report and dashboard tests: it really times calls of a local
function and logs the benchmark metrics (``requests``, ``errors``, ``latency_p50_ms`` /
``latency_p95_ms`` / ``latency_p99_ms`` / ``latency_mean_ms``, ``throughput_rps``); and
:class:`ChartMarks`, which reads the numbers back out of the charts of a page."""

from __future__ import annotations

import hashlib
import math
import time
from html.parser import HTMLParser

from airflow_genius.core import Task


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (``fraction`` in 0..1)."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def digest(size: int) -> str:
    """The local function under test: hash ``size`` bytes."""
    return hashlib.sha256(b"x" * size).hexdigest()


class LatencyProbe(Task):
    """Calls :func:`digest` ``requests`` times and logs latency percentiles and throughput."""

    def measure(self, requests: int = 200, size: int = 20_000) -> dict[str, float]:
        """Time ``requests`` calls of ``digest(size)``; return (and log) the benchmark metrics."""
        latencies: list[float] = []
        began = time.perf_counter()
        for _ in range(requests):
            start = time.perf_counter()
            digest(size)
            latencies.append((time.perf_counter() - start) * 1000)
        elapsed = time.perf_counter() - began
        latencies.sort()
        metrics = {
            "requests": requests,
            "errors": 0,
            "latency_p50_ms": nearest_rank(latencies, 0.50),
            "latency_p95_ms": nearest_rank(latencies, 0.95),
            "latency_p99_ms": nearest_rank(latencies, 0.99),
            "latency_mean_ms": sum(latencies) / len(latencies),
            "throughput_rps": requests / elapsed,
        }
        for name, value in metrics.items():
            self.log_metric(name, value)
        return metrics


class ChartMarks(HTMLParser):
    """Reads the marks of the SVG charts in a page: one dict of ``data-*`` attributes per mark (bar or
    point), with the ``chart`` (the enclosing figure's ``data-chart``) it belongs to.

    >>> marks = ChartMarks.of("<figure data-chart='c'><svg><rect data-series='s' data-value='1.5'/></svg></figure>")
    >>> marks
    [{'chart': 'c', 'series': 's', 'value': '1.5'}]
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chart: str | None = None
        self.marks: list[dict[str, str]] = []

    @classmethod
    def of(cls, page: str) -> list[dict[str, str]]:
        reader = cls()
        reader.feed(page)
        reader.close()
        return reader.marks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "figure":
            self.chart = found.get("data-chart")
        elif "data-value" in found:
            data = {name[5:]: value for name, value in found.items() if name.startswith("data-")}
            self.marks.append({"chart": self.chart or "", **data})

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.chart = None
