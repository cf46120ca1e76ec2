"""Charts as plain inline SVG: grouped bars and lines with axes, labels, a legend and tooltips.

No Airflow, no JavaScript, nothing fetched: each chart is one ``<figure>`` of HTML text that the
dashboard and :mod:`airflow_genius.core.report` drop into their pages. The output is deterministic (same
data, same text) and every text from the data is escaped. Each series is a ``<g data-series="…">``
whose marks carry ``data-series``, ``data-category`` (bars) or ``data-x`` (lines) and ``data-value``
(the number as Python's shortest round-trip text), so a test or a user can read the numbers back::

    from airflow_genius.core.charts import Series, bar_chart, line_chart

    bars = bar_chart("Latency (ms)", ["p50", "p95"], [Series("a[0]", [1.5, 4.0]), Series("a[1]", [2.0, 5.5])])
    line = line_chart("Duration (s)", ["run 1", "run 2", "run 3"], [Series("count", [3.1, None, 2.9])])

A value that is missing, not a number (``bool`` included) or not finite draws no mark.

>>> from airflow_genius.core.charts import number_text
>>> number_text(0.1 + 0.2), number_text(7), number_text(float("nan"))
('0.30000000000000004', '7', None)
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Series colours (Okabe-Ito, readable by the common colour-blindness types), reused in this order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#7F7F7F")
#: Size of the plot area (the SVG grows wider when the data needs room, and scales down with the page).
PLOT_WIDTH = 440
PLOT_HEIGHT = 200
#: Narrowest and widest bar, the gap between categories, the narrowest chart, in SVG units.
MIN_BAR = 8
MAX_BAR = 40
MIN_WIDTH = 360
CATEGORY_GAP = 12
#: Average width of one label character at the charts' font size (for wrapping and truncating).
CHAR_WIDTH = 6.6
#: Longest label shown in the legend (the full text is in its tooltip).
LEGEND_CHARS = 48
_LEFT, _RIGHT, _TOP, _AXIS_LABELS = 64, 16, 12, 36
_LEGEND_ROW = 18
#: Control characters (but tab and newline) and DEL: shown as ``\\xNN``.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

CHART_STYLE = """
figure.genius-chart { margin: 0 0 1rem; max-width: 100%; overflow-x: auto; }
figure.genius-chart figcaption { font-weight: 600; margin-bottom: .25rem; }
figure.genius-chart svg { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
figure.genius-chart .grid { stroke: currentColor; stroke-opacity: .15; }
figure.genius-chart .axis { stroke: currentColor; stroke-opacity: .6; }
figure.genius-chart p.empty { color: #57606a; margin: 0; }
.genius-charts { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
"""


def escape(value: object) -> str:
    """``value`` as HTML/SVG text (quotes escaped too) that every browser shows as stored: control
    characters and lone surrogates are written as Python escapes, so the page is always valid UTF-8.

    >>> escape("<b>\\ud800\\x00'")
    '&lt;b&gt;\\\\ud800\\\\x00&#x27;'
    """
    text = value if isinstance(value, str) else str(value)
    text = _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return html.escape(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def is_number(value: object) -> bool:
    """True for a finite ``int`` or ``float`` (not ``bool``): what a chart can draw."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def number_text(value: object) -> str | None:
    """The exact text of a drawable number (``data-value``), else None."""
    if not is_number(value):
        return None
    return str(value) if isinstance(value, int) else repr(float(value))  # type: ignore[arg-type]


def short_number(value: float) -> str:
    """A compact axis label: ``0.25``, ``120``, ``1.5k``, ``2M``.

    >>> [short_number(v) for v in (0, 0.25, 120, 1500, 2_000_000)]
    ['0', '0.25', '120', '1.5k', '2M']
    """
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.3g}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def shorten(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters (an ellipsis marks the cut).

    >>> shorten("consumer-group-7", 8)
    'consume…'
    """
    chars = max(chars, 1)
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass(frozen=True)
class Series:
    """One named row of values: one value per category (bars) or per x position (lines)."""

    label: str
    values: Sequence[object]

    def value(self, index: int) -> float | None:
        """The drawable value at ``index`` (None: missing or not a finite number)."""
        value = self.values[index] if index < len(self.values) else None
        return float(value) if is_number(value) else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Scale:
    """A y axis: ``low``..``high`` in ``step``s, mapped onto the plot's height."""

    low: float
    high: float
    step: float

    def y(self, value: float) -> float:
        return _TOP + PLOT_HEIGHT * (self.high - value) / (self.high - self.low)

    def ticks(self) -> list[float]:
        count = round((self.high - self.low) / self.step)
        return [self.low + self.step * index for index in range(count + 1)]


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times 10^k that is at least ``raw``."""
    exponent = math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = factor * 10.0**exponent
        if step >= raw * (1 - 1e-9):
            return step
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def _scale(values: Sequence[float]) -> _Scale:
    """An axis from zero (or the lowest negative value) to just above the highest value, ~5 ticks."""
    low, high = min(0.0, *values), max(0.0, *values)
    if high == low:
        high = low + 1.0
    step = _nice_step((high - low) / 5)
    return _Scale(math.floor(low / step) * step, math.ceil(high / step) * step, step)


def _f(number: float) -> str:
    """An SVG coordinate, fixed to two decimals (deterministic text)."""
    return f"{number:.2f}"


def _scale_of(series: Sequence[Series], count: int) -> _Scale | None:
    """The y scale of the first ``count`` values of ``series``; ``None`` when there is nothing to chart."""
    values = [v for s in series for v in (s.value(i) for i in range(count)) if v is not None]
    return _scale(values) if values and series else None


def _empty(title: str, chart_id: str, note: str) -> str:
    return (
        f"<figure class='genius-chart' data-chart='{escape(chart_id)}'>"
        f"<figcaption>{escape(title)}</figcaption><p class='empty'>{escape(note)}</p></figure>"
    )


def _legend(series: Sequence[Series], width: float, top: float) -> tuple[str, float]:
    """Legend items laid out in rows across ``width``; returns (SVG, height used)."""
    parts: list[str] = []
    x, y = float(_LEFT), top
    for index, one in enumerate(series):
        label = shorten(one.label, LEGEND_CHARS)
        item_width = 18 + len(label) * CHAR_WIDTH + 16
        if x > _LEFT and x + item_width > width:
            x, y = _LEFT, y + _LEGEND_ROW
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f"<g class='legend-item' data-legend='{escape(one.label)}'><title>{escape(one.label)}</title>"
            f"<rect x='{_f(x)}' y='{_f(y)}' width='12' height='12' fill='{colour}'/>"
            f"<text x='{_f(x + 16)}' y='{_f(y + 10)}' fill='currentColor'>{escape(label)}</text></g>"
        )
        x += item_width
    return f"<g class='legend'>{''.join(parts)}</g>", y + _LEGEND_ROW - top


def _frame(scale: _Scale, width: float, unit: str) -> str:
    """Grid lines, the y axis with its labels, and the x axis line."""
    right = width - _RIGHT
    parts = []
    for tick in scale.ticks():
        y = _f(scale.y(tick))
        parts.append(f"<line class='grid' x1='{_LEFT}' x2='{_f(right)}' y1='{y}' y2='{y}'/>")
        parts.append(
            f"<text x='{_LEFT - 6}' y='{y}' dy='.32em' text-anchor='end' fill='currentColor'>"
            f"{escape(short_number(tick))}</text>"
        )
    bottom, zero = _f(_TOP + PLOT_HEIGHT), _f(scale.y(0.0))
    parts.append(f"<line class='axis' x1='{_LEFT}' x2='{_LEFT}' y1='{_TOP}' y2='{bottom}'/>")
    parts.append(f"<line class='axis' x1='{_LEFT}' x2='{_f(right)}' y1='{zero}' y2='{zero}'/>")
    if unit:
        middle = _f(_TOP + PLOT_HEIGHT / 2)
        parts.append(
            f"<text transform='translate(14 {middle}) rotate(-90)' text-anchor='middle' "
            f"fill='currentColor'>{escape(unit)}</text>"
        )
    return f"<g class='frame'>{''.join(parts)}</g>"


def _x_labels(labels: Sequence[str], centres: Sequence[float], slot: float) -> str:
    """Labels under the x axis: every k-th when they are crowded, each cut to its slot."""
    every = max(1, math.ceil(70 / slot)) if slot < 70 else 1
    chars = int(max(slot * every, 40) / CHAR_WIDTH)
    y = _f(_TOP + PLOT_HEIGHT + 16)
    parts = [
        f"<text x='{_f(x)}' y='{y}' text-anchor='middle' fill='currentColor'>"
        f"<title>{escape(label)}</title>{escape(shorten(label, chars))}</text>"
        for index, (label, x) in enumerate(zip(labels, centres, strict=True))
        if index % every == 0
    ]
    return f"<g class='x-labels'>{''.join(parts)}</g>"


def _svg(title: str, chart_id: str, width: float, height: float, body: str) -> str:
    return (
        f"<figure class='genius-chart' data-chart='{escape(chart_id)}'>"
        f"<figcaption>{escape(title)}</figcaption>"
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{escape(title)}' "
        f"width='{_f(width)}' height='{_f(height)}' viewBox='0 0 {_f(width)} {_f(height)}'>"
        f"<title>{escape(title)}</title>{body}</svg></figure>"
    )


def _plotted(
    title: str,
    chart_id: str,
    series: Sequence[Series],
    scale: _Scale,
    unit: str,
    width: float,
    marks: Sequence[str],
    x_labels: str,
) -> str:
    """The chart's figure: axes and grid, the series' ``marks``, the x labels and the legend below."""
    legend, legend_height = _legend(series, width, _TOP + PLOT_HEIGHT + _AXIS_LABELS)
    body = _frame(scale, width, unit) + "".join(marks) + x_labels + legend
    return _svg(title, chart_id, width, _TOP + PLOT_HEIGHT + _AXIS_LABELS + legend_height + 4, body)


def _tooltip(series: str, where: str, value: float, unit: str) -> str:
    shown = f"{value:.6g}" + (f" {unit}" if unit else "")
    return f"<title>{escape(series)} · {escape(where)}: {escape(shown)}</title>"


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    chart_id: str = "bars",
    empty_note: str = "No data to chart.",
) -> str:
    """Grouped bars: one group per category, one bar per series in it (``<rect data-series
    data-category data-value>``), the y axis from zero. An empty chart is the figure with ``empty_note``.
    """
    count = len(categories)
    scale = _scale_of(series, count)
    if scale is None:
        return _empty(title, chart_id, empty_note)
    bar = min(max((PLOT_WIDTH / count - CATEGORY_GAP) / len(series), MIN_BAR), MAX_BAR)
    slot = bar * len(series) + CATEGORY_GAP
    width = max(_LEFT + slot * count + _RIGHT, MIN_WIDTH)
    left = _LEFT + (width - _LEFT - slot * count - _RIGHT) / 2  # few bars: centred in the plot
    marks = []
    for index, one in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        rects = []
        for position, category in enumerate(categories):
            value = one.value(position)
            if value is None:
                continue
            x = left + slot * position + CATEGORY_GAP / 2 + bar * index
            top, base = sorted((scale.y(value), scale.y(0.0)))
            rects.append(
                f"<rect x='{_f(x)}' y='{_f(top)}' width='{_f(max(bar - 1, 1))}' "
                f"height='{_f(max(base - top, 0.5))}' fill='{colour}' data-series='{escape(one.label)}' "
                f"data-category='{escape(category)}' data-value='{number_text(one.values[position])}'>"
                f"{_tooltip(one.label, category, value, unit)}</rect>"
            )
        marks.append(f"<g class='series' data-series='{escape(one.label)}'>{''.join(rects)}</g>")
    centres = [left + slot * position + slot / 2 for position in range(count)]
    return _plotted(title, chart_id, series, scale, unit, width, marks, _x_labels(categories, centres, slot))


def line_chart(
    title: str,
    points: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    chart_id: str = "lines",
    empty_note: str = "No data to chart.",
) -> str:
    """Lines over evenly spaced x positions named by ``points`` (``<circle data-series data-x
    data-value>`` per value; a missing value breaks the line). An empty chart is the figure with
    ``empty_note``."""
    count = len(points)
    scale = _scale_of(series, count)
    if scale is None:
        return _empty(title, chart_id, empty_note)
    slot = max(PLOT_WIDTH / count, 2 * MIN_BAR)
    width = max(_LEFT + slot * count + _RIGHT, MIN_WIDTH)
    centres = [_LEFT + slot * position + slot / 2 for position in range(count)]
    marks = []
    for index, one in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        segments: list[list[str]] = [[]]
        dots = []
        for position, (name, x) in enumerate(zip(points, centres, strict=True)):
            value = one.value(position)
            if value is None:
                segments.append([])
                continue
            y = scale.y(value)
            segments[-1].append(f"{_f(x)},{_f(y)}")
            dots.append(
                f"<circle cx='{_f(x)}' cy='{_f(y)}' r='3.5' fill='{colour}' data-series='{escape(one.label)}' "
                f"data-x='{escape(name)}' data-value='{number_text(one.values[position])}'>"
                f"{_tooltip(one.label, name, value, unit)}</circle>"
            )
        lines = "".join(
            f"<polyline points='{' '.join(segment)}' fill='none' stroke='{colour}' stroke-width='2'/>"
            for segment in segments
            if len(segment) > 1
        )
        marks.append(f"<g class='series' data-series='{escape(one.label)}'>{lines}{''.join(dots)}</g>")
    return _plotted(title, chart_id, series, scale, unit, width, marks, _x_labels(points, centres, slot))
