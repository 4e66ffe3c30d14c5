"""Fixed-window counters kept in the database (bad logins, wrong codes, registrations).

Checking and counting one attempt happen under a row lock on the key's bucket
(`SELECT … FOR UPDATE` on PostgreSQL; SQLite's write transactions are serial anyway), so
concurrent attempts on one key are checked one at a time and at most `limit` get through.
Keys are `<kind>:<client address>` where one client must not lock out the others.
A key's first bucket also deletes the buckets whose window began more than `FORGET_AFTER`
ago (longer than any window), so addresses that came once do not pile up.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import case, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.db import upsert_insert
from convassist.core.errors import TooManyRequests
from convassist.server.models import RateLimitBucket, utcnow

FORGET_AFTER = timedelta(days=1)
"""A bucket whose window began this long ago counts nothing any more (no window is longer)."""


async def ensure_allowed(
    session: AsyncSession, key: str, *, limit: int, window: timedelta, what: str
) -> None:
    """Refuse with 429 (and Retry-After) while `key` has `limit` failures in its window.

    Otherwise the bucket stays locked until the transaction ends: record the attempt's
    failure (`record_failure`) in the same transaction."""
    table = RateLimitBucket.__table__
    created = await session.execute(
        upsert_insert(session, table)
        .values(key=key, window_started_at=utcnow(), count=0)
        .on_conflict_do_nothing(index_elements=[table.c.key])
    )
    if created.rowcount:  # type: ignore[attr-defined]  # a new client: forget those long gone
        await _forget_stale(session, key)
    bucket = (
        await session.execute(
            select(RateLimitBucket)
            .where(RateLimitBucket.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if bucket.count < limit:
        return
    remaining = bucket.window_started_at + window - utcnow()
    if remaining.total_seconds() <= 0:
        return
    seconds = math.ceil(remaining.total_seconds())
    raise TooManyRequests(
        f"Too many {what}; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


async def _forget_stale(session: AsyncSession, key: str) -> None:
    """Delete the other buckets whose window began more than `FORGET_AFTER` ago."""
    forgotten = (
        select(RateLimitBucket.key)
        .where(
            RateLimitBucket.window_started_at < utcnow() - FORGET_AFTER,
            RateLimitBucket.key != key,
        )
        .with_for_update(skip_locked=True)  # a bucket another attempt holds is left to it
    )
    await session.execute(delete(RateLimitBucket).where(RateLimitBucket.key.in_(forgotten)))


async def record_failure(session: AsyncSession, key: str, *, window: timedelta) -> None:
    """Count one failure, starting a new window when the old one has passed."""
    now = utcnow()
    table = RateLimitBucket.__table__
    expired = table.c.window_started_at < now - window
    statement = (
        upsert_insert(session, table)
        .values(key=key, window_started_at=now, count=1)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, 1), else_=table.c.count + 1),
                "window_started_at": case((expired, now), else_=table.c.window_started_at),
            },
        )
    )
    await session.execute(statement)


async def count_attempt(
    session: AsyncSession, key: str, *, limit: int, window: timedelta, what: str
) -> None:
    """Refuse with 429 past `limit` attempts in the window; otherwise count this one."""
    await ensure_allowed(session, key, limit=limit, window=window, what=what)
    await record_failure(session, key, window=window)


async def reset(session: AsyncSession, key: str) -> None:
    await session.execute(delete(RateLimitBucket).where(RateLimitBucket.key == key))


async def reset_kind(session: AsyncSession, kind: str) -> None:
    """Forget every client's bucket of one kind (keys `<kind>:…`)."""
    await session.execute(
        delete(RateLimitBucket).where(RateLimitBucket.key.startswith(f"{kind}:", autoescape=True))
    )
