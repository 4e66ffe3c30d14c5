"""The activation gate: is a new adapter switched on by itself, or held back?

The new adapter is compared, on the same held-out replies, with the adapter that was active
when the job was queued (or with the base model when none was, or the active one was
trained on another base model). It is held back when it is worse on any of:

1. usable in the top 3: it loses more replies than it wins (a reply usable with one and not
   the other) by more than `NOISE_ERRORS` standard errors of that difference,
   `sqrt(lost + won)`;
2. best-of-3 chrF: its mean per-reply difference is below -max(`CHRF_POINTS`,
   `NOISE_ERRORS` standard errors of the mean difference);
3. perplexity: higher by more than `PERPLEXITY_TOLERANCE` (2 %).

Differences within noise never hold an adapter back; a real loss on any measure does,
whatever the others say. The owner can still switch a held-back adapter on. With nothing to
measure (no held-out replies) it is switched on as trained, and the reason says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PERPLEXITY_TOLERANCE = 0.02
CHRF_POINTS = 1.0
NOISE_ERRORS = 2.0
"""How many standard errors a loss must exceed: about a 2 % chance, per measure, of holding
back an adapter exactly as good as the other. With one, the two suggestion measures held
back up to about 30 % of such adapters: a job's adapter whose chrF was 12.0 against 13.2 on the
40 replies it measured was held back, and on all 336 it held out the two tied (13.7)."""
BASE = "base"


@dataclass(frozen=True)
class Side:
    """One model's held-out measures: perplexity and, per measured reply, whether one of its
    suggestions was usable and its best chrF (the same replies, in the same order, on both
    sides)."""

    perplexity: float | None
    usable: Sequence[bool]
    chrf: Sequence[float]


@dataclass(frozen=True)
class Gate:
    activate: bool
    reason: str
    compared_with: str
    """`base` or the id of the adapter that was active."""

    def metrics(self) -> dict[str, Any]:
        return {
            "activate": self.activate,
            "reason": self.reason,
            "comparedWith": self.compared_with,
        }


def usable_worse(new: Sequence[bool], old: Sequence[bool]) -> bool:
    lost = sum(1 for mine, theirs in zip(new, old, strict=True) if theirs and not mine)
    won = sum(1 for mine, theirs in zip(new, old, strict=True) if mine and not theirs)
    return lost - won > NOISE_ERRORS * math.sqrt(lost + won)


def chrf_worse(new: Sequence[float], old: Sequence[float]) -> bool:
    differences = [mine - theirs for mine, theirs in zip(new, old, strict=True)]
    if not differences:
        return False
    count = len(differences)
    error = statistics.stdev(differences) / math.sqrt(count) if count > 1 else 0.0
    return statistics.mean(differences) < -max(CHRF_POINTS, NOISE_ERRORS * error)


def perplexity_worse(new: float | None, old: float | None) -> bool:
    return new is not None and old is not None and new > old * (1 + PERPLEXITY_TOLERANCE)


def decide(new: Side, old: Side, compared_with: str) -> Gate:
    """Whether the new adapter is switched on by itself, and the sentence that says why."""
    other = "the base model" if compared_with == BASE else "the active adapter"
    replies = len(new.usable)
    if not replies and (new.perplexity is None or old.perplexity is None):
        return Gate(
            True, "Switched on as trained: nothing was held out to measure it on.", compared_with
        )
    on = f"on {replies} held-out replies" if replies else "on the held-out replies"
    usable = (
        f"its suggestions were usable {_percent(new.usable)} of the time against "
        f"{_percent(old.usable)} for {other}"
    )
    chrf = f"their chrF was {_mean(new.chrf):.1f} against {_mean(old.chrf):.1f} for {other}"
    perplexity = (
        f"its perplexity was {new.perplexity:.2f} against {old.perplexity:.2f} for {other}"
        if new.perplexity is not None and old.perplexity is not None
        else None
    )
    if replies and usable_worse(new.usable, old.usable):
        return Gate(False, f"Not switched on: {on} {usable}.", compared_with)
    if replies and chrf_worse(new.chrf, old.chrf):
        return Gate(False, f"Not switched on: {on} {chrf}.", compared_with)
    if perplexity_worse(new.perplexity, old.perplexity):
        return Gate(False, f"Not switched on: {on} {perplexity}.", compared_with)
    said = [usable, chrf] if replies else []
    said += [perplexity] if perplexity else []
    return Gate(True, f"Switched on: {on} {_and(said)}.", compared_with)


def _percent(flags: Sequence[bool]) -> str:
    return f"{sum(flags) / len(flags):.0%}" if flags else "0%"


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else 0.0


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
