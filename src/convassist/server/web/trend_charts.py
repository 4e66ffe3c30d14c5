"""Charts over time for the online measures: lines per adapter, and stacked slot bars, as
inline SVG geometry (partials/online_measures.html draws it; tables carry the numbers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from convassist.server.web.charts import Tick, nice_step

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
MAX_X_LABELS = 8
SERIES_STYLES = 6


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str  # the bucket and value, for the point's tooltip


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    style: str  # a CSS class: `series-all`, `series-0` … `series-5`
    segments: list[str]  # `points` of each polyline (gaps where a bucket has no value)
    points: list[Point]


@dataclass(frozen=True, slots=True)
class XLabel:
    x: float
    text: str


@dataclass(frozen=True, slots=True)
class LineChart:
    width: int
    height: int
    left: int
    right: int
    baseline: int
    ticks: list[Tick]
    x_labels: list[XLabel]
    lines: list[Line]


def style(index: int) -> str:
    return f"series-{index % SERIES_STYLES}"


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    percent: bool,
    unit: str = "",
) -> LineChart:
    """One line per (name, style, values by bucket); shares are drawn 0 to 100%."""
    plot = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot
    found = [v for _, _, values in series for v in values if v is not None]
    step = 0.25 if percent else nice_step(max([*found, 1.0]) * 1.05)
    top = step * 4
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)

    def x(index: int) -> float:
        return round(LEFT + slot * (index + 0.5), 1)

    def shown(value: float) -> str:
        return f"{round(value * 100)}%" if percent else f"{value:.1f}{unit}"

    lines = []
    for name, css, values in series:
        segments: list[list[str]] = [[]]
        points = []
        for index, value in enumerate(values):
            if value is None:
                segments.append([])
                continue
            y = round(baseline - plot * min(value, top) / top, 1)
            segments[-1].append(f"{x(index)},{y}")
            points.append(Point(x(index), y, f"{name}, {labels[index]}: {shown(value)}"))
        lines.append(Line(name, css, [" ".join(s) for s in segments if s], points))
    every = max(1, -(-len(labels) // MAX_X_LABELS))
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        ticks=[
            Tick(y=baseline - plot * i / 4, label=shown(step * i) if percent else f"{step * i:g}")
            for i in range(5)
        ],
        x_labels=[XLabel(x(i), text) for i, text in enumerate(labels) if i % every == 0],
        lines=lines,
    )


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    width: float
    style: str
    label: str


@dataclass(frozen=True, slots=True)
class StackedBar:
    name: str
    y: float
    segments: list[Segment]


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    left: int
    bar_height: int
    bars: list[StackedBar]


BAR_LEFT, BAR_HEIGHT, BAR_GAP = 120, 18, 10


def stacked_bars(rows: Sequence[tuple[str, Sequence[tuple[str, float, str]]]]) -> BarChart:
    """One horizontal bar per (name, [(part label, share, CSS class)]), parts side by side."""
    span = WIDTH - BAR_LEFT - RIGHT
    bars = []
    for row, (name, parts) in enumerate(rows):
        x, segments = float(BAR_LEFT), []
        for label, share, css in parts:
            width = round(span * share, 1)
            segments.append(Segment(x, width, css, f"{label}: {round(share * 100)}%"))
            x += width
        bars.append(StackedBar(name, TOP + row * (BAR_HEIGHT + BAR_GAP), segments))
    height = TOP * 2 + len(rows) * (BAR_HEIGHT + BAR_GAP)
    return BarChart(WIDTH, height, BAR_LEFT, BAR_HEIGHT, bars)
