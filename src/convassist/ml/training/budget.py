"""What a training job can do in its time budget: the plan (pure; no torch, no clock).

The runner measures its throughput on the first real training steps (`trainer.train`'s
calibration) and `choose` fixes the rest of the job from it: how many passes, at which
context length, with the LoRA on how many of the top layers and on how much of the history.
Preference: every sample once at the full settings (`DEFAULT_EPOCHS`; more passes only when
the owner asks for them); when one pass does not fit, shorter contexts first, then fewer
layers, then only the newest share of each conversation's samples. Below `MIN_LAYER_SHARE` of
the layers at the shortest context and `MIN_HISTORY_SHARE` of the samples, the job cannot be
done in its budget: `choose` raises ValueError saying how long it would need.

Costs: a token costs the same at every context length here (attention is a small part at
these lengths), and `1 + LAYER_BACKWARD_COST * share of layers adapted` with the LoRA on the
top layers (the backward pass stops at the lowest one): docs/ml-service.md measured the top
half 1.46 times as fast as all layers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convassist.core.training import DEFAULT_EPOCHS

LAYER_BACKWARD_COST = 1.7
"""Extra cost per token of the backward pass through all layers, as a share of the rest:
(1 + 1.7) / (1 + 0.85) = 1.46 (all layers against the top half, "Training speed")."""
MIN_LAYER_SHARE = 0.25
MIN_HISTORY_SHARE = 0.25
MIN_SAMPLES = 16
"""A job trains on at least this many samples (all of them when it has fewer)."""
SAFETY = 1.1
"""Estimates are stretched by this much: throughput varies between batches."""
RESERVE_SECONDS = 20.0
RESERVE_SHARE = 0.3
"""Export and held-out evaluation get max(`RESERVE_SECONDS`, `RESERVE_SHARE` * budget)."""
FINISH_SECONDS = 3.0
"""The end of the budget kept for storing the adapter: evaluation stops before it."""
TOLERANCE_SECONDS = 5.0
"""A job is `withinBudget` when it took at most its budget plus this."""


def reserve_seconds(budget_seconds: float) -> float:
    """The end of the budget kept for export and evaluation."""
    return max(RESERVE_SECONDS, RESERVE_SHARE * budget_seconds)


def budget_for(seconds: float) -> float:
    """The smallest budget that leaves `seconds` before its reserve."""
    return max(seconds + RESERVE_SECONDS, seconds / (1 - RESERVE_SHARE))


def evaluation_deadline(started: float, budget_seconds: float) -> float:
    """When evaluation stops generating (a `time.monotonic()` value, from the job's start)."""
    return started + budget_seconds - FINISH_SECONDS


def contexts(max_length: int) -> tuple[int, ...]:
    """Context lengths to try, longest first: the full one, 3/4 and 1/2 (multiples of 16)."""
    shorter = (max_length * 3 // 4 // 16 * 16, max_length // 2 // 16 * 16)
    return (max_length, *sorted({n for n in shorter if 16 <= n < max_length}, reverse=True))


def newest_first(conversation_ids: Sequence[str | None]) -> list[int]:
    """An order of the samples (their indices) in which any prefix holds each conversation's
    newest ones: the last of every conversation, then the one before, and so on (samples
    come oldest first within a conversation). Samples without a conversation form one."""
    groups: dict[str | None, list[int]] = {}
    for index, conversation in enumerate(conversation_ids):
        groups.setdefault(conversation, []).append(index)
    ranked = [
        (rank, first, index)
        for first, members in enumerate(groups.values())
        for rank, index in enumerate(reversed(members))
    ]
    return [index for _, _, index in sorted(ranked)]


@dataclass(frozen=True)
class Situation:
    """What the plan is made from. `lengths` maps each context length (`contexts`) to the
    token counts of the training examples at that length, in `newest_first` order."""

    budget_seconds: float
    spent_seconds: float
    """Since the job started: loading, tokenizing and the calibration steps."""
    tokens_per_second: float
    """Measured on the calibration steps, with the LoRA on `layers` of `total_layers`."""
    layers: int
    total_layers: int
    lengths: Mapping[int, Sequence[int]]
    epochs: int | None = None
    """The passes the owner asked for (at most that many), or None: `DEFAULT_EPOCHS`."""
    hardware: str = "cpu"
    """Where it runs, for the reason ("cpu/bf16")."""

    @property
    def available(self) -> float:
        return self.budget_seconds - self.spent_seconds - reserve_seconds(self.budget_seconds)

    def seconds(self, max_length: int, layers: int, samples: int, epochs: int) -> float:
        tokens = epochs * sum(self.lengths[max_length][:samples])
        cost = (1 + LAYER_BACKWARD_COST * layers / self.total_layers) / (
            1 + LAYER_BACKWARD_COST * self.layers / self.total_layers
        )
        return SAFETY * tokens * cost / max(self.tokens_per_second, 1e-9)


@dataclass(frozen=True)
class Plan:
    budget_seconds: float
    tokens_per_second: float
    epochs: int
    layers: int
    max_length: int
    samples: int
    """How many training samples (the first in `newest_first` order)."""
    total_samples: int
    estimated_seconds: float
    """Training time the plan expects, from its choice on."""
    reason: str

    @property
    def history_share(self) -> float:
        return self.samples / self.total_samples if self.total_samples else 0.0

    def metrics(self) -> dict[str, Any]:
        return {
            "budgetSeconds": round(self.budget_seconds, 1),
            "calibrationTokensPerSecond": round(self.tokens_per_second, 1),
            "epochs": self.epochs,
            "loraLayers": self.layers,
            "maxLength": self.max_length,
            "historyShare": round(self.history_share, 3),
            "trainSamples": self.samples,
            "estimatedSeconds": round(self.estimated_seconds, 1),
            "reason": self.reason,
        }


def _plan(s: Situation, max_length: int, layers: int, samples: int, epochs: int) -> Plan:
    total = len(s.lengths[max_length])
    seconds = s.seconds(max_length, layers, samples, epochs)
    reason = _reason(s, epochs, layers, max_length, samples, total, seconds)
    return Plan(
        s.budget_seconds,
        s.tokens_per_second,
        epochs,
        layers,
        max_length,
        samples,
        total,
        seconds,
        reason,
    )


def choose(s: Situation) -> Plan:
    """The most preferred plan that fits the time left; ValueError when none does."""
    if not s.tokens_per_second > 0:
        raise ValueError(
            f"This job cannot finish in {_minutes(s.budget_seconds)} minutes on this machine: "
            "its speed could not even be measured. Give it a larger budget."
        )
    lengths = sorted(s.lengths, reverse=True)
    longest, shortest = lengths[0], lengths[-1]
    total = len(s.lengths[longest])
    fewest_layers = max(1, min(s.layers, math.ceil(MIN_LAYER_SHARE * s.total_layers)))
    fewest_samples = min(total, max(MIN_SAMPLES, math.ceil(MIN_HISTORY_SHARE * total)))
    candidates = [
        *((longest, s.layers, total, e) for e in range(s.epochs or DEFAULT_EPOCHS, 0, -1)),
        *((n, s.layers, total, 1) for n in lengths[1:]),
        *((shortest, k, total, 1) for k in range(s.layers - 1, fewest_layers - 1, -1)),
    ]
    for max_length, layers, samples, epochs in candidates:
        if s.seconds(max_length, layers, samples, epochs) <= s.available:
            return _plan(s, max_length, layers, samples, epochs)
    # The newest samples that fit (time grows with their number).
    fits = bisect.bisect_right(
        range(total + 1),
        s.available,
        key=lambda n: s.seconds(shortest, fewest_layers, n, 1),
    )
    if fits - 1 >= fewest_samples:
        return _plan(s, shortest, fewest_layers, fits - 1, 1)
    needed = budget_for(s.spent_seconds + s.seconds(shortest, fewest_layers, fewest_samples, 1))
    raise ValueError(
        f"This job cannot finish in {_minutes(s.budget_seconds)} minutes on this machine: "
        f"measured {s.tokens_per_second:,.0f} tokens/s on {s.hardware}, even "
        f"{fewest_samples:,} of the {total:,} replies at {shortest} tokens with the LoRA on "
        f"{fewest_layers} layers need about {_minutes(needed)} minutes. Give it a larger "
        "budget."
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}".removesuffix(".0")


def _reason(
    s: Situation,
    epochs: int,
    layers: int,
    max_length: int,
    samples: int,
    total: int,
    seconds: float,
) -> str:
    used = f"{samples:,} replies" if samples == total else f"the newest {samples:,} of {total:,}"
    passes = "1 pass" if epochs == 1 else f"{epochs} passes"
    longest = max(s.lengths)
    context = f"{max_length} tokens" + (f" (not {longest})" if max_length != longest else "")
    lora = f", the LoRA on the top {layers} layers (not {s.layers})" if layers != s.layers else ""
    end = s.spent_seconds + seconds
    return (
        f"Measured {s.tokens_per_second:,.0f} tokens/s on {s.hardware}: {passes} over {used} at "
        f"{context}{lora} fit in {_minutes(end)} of the {_minutes(s.budget_seconds)} minutes, "
        f"leaving {_minutes(s.budget_seconds - end)} for export and evaluation."
    )
