"""The online measures Smart Reply reported, computed from what was really shown and sent.

- Coverage: incoming messages (not reactions) in the period that got at least one completed
  suggestion, over all incoming messages in the period (bucketed by the message's `sent_at`).
- Usage by slot: of the completed suggestions (`completed`, `accepted`, `edited`, `rejected`;
  bucketed by `created_at`), the share whose candidate in slot 1, 2, 3… was used, and the share
  where none was. Used means: its outbox entry was `sent` or `confirmed` (slot: the entry's
  `candidate_index`); a suggestion with an outbox entry in any other state (queued, sending,
  failed, expired) is not used; one without an outbox entry is used when it was accepted or
  edited through `POST /api/responses/{id}/action` (slot: `chosen_index`). `repliedInstead`
  counts unused suggestions with a `replied` sample (the owner answered from the phone).
- Edit distance: for used suggestions, the Levenshtein distance in characters (code points)
  between the chosen candidate and what was sent (the outbox text, else `edited_response`;
  an accepted one is 0), both stripped; normalised by the longer text's length.
- Buckets: UTC days up to 31 days, else weeks from Monday to Monday; the period runs from
  the first bucket's start to the last one's end (tomorrow's midnight, or next Monday's).
- Per adapter: the adapter part of `model_version` (`core/model_version.py`); the base
  model when there is none (or the version does not parse).

Four queries whatever the period: coverage and usage are counted in SQL per day and model
version; only used suggestions' texts are read, for their edit distances.
"""

from __future__ import annotations

import functools
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.model_version import MalformedModelVersion, ModelVersion
from convassist.server.measures.distance import levenshtein, normalized
from convassist.server.measures.schemas import (
    AdapterMeasures,
    Bucket,
    EditMeasures,
    Measures,
    OnlineMeasures,
    SlotUse,
)
from convassist.server.models import (
    Direction,
    GeneratedResponse,
    Message,
    MessageType,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
    SampleSource,
    TrainingSample,
    utcnow,
)

DAILY_UP_TO = 31
MIN_SLOTS = 3
STREAM_ROWS = 1000
# How far a phone's clock (a message's sent_at) may run ahead of the server's.
CLOCK_SKEW = timedelta(days=1)
BASE_LABEL = "base model"
SHOWN = (
    ResponseStatus.COMPLETED,
    ResponseStatus.ACCEPTED,
    ResponseStatus.EDITED,
    ResponseStatus.REJECTED,
)
SENT = (OutboxStatus.SENT, OutboxStatus.CONFIRMED)


