"""A training job's held-out measures, read from its metrics (the job row's or the adapter's).

The ML service reports `basePerplexity`/`adapterPerplexity`, `quality` (replies generated for
held-out prompts by the base model, the new adapter and the adapter active when the job was
queued, scored against what the owner really sent), `gate` (whether the adapter was switched
on, and why) and `plan` with `budgetMinutes`/`withinBudget` (how the job fit its time
budget). Jobs from before a measure existed lack it: every field is None then, shown "—".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convassist.server.models import TrainingJob


def number(value: Any) -> float | None:
    """A finite number, else None (metrics are JSON from another process)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def perplexities(metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Held-out perplexity (base model, with the adapter) from a job's or adapter's metrics."""
    return number(metrics.get("basePerplexity")), number(metrics.get("adapterPerplexity"))


@dataclass(frozen=True, slots=True)
class Replies:
    """How one model's held-out replies (or the owner's own) score."""

    usable_top3: float | None
    chrf: float | None
    mean_words: float | None
    lowercase_share: float | None

    @classmethod
    def parse(cls, value: Any) -> Replies | None:
        data = _mapping(value)
        if data is None:
            return None
        return cls(
            usable_top3=number(data.get("usableTop3")),
            chrf=number(data.get("chrf")),
            mean_words=number(data.get("meanWords")),
            lowercase_share=number(data.get("lowercaseShare")),
        )


NO_REPLIES = Replies(None, None, None, None)


@dataclass(frozen=True, slots=True)
class Quality:
    replies: int | None
    owner: Replies
    base: Replies
    adapter: Replies
    active: Replies | None
    """The adapter active when the job was queued; None when the base model was."""
    closer_than_base: float | None


@dataclass(frozen=True, slots=True)
class Gate:
    activate: bool
    reason: str
    compared_with: str | None
    """`base` or the id of the adapter that was active."""


@dataclass(frozen=True, slots=True)
class Plan:
    reason: str | None
    budget_minutes: float | None
    within_budget: bool | None


@dataclass(frozen=True, slots=True)
class HeldOut:
    base_perplexity: float | None
    adapter_perplexity: float | None
    quality: Quality | None
    gate: Gate | None
    plan: Plan | None

    @property
    def measured(self) -> bool:
        """Whether there is anything to show in the measures table."""
        has_perplexity = self.base_perplexity is not None and self.adapter_perplexity is not None
        return has_perplexity or self.quality is not None or self.gate is not None


def _quality(value: Any) -> Quality | None:
    data = _mapping(value)
    if data is None:
        return None
    replies = data.get("replies")
    return Quality(
        replies=replies if isinstance(replies, int) and not isinstance(replies, bool) else None,
        owner=Replies.parse(data.get("owner")) or NO_REPLIES,
        base=Replies.parse(data.get("base")) or NO_REPLIES,
        adapter=Replies.parse(data.get("adapter")) or NO_REPLIES,
        active=Replies.parse(data.get("active")),
        closer_than_base=number(data.get("closerThanBase")),
    )


def _gate(value: Any) -> Gate | None:
    data = _mapping(value)
    if data is None or not isinstance(data.get("activate"), bool):
        return None
    reason, compared = data.get("reason"), data.get("comparedWith")
    return Gate(
        activate=data["activate"],
        reason=reason if isinstance(reason, str) else "",
        compared_with=compared if isinstance(compared, str) else None,
    )


def _plan(metrics: Mapping[str, Any]) -> Plan | None:
    plan = _mapping(metrics.get("plan"))
    reason = plan.get("reason") if plan else None
    within = metrics.get("withinBudget")
    result = Plan(
        reason=reason if isinstance(reason, str) and reason else None,
        budget_minutes=number(metrics.get("budgetMinutes")),
        within_budget=within if isinstance(within, bool) else None,
    )
    return None if result == Plan(None, None, None) else result


def held_out(metrics: Mapping[str, Any] | None) -> HeldOut:
    """Everything the page shows of a job's evaluation; None for what it lacks."""
    metrics = metrics or {}
    before, after = perplexities(metrics)
    return HeldOut(
        base_perplexity=before,
        adapter_perplexity=after,
        quality=_quality(metrics.get("quality")),
        gate=_gate(metrics.get("gate")),
        plan=_plan(metrics),
    )


def measure_rows(jobs: Sequence[TrainingJob]) -> list[tuple[TrainingJob, HeldOut]]:
    """The jobs (newest first, as given) that have any held-out measure, with them."""
    rows = [(job, held_out(job.metrics)) for job in jobs]
    return [(job, measures) for job, measures in rows if measures.measured]
