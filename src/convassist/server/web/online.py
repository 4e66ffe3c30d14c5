"""The Training page's online measures: how many messages got suggestions, which slot was
used, and how much the owner edited, over time and per adapter (`server/measures/`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from convassist.server.deps import SessionDep
from convassist.server.measures import service
from convassist.server.measures.schemas import Measures, OnlineMeasures
from convassist.server.web.deps import PageViewer
from convassist.server.web.render import render
from convassist.server.web.trend_charts import line_chart, stacked_bars, style

router = APIRouter()

RANGES = {7: "7 days", 30: "30 days", 90: "90 days", 365: "A year"}
DEFAULT_DAYS = 30
ALL = "All models"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a day or week, for one model (or all of them)."""

    period: str
    model: str
    measures: Measures


def _label(start: datetime) -> str:
    return f"{start.day} {start:%b}"


def _slot_parts(measures: Measures) -> list[tuple[str, float, str]]:
    parts = [(f"Slot {s.slot}", s.share or 0.0, f"slot-{s.slot}") for s in measures.slots]
    return [*parts, ("None used", measures.none_share or 0.0, "slot-none")]


def measures_view(result: OnlineMeasures) -> dict[str, Any]:
    """Charts, bars and table rows for the partial."""
    labels = [_label(b.start) for b in result.buckets]
    many = len(result.adapters) > 1
    # (name, CSS class, buckets, is one adapter); "all models" only when there are several.
    series = [(ALL, "series-all", result.buckets, False)] if many else []
    series += [(a.label, style(i), a.buckets, True) for i, a in enumerate(result.adapters)]
    # An adapter's coverage line shows only the buckets it served (else it would lie at 0).
    drawn = series[1:] + series[:1] if many else series  # "all models" on top (dashed)
    coverage = [
        (name, css, [b.coverage if b.covered_messages or not (many and own) else None for b in bs])
        for name, css, bs, own in drawn
    ]
    usage = [(name, css, [b.used_share for b in bs]) for name, css, bs, _ in drawn]
    edits = [(name, css, [b.edits.median_distance for b in bs]) for name, css, bs, _ in drawn]
    totals = [(ALL, result.totals)] if many else []
    totals += [(a.label, a.totals) for a in result.adapters]
    slot_rows = [(name, _slot_parts(t)) for name, t in totals if t.suggestions]
    rows = []
    for index in reversed(range(len(result.buckets))):
        bucket = result.buckets[index]
        if bucket.incoming_messages or bucket.suggestions:
            rows.append(Row(labels[index], series[0][0] if series else "", bucket))
        for adapter in result.adapters if many else []:
            mine = adapter.buckets[index]
            if mine.covered_messages or mine.suggestions:
                rows.append(Row(labels[index], adapter.label, mine))
    return {
        "measures": result,
        "coverage_chart": line_chart(labels, coverage, percent=True),
        "usage_chart": line_chart(labels, usage, percent=True),
        "edit_chart": line_chart(labels, edits, percent=False, unit=" chars"),
        "slot_bars": stacked_bars(slot_rows),
        "legend": [(name, css) for name, css, _, _ in series],
        "rows": rows,
    }


@router.get("/training/online")
async def online_panel(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    days: Annotated[str | None, Query(max_length=4)] = None,
) -> Response:
    """The measures section (loaded by the Training page; the range buttons reload it)."""
    chosen = next((d for d in RANGES if str(d) == days), DEFAULT_DAYS)
    result = await service.online_measures(session, chosen)
    return render(
        request,
        viewer,
        "partials/online_measures.html",
        days=chosen,
        ranges=RANGES,
        **measures_view(result),
    )
