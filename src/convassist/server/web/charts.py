"""The held-out perplexity chart, drawn as inline SVG on the server (no chart library).

Each training job that reports held-out perplexity (the ML service's `basePerplexity` and
`adapterPerplexity` metrics) gets a pair of bars, before and after; lower is better. The
template (partials/perplexity_chart.html) draws the shapes computed here; the held-out
measures table under it (partials/heldout_table.html) lists the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convassist.server.models import TrainingJob
from convassist.server.web.formatting import Clock
from convassist.server.web.heldout import perplexities

WIDTH, HEIGHT = 640, 276
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 60
MAX_JOBS = 8


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    value: float
    label: str


@dataclass(frozen=True, slots=True)
class Group:
    label: str  # the day the job ran
    time: str
    samples: str
    center: float
    before: Bar
    after: Bar
    change: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    right: float
    baseline: float
    bar_width: float
    groups: list[Group]
    ticks: list[Tick]


def nice_step(top: float) -> float:
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw))


def perplexity_chart(jobs: Sequence[TrainingJob], clock: Clock) -> Chart | None:
    """Bars for the newest jobs with both numbers (oldest on the left); None if none have."""
    points = []
    for job in jobs:
        before, after = perplexities(job.metrics or {})
        if before is not None and after is not None:
            points.append((job, before, after))
    points = list(reversed(points[:MAX_JOBS]))
    if not points:
        return None
    step = nice_step(max(max(b, a) for _, b, a in points) * 1.05)
    top = step * 4
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    slot = (WIDTH - LEFT - RIGHT) / len(points)
    bar_width = min(36.0, slot * 0.32)

    def bar(x: float, value: float) -> Bar:
        height = plot_height * value / top
        return Bar(x=x, y=baseline - height, height=height, value=value, label=f"{value:.1f}")

    groups = []
    for index, (job, before, after) in enumerate(points):
        center = LEFT + slot * (index + 0.5)
        change = (after - before) / before * 100 if before else 0.0
        groups.append(
            Group(
                label=clock.day(job.created_at),
                time=clock.time(job.created_at),
                samples=f"{job.sample_count:,} samples",
                center=center,
                before=bar(center - bar_width - 2, before),
                after=bar(center + 2, after),
                change=f"{change:+.0f}%",
            )
        )
    ticks = [Tick(y=baseline - plot_height * i / 4, label=f"{step * i:g}") for i in range(5)]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        bar_width=bar_width,
        groups=groups,
        ticks=ticks,
    )