@dataclass
class Tally:
    """Counts for one bucket of one adapter (or of all of them)."""

    incoming: int = 0
    covered: int = 0
    suggestions: int = 0
    slots: Counter[int] = field(default_factory=Counter)
    replied: int = 0
    distances: list[tuple[int, float]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.incoming += other.incoming
        self.covered += other.covered
        self.suggestions += other.suggestions
        self.slots.update(other.slots)
        self.replied += other.replied
        self.distances.extend(other.distances)


@functools.cache
def adapter_of(model_version: str | None) -> str | None:
    """The adapter id in a `model_version`; None for the base model."""
    if not model_version:
        return None
    try:
        return ModelVersion.parse(model_version).adapter_id
    except MalformedModelVersion:
        return None


def _day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column (SQLite stores naive UTC text)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _measures(tally: Tally, slots: int) -> dict[str, Any]:
    shown = tally.suggestions
    used = sum(tally.slots.values())
    none_used = shown - used
    distances = [float(d) for d, _ in tally.distances]
    shares = [n for _, n in tally.distances]
    return {
        "incoming_messages": tally.incoming,
        "covered_messages": tally.covered,
        "coverage": _share(tally.covered, tally.incoming),
        "suggestions": tally.suggestions,
        "used": used,
        "used_share": _share(used, tally.suggestions),
        "slots": [
            SlotUse(slot=i + 1, used=tally.slots[i], share=_share(tally.slots[i], shown))
            for i in range(slots)
        ],
        "none_used": none_used,
        "none_share": _share(none_used, tally.suggestions),
        "replied_instead": tally.replied,
        "edits": EditMeasures(
            count=len(distances),
            mean_distance=_mean(distances),
            median_distance=_median(distances),
            mean_normalized=_mean(shares),
            median_normalized=_median(shares),
        ),
    }


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime
    bucket: Literal["day", "week"]

    @classmethod
    def last(cls, days: int, now: datetime) -> Period:
        """The last `days` UTC days up to today; weekly periods start on a Monday."""
        bucket: Literal["day", "week"] = "day" if days <= DAILY_UP_TO else "week"
        today = now.astimezone(UTC).date()
        first, last = today - timedelta(days=days - 1), today
        if bucket == "week":
            first -= timedelta(days=first.weekday())
            last += timedelta(days=6 - last.weekday())
        return cls(_midnight(first), _midnight(last + timedelta(days=1)), bucket)

    @property
    def step(self) -> timedelta:
        return timedelta(days=1 if self.bucket == "day" else 7)

    def starts(self) -> list[date]:
        first, end, step = self.since.date(), self.until.date(), self.step
        return [first + step * i for i in range((end - first) // step)]

    def bucket_of(self, day: date) -> date:
        return day if self.bucket == "day" else day - timedelta(days=day.weekday())


# Whose outbox entry was sent: its slot; with none, one accepted/edited via the action API.
_USED_SLOT = case(
    (
        OutboxMessage.id.is_not(None),
        case(
            (
                OutboxMessage.status.in_(SENT),
                func.coalesce(OutboxMessage.candidate_index, GeneratedResponse.chosen_index, 0),
            ),
            else_=None,
        ),
    ),
    (
        GeneratedResponse.status.in_((ResponseStatus.ACCEPTED, ResponseStatus.EDITED)),
        func.coalesce(GeneratedResponse.chosen_index, 0),
    ),
    else_=None,
)


class _Tallies:
    """Tallies by (adapter, bucket start); `ALL` is every adapter together."""

    ALL = "\0all"

    def __init__(self, period: Period) -> None:
        self.period = period
        self.rows: dict[tuple[str | None, date], Tally] = {}
        self.first_seen: dict[str | None, date] = {}
        self._found: dict[tuple[str | None, Any], tuple[Tally, Tally]] = {}

    def __call__(self, model_version: str | None, day: Any) -> tuple[Tally, Tally]:
        """The tallies a row counts in: its adapter's, and all adapters'."""
        found = self._found.get((model_version, day))
        if found is None:
            start = self.period.bucket_of(_as_date(day))
            adapter = adapter_of(model_version)
            seen = self.first_seen.get(adapter)
            self.first_seen[adapter] = start if seen is None else min(seen, start)
            found = self._found[model_version, day] = (
                self.get(adapter, start),
                self.get(self.ALL, start),
            )
        return found

    def get(self, adapter: str | None, start: date) -> Tally:
        return self.rows.setdefault((adapter, start), Tally())


async def online_measures(
    session: AsyncSession, days: int, *, now: datetime | None = None
) -> OnlineMeasures:
    """Coverage, usage by slot and edit distance over the last `days` days, per adapter."""
    period = Period.last(days, now or utcnow())
    tallies = _Tallies(period)
    await _count_coverage(session, period, tallies)
    await _count_usage(session, period, tallies)
    await _measure_edits(session, period, tallies)
    return _result(period, tallies)


async def _count_coverage(session: AsyncSession, period: Period, tallies: _Tallies) -> None:
    in_period = (
        Message.direction == Direction.INCOMING,
        Message.message_type != MessageType.REACTION,
        Message.sent_at >= period.since,
        Message.sent_at < period.until,
    )
    day = _day(session, Message.sent_at).label("day")
    incoming = await session.execute(select(day, func.count()).where(*in_period).group_by(day))
    for value, count in incoming:
        tallies.get(_Tallies.ALL, period.bucket_of(_as_date(value))).incoming += count
    # Each covered message once: its first completed suggestion (rank 1) names the model.
    ranked = (
        select(
            day,
            func.coalesce(GeneratedResponse.model_version, "").label("version"),
            func.row_number()
            .over(
                partition_by=GeneratedResponse.message_id,
                order_by=(GeneratedResponse.created_at, GeneratedResponse.id),
            )
            .label("rank"),
        )
        .join(Message, Message.id == GeneratedResponse.message_id)
        .where(
            GeneratedResponse.status.in_(SHOWN),
            # Implied (suggestions follow their message), and it spares older rows' lookups.
            GeneratedResponse.created_at >= period.since - CLOCK_SKEW,
            *in_period,
        )
        .subquery()
    )
    covered = await session.execute(
        select(ranked.c.day, ranked.c.version, func.count())
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.day, ranked.c.version)
    )
    for value, version, count in covered:
        for tally in tallies(version or None, value):
            tally.covered += count


def _shown_in(period: Period) -> tuple[ColumnElement[bool], ...]:
    return (
        GeneratedResponse.status.in_(SHOWN),
        GeneratedResponse.created_at >= period.since,
        GeneratedResponse.created_at < period.until,
    )


async def _count_usage(session: AsyncSession, period: Period, tallies: _Tallies) -> None:
    replied = exists().where(
        TrainingSample.response_id == GeneratedResponse.id,
        TrainingSample.source == SampleSource.REPLIED,
    )
    inner = (
        select(
            _day(session, GeneratedResponse.created_at).label("day"),
            GeneratedResponse.model_version.label("version"),
            _USED_SLOT.label("slot"),
            case((replied, 1), else_=0).label("replied"),
        )
        .outerjoin(OutboxMessage, OutboxMessage.response_id == GeneratedResponse.id)
        .where(*_shown_in(period))
        .subquery()
    )
    columns = (inner.c.day, inner.c.version, inner.c.slot, inner.c.replied)
    rows = await session.execute(select(*columns, func.count()).group_by(*columns))
    for day, version, slot, was_replied, count in rows:
        for tally in tallies(version, day):
            tally.suggestions += count
            if slot is not None:
                tally.slots[int(slot)] += count
            elif was_replied:
                tally.replied += count


async def _measure_edits(session: AsyncSession, period: Period, tallies: _Tallies) -> None:
    used = await session.stream(
        select(
            _day(session, GeneratedResponse.created_at),
            GeneratedResponse.model_version,
            GeneratedResponse.candidates,
            _USED_SLOT,
            func.coalesce(OutboxMessage.text, GeneratedResponse.edited_response),
            OutboxMessage.id.is_not(None),
            GeneratedResponse.status,
        )
        .outerjoin(OutboxMessage, OutboxMessage.response_id == GeneratedResponse.id)
        .where(*_shown_in(period), _USED_SLOT.is_not(None))
    )
    async for rows in used.partitions(STREAM_ROWS):
        for day, version, candidates, slot, sent, via_outbox, status in rows:
            if not isinstance(candidates, list) or not 0 <= slot < len(candidates):
                continue
            chosen = str(candidates[slot].get("text") or "").strip()
            edited = via_outbox or status == ResponseStatus.EDITED
            text = (sent or "").strip() if edited else chosen
            distance = levenshtein(chosen, text)
            for tally in tallies(version, day):
                tally.distances.append((distance, normalized(chosen, text, distance)))


def _result(period: Period, tallies: _Tallies) -> OnlineMeasures:
    starts = period.starts()
    slots = max([MIN_SLOTS, *(s + 1 for t in tallies.rows.values() for s in t.slots)])
    incoming = {start: tallies.get(_Tallies.ALL, start).incoming for start in starts}

    def series(adapter: str | None) -> tuple[Measures, list[Bucket]]:
        total, buckets = Tally(), []
        for start in starts:
            tally = tallies.rows.get((adapter, start), Tally())
            tally.incoming = incoming[start]
            total.add(tally)
            end = _midnight(start + period.step)
            buckets.append(Bucket(start=_midnight(start), end=end, **_measures(tally, slots)))
        return Measures(**_measures(total, slots)), buckets

    adapters = sorted(
        tallies.first_seen,
        key=lambda a: (a is not None, tallies.first_seen[a], a or ""),
    )
    totals, buckets = series(_Tallies.ALL)
    per_adapter = []
    for adapter in adapters:
        adapter_totals, adapter_buckets = series(adapter)
        per_adapter.append(
            AdapterMeasures(
                adapter_id=adapter,
                label=adapter or BASE_LABEL,
                totals=adapter_totals,
                buckets=adapter_buckets,
            )
        )
    return OnlineMeasures(
        since=period.since,
        until=period.until,
        bucket=period.bucket,
        totals=totals,
        buckets=buckets,
        adapters=per_adapter,
    )
