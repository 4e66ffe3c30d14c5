"""One way to call the ML service from a request that writes rows.

No database transaction stays open while the ML service works: what the request recorded
(a `generating` suggestion, a `queued` job) is committed first, the ML call runs, and the
caller writes its result onto the rows, which the request's session commits when the
endpoint returns. A failed call is written too (the row turns `failed` with the reason)
and kept: the error is marked `keep_changes`, so the session commits instead of rolling
back. A read calls it too, to stop holding the database during the call: its commit writes
nothing (reads show live state on transient copies, `server/live.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import AppError

T = TypeVar("T")


async def commit_then_call(
    session: AsyncSession,
    call: Callable[[], Awaitable[T]],
    *,
    on_error: Callable[[AppError], AppError | None] | None = None,
) -> T:
    """Commit, await `call()`; on an AppError record it (`on_error`) and raise, keeping it.

    `on_error` may answer another error to raise instead (a refusal turned into a 422)."""
    await session.commit()
    try:
        return await call()
    except AppError as exc:
        replacement = (on_error(exc) if on_error is not None else None) or exc
        replacement.keep_changes = True
        if replacement is exc:
            raise
        raise replacement from None
