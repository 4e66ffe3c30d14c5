"""Fixed-window failure counters kept in the database (wrong approval codes, bad logins)."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import case
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.db import upsert_insert
from convassist.core.errors import TooManyRequests
from convassist.server.models import RateLimitBucket, utcnow


async def ensure_allowed(
    session: AsyncSession, key: str, *, limit: int, window: timedelta, what: str
) -> None:
    """Refuse with 429 (and Retry-After) while `key` has `limit` failures in its window."""
    bucket = await session.get(RateLimitBucket, key, populate_existing=True)
    if bucket is None or bucket.count < limit:
        return
    remaining = bucket.window_started_at + window - utcnow()
    if remaining.total_seconds() <= 0:
        return
    seconds = math.ceil(remaining.total_seconds())
    raise TooManyRequests(
        f"Too many failed {what}; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


async def record_failure(session: AsyncSession, key: str, *, window: timedelta) -> None:
    """Count one failure atomically, starting a new window when the old one has passed."""
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


async def reset(session: AsyncSession, key: str) -> None:
    bucket = await session.get(RateLimitBucket, key)
    if bucket is not None:
        await session.delete(bucket)
