"""Online measures (`GET /api/training/online`): coverage, usage by slot, edit distance, per
day or week and per adapter, from rows built directly (messages, suggestions, outbox, samples).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.server.measures.distance import levenshtein, normalized
from convassist.server.measures.service import online_measures
from convassist.server.models import Direction, MessageType, OutboxStatus, ResponseStatus, utcnow
from tests.support.measures import BASE, LORA, Rows

NOW = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)  # a Wednesday


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


async def _build_week(session: AsyncSession) -> None:
    rows = Rows(session)
    accepted = ResponseStatus.ACCEPTED
    # 10 March: three messages, all covered (two by the base model first, one by lora-one).
    m1 = rows.message(at(10, 10))
    rows.suggestion(m1, accepted, outbox=(OutboxStatus.SENT, 1, "Sounds good!!"))  # slot 2, d=2
    m2 = rows.message(at(10, 11))
    rows.suggestion(m2, ResponseStatus.REJECTED)  # the first suggestion: coverage is the base's
    rows.suggestion(m2, accepted, version=LORA, after=timedelta(minutes=1), chosen=0)  # API, d=0
    m3 = rows.message(at(10, 12))
    rows.suggestion(m3, accepted, version=LORA, outbox=(OutboxStatus.FAILED, 0, "See you at 7"))
    # 11 March.
    m4 = rows.message(at(11, 9))
    rows.suggestion(m4, accepted, outbox=(OutboxStatus.CONFIRMED, 2, "  On my way "))  # d=0
    rows.suggestion(rows.message(at(11, 9, 30)), replied=True)
    rows.suggestion(rows.message(at(11, 10)), ResponseStatus.FAILED)  # not covered, not shown
    rows.message(at(11, 10, 30))  # no suggestion
    m12 = rows.message(at(11, 11))
    rows.suggestion(m12, ResponseStatus.EDITED, version=LORA, chosen=1, edited="Sounds good to me")
    m13 = rows.message(at(11, 11, 30))
    rows.suggestion(m13, accepted, outbox=(OutboxStatus.EXPIRED, 0, "See you at 7"))
    m14 = rows.message(at(11, 12))
    rows.suggestion(m14, accepted, version=LORA, outbox=(OutboxStatus.QUEUED, 0, "See you at 7"))
    # Not counted: reactions, the owner's own messages, anything before the period.
    rows.message(at(11, 13), kind=MessageType.REACTION)
    rows.message(at(11, 13), direction=Direction.OUTGOING)
    early = rows.message(at(4, 23, 59, 59))
    rows.suggestion(early, accepted, chosen=0, after=timedelta(seconds=0))
    # The first second of the period counts (5 March), uncovered.
    rows.message(at(5, 0))
    await rows.save()


def _slots(measures: Any) -> list[tuple[int, float | None]]:
    return [(s.used, s.share) for s in measures.slots]


async def test_coverage_usage_and_edit_distance_per_day_and_adapter(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        await _build_week(session)
        result = await online_measures(session, 7, now=NOW)

    assert result.bucket == "day"
    assert (result.since, result.until) == (at(5, 0), at(12, 0))
    assert [b.start.day for b in result.buckets] == [5, 6, 7, 8, 9, 10, 11]
    assert result.buckets[-1].end == at(12, 0)
    totals = result.totals
    assert (totals.incoming_messages, totals.covered_messages) == (11, 8)
    assert totals.coverage == pytest.approx(8 / 11)
    assert (totals.suggestions, totals.used, totals.none_used) == (9, 4, 5)
    assert _slots(totals) == [(1, 1 / 9), (2, 2 / 9), (1, 1 / 9)]
    assert totals.none_share == pytest.approx(5 / 9)
    assert totals.replied_instead == 1
    edits = totals.edits
    assert (edits.count, edits.mean_distance, edits.median_distance) == (4, 2.0, 1.0)
    assert edits.mean_normalized == pytest.approx((2 / 13 + 6 / 17) / 4)
    assert edits.median_normalized == pytest.approx(1 / 13)

    by_day = {b.start.day: b for b in result.buckets}
    assert (by_day[5].incoming_messages, by_day[5].covered_messages) == (1, 0)
    assert by_day[5].coverage == 0 and by_day[5].used_share is None
    assert (by_day[10].incoming_messages, by_day[10].covered_messages) == (3, 3)
    assert (by_day[11].incoming_messages, by_day[11].covered_messages) == (7, 5)
    assert by_day[6].incoming_messages == 0 and by_day[6].coverage is None

    base, lora = result.adapters
    assert (base.adapter_id, base.label, lora.adapter_id, lora.label) == (
        None, "base model", "lora-one", "lora-one",
    )  # fmt: skip
    assert (base.totals.incoming_messages, base.totals.covered_messages) == (11, 5)
    assert (lora.totals.incoming_messages, lora.totals.covered_messages) == (11, 3)
    assert (base.totals.suggestions, lora.totals.suggestions) == (5, 4)
    assert _slots(base.totals) == [(0, 0.0), (1, 1 / 5), (1, 1 / 5)]
    assert _slots(lora.totals) == [(1, 1 / 4), (1, 1 / 4), (0, 0.0)]
    assert (base.totals.replied_instead, lora.totals.replied_instead) == (1, 0)
    assert (base.totals.edits.mean_distance, base.totals.edits.median_distance) == (1.0, 1.0)
    assert (lora.totals.edits.mean_distance, lora.totals.edits.median_distance) == (3.0, 3.0)
    base_day = {b.start.day: b for b in base.buckets}
    assert (base_day[10].covered_messages, base_day[10].suggestions) == (2, 2)
    assert _slots(base_day[10]) == [(0, 0.0), (1, 0.5), (0, 0.0)]
    assert (base_day[11].incoming_messages, base_day[11].covered_messages) == (7, 3)


async def test_weekly_buckets_start_on_mondays(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        rows = Rows(session)
        rows.message(datetime(2026, 1, 4, 23, 59, tzinfo=UTC))  # Sunday before the period
        rows.message(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))  # Monday, the first bucket
        sunday = rows.message(at(8, 23, 59, 59))
        rows.suggestion(sunday, after=timedelta(seconds=0))
        rows.suggestion(rows.message(at(9, 0)), version=LORA)  # Monday: the last bucket
        rows.message(at(11, 14))
        await rows.save()
        result = await online_measures(session, 60, now=NOW)

    assert result.bucket == "week"
    assert result.since == datetime(2026, 1, 5, tzinfo=UTC)
    assert result.until == at(16, 0)  # the Monday after today
    assert len(result.buckets) == 10
    week = timedelta(days=7)
    assert all(b.start.weekday() == 0 and b.end - b.start == week for b in result.buckets)
    counts = [(b.incoming_messages, b.covered_messages) for b in result.buckets]
    assert counts == [(1, 0), *[(0, 0)] * 7, (1, 1), (2, 1)]
    base, lora = result.adapters
    assert [b.suggestions for b in base.buckets][-2:] == [1, 0]
    assert [b.suggestions for b in lora.buckets][-2:] == [0, 1]


async def test_an_adapter_first_seen_earlier_comes_first_after_the_base_model(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        rows = Rows(session)
        rows.suggestion(rows.message(at(11, 9)), version=f"{BASE}+lora-aaa")
        rows.suggestion(rows.message(at(9, 9)), version=f"{BASE}+lora-zzz")
        rows.suggestion(rows.message(at(10, 9)), version="openai:gpt-4o-mini")
        rows.suggestion(rows.message(at(10, 10)), version=None)
        rows.suggestion(rows.message(at(10, 11)), version="not a version")
        await rows.save()
        result = await online_measures(session, 7, now=NOW)
    assert [a.adapter_id for a in result.adapters] == [None, "lora-zzz", "lora-aaa"]
    assert result.adapters[0].totals.suggestions == 3
    assert result.adapters[0].totals.covered_messages == 3


async def test_nothing_yet(app: Any) -> None:
    async with app.state.sessionmaker() as session:
        result = await online_measures(session, 1, now=NOW)
    assert [b.start for b in result.buckets] == [at(11, 0)]
    assert result.adapters == []
    totals = result.totals
    assert (totals.incoming_messages, totals.suggestions, totals.coverage) == (0, 0, None)
    assert [s.share for s in totals.slots] == [None, None, None]
    assert totals.edits.count == 0 and totals.edits.median_distance is None


async def test_api_answers_the_owner_only(
    app: Any, owner_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    async with app.state.sessionmaker() as session:
        rows = Rows(session)
        message = rows.message(utcnow() - timedelta(hours=1))
        rows.suggestion(message, ResponseStatus.EDITED, chosen=2, edited="On my way now")
        await rows.save()
    resp = await owner_client.get("/api/training/online", params={"days": 7})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["bucket"] == "day" and len(body["buckets"]) == 7
    assert body["totals"]["coveredMessages"] == 1
    assert body["totals"]["slots"][2] == {"slot": 3, "used": 1, "share": 1.0}
    assert body["totals"]["edits"]["meanDistance"] == 4.0
    assert body["adapters"][0]["adapterId"] is None
    assert (await owner_client.get("/api/training/online")).json()["bucket"] == "day"
    assert (await owner_client.get("/api/training/online?days=90")).json()["bucket"] == "week"
    for days in (0, 366, "x"):
        bad = await owner_client.get("/api/training/online", params={"days": days})
        assert bad.status_code == 422, bad.text
    client.cookies.clear()
    assert (await client.get("/api/training/online")).status_code == 401


def _reference(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_edit_distance_matches_the_textbook_definition() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("Sounds good", "Sounds good to me") == 6
    assert levenshtein("👍🏽 ok", "ok") == 3
    assert normalized("", "", 0) == 0.0 and normalized("ab", "abcd", 2) == 0.5
    draw = random.Random(13)
    for _ in range(3000):
        a = "".join(draw.choice("ab cé") for _ in range(draw.randint(0, 80)))
        b = "".join(draw.choice("abc d") for _ in range(draw.randint(0, 80)))
        assert levenshtein(a, b) == _reference(a, b), (a, b)
