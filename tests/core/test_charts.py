"""The SVG charts: numbers readable from data attributes, everything from the data escaped, empty and
hostile data drawn without failing, the same data giving the same text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from airflow_genius.core.charts import Series, bar_chart, line_chart, number_text

SVG = "{http://www.w3.org/2000/svg}"


def svg_of(figure: str) -> ET.Element:
    """The chart's SVG element, parsed as XML (proves the markup is well formed)."""
    root = ET.fromstring(figure)  # the figure wrapper is XML-compatible HTML too
    svg = root.find(f"{SVG}svg")
    assert svg is not None, figure[:300]
    return svg


def marks(svg: ET.Element, tag: str) -> list[dict[str, str]]:
    return [dict(mark.attrib) for mark in svg.iter(f"{SVG}{tag}") if "data-value" in mark.attrib]


def test_grouped_bars_carry_each_value_once_per_series_and_category() -> None:
    series = [Series("client[0]", [1.25, 4.5, 9.75]), Series("client[1]", [2, 5, 11])]
    figure = bar_chart("Latency", ["p50", "p95", "p99"], series, unit="ms", chart_id="latency")
    svg = svg_of(figure)
    groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "series"]
    assert [g.get("data-series") for g in groups] == ["client[0]", "client[1]"]
    found = {(m["data-series"], m["data-category"]): m["data-value"] for m in marks(svg, "rect")}
    assert found == {
        ("client[0]", "p50"): "1.25",
        ("client[0]", "p95"): "4.5",
        ("client[0]", "p99"): "9.75",
        ("client[1]", "p50"): "2",
        ("client[1]", "p95"): "5",
        ("client[1]", "p99"): "11",
    }
    assert "data-chart='latency'" in figure
    # axis from zero past the highest value, a legend naming both series, tooltips with the unit
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0" and float(ticks[-1]) >= 11
    legend = [g.get("data-legend") for g in svg.iter(f"{SVG}g") if g.get("class") == "legend-item"]
    assert legend == ["client[0]", "client[1]"]
    assert "<title>client[1] · p99: 11 ms</title>" in figure


def test_taller_values_draw_taller_bars() -> None:
    svg = svg_of(bar_chart("t", ["a", "b"], [Series("s", [1.0, 3.0])]))
    heights = [float(m["height"]) for m in marks(svg, "rect")]
    assert heights[1] == pytest.approx(3 * heights[0], rel=1e-3)


def test_line_chart_points_and_gaps() -> None:
    figure = line_chart("Duration", ["r1", "r2", "r3", "r4"], [Series("t", [3.5, None, 2.0, 2.5])], unit="s")
    svg = svg_of(figure)
    points = marks(svg, "circle")
    assert [(p["data-x"], p["data-value"]) for p in points] == [("r1", "3.5"), ("r3", "2.0"), ("r4", "2.5")]
    lines = [line.get("points") for line in svg.iter(f"{SVG}polyline")]
    assert len(lines) == 1 and len(lines[0].split()) == 2  # r1 stands alone: the gap breaks the line


def test_numbers_are_exact_and_non_numbers_draw_nothing() -> None:
    assert number_text(0.1 + 0.2) == "0.30000000000000004" and float(number_text(1e-300) or 0) == 1e-300
    assert [number_text(v) for v in (True, "3", None, float("inf"), float("nan"), 10**400)] == [None] * 6
    values = [float("nan"), True, "7", 4, float("-inf"), 10**400]
    svg = svg_of(bar_chart("t", list("abcdef"), [Series("s", values)]))
    assert [(m["data-category"], m["data-value"]) for m in marks(svg, "rect")] == [("d", "4")]


def test_negative_values_keep_zero_on_the_axis() -> None:
    svg = svg_of(bar_chart("t", ["a", "b"], [Series("s", [-2.0, 6.0])]))
    ticks = [float(t.text or "nan") for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert min(ticks) <= -2 and max(ticks) >= 6 and 0 in ticks


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
@pytest.mark.parametrize(
    ("labels", "series"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(["a"], [], id="no-series"),
        pytest.param(["a", "b"], [Series("s", [None, float("nan")])], id="no-number"),
        pytest.param(["a", "b"], [Series("s", [])], id="short-series"),
    ],
)
def test_empty_data_is_a_note_not_an_error(chart, labels: list[str], series: list[Series]) -> None:  # type: ignore[no-untyped-def]
    figure = chart("Nothing <here>", labels, series, empty_note="No data & no chart.")
    assert "<svg" not in figure
    assert "Nothing &lt;here&gt;" in figure and "No data &amp; no chart." in figure


HOSTILE = "</title></svg><script>alert('x')</script>\"&\ud800\x00"


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
def test_hostile_labels_are_escaped_everywhere(chart) -> None:  # type: ignore[no-untyped-def]
    figure = chart(
        HOSTILE, [HOSTILE, "b"], [Series(HOSTILE, [1.0, 2.0]), Series("ok", [3.0, 4.0])], unit=HOSTILE
    )
    assert "<script>" not in figure and "</svg><script" not in figure
    assert "\x00" not in figure and "\\x00" in figure and "\\ud800" in figure
    figure.encode("utf-8")  # no lone surrogate left
    svg = svg_of(figure)
    series = [g.get("data-series") for g in svg.iter(f"{SVG}g") if g.get("class") == "series"]
    # the attribute reads back as the label, with the unprintable characters as escapes
    assert series == [HOSTILE.replace("\x00", "\\x00").replace("\ud800", "\\ud800"), "ok"]


def test_output_is_deterministic_and_grows_with_the_data() -> None:
    many = [f"window-{i}" for i in range(120)]
    series = [Series("consumer[0]", [float(i) for i in range(120)]), Series("consumer[1]", [1.0] * 120)]
    first, second = bar_chart("w", many, series), bar_chart("w", many, series)
    assert first == second
    width = float(svg_of(first).get("width") or 0)
    assert width > 120 * 2 * 8  # every bar keeps a visible width
    shown = re.findall(r"<title>(window-\d+)</title>window", first)
    assert 0 < len(shown) < 120  # crowded labels: every k-th shown, all in the tooltips
