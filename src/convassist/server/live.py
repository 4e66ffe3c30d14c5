"""Rows that follow an ML job: shown live by reads, stored by the reconciler and by writes.

A domain whose rows wait on the ML service (an async suggestion `generating`, a training
job `queued` or `training`) describes them once, as a `Mirror`:

- a GET shows such rows with the ML service's live state laid over a transient copy
  (`shown`), so a read never writes;
- the reconciler (`server/reconciler.py`) stores that state, for every mirror;
- a POST that acts on a row stores its state first (`settle`): it may have finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import AppError
from convassist.server.ml_client import MLClient
from convassist.server.models import Base
from convassist.server.unit_of_work import commit_then_call

Row = TypeVar("Row", bound=Base)
State = TypeVar("State")


def transient_copy(row: Row) -> Row:
    """The row's column values in a new object that belongs to no session."""
    columns = inspect(type(row)).column_attrs
    return type(row)(**{column.key: getattr(row, column.key) for column in columns})


def changed_values(before: Row, after: Row) -> dict[str, Any]:
    """The columns whose values differ between a row and its updated copy."""
    columns = inspect(type(before)).column_attrs
    return {
        column.key: getattr(after, column.key)
        for column in columns
        if getattr(after, column.key) != getattr(before, column.key)
    }


@dataclass(frozen=True)
class Mirror(Generic[Row, State]):
    """How one table's rows follow their ML job."""

    model: type[Row]
    active: Callable[[], ColumnElement[bool]]
    """SQL: the rows still waiting on an ML job (the reconciler's query and its updates)."""
    pending: Callable[[Row], str | None]
    """The ML job id of a row still waiting on it, else None."""
    ask: Callable[[MLClient, str], Awaitable[State | None]]
    """The job's state from the ML service; None when it does not know the job."""
    apply: Callable[[Row, State | None], None]
    """Bring the row to that state (a job the ML service lost: the row fails)."""

    async def live(self, ml: MLClient, row: Row) -> Row | None:
        """A transient copy of the row as its ML job is now; None when the row waits on no
        job or the ML service cannot say (down or slow)."""
        job_id = self.pending(row)
        if job_id is None:
            return None
        try:
            state = await self.ask(ml, job_id)
        except AppError:
            return None
        copy = transient_copy(row)
        self.apply(copy, state)
        return copy

    async def shown(self, ml: MLClient, rows: Sequence[Row]) -> list[Row]:
        """The rows as a read shows them: each waiting one as its job is now (not stored)."""
        return [await self.live(ml, row) or row for row in rows]

    async def settle(self, session: AsyncSession, ml: MLClient, row: Row) -> None:
        """Before a write acts on the row: bring it to its ML job's state (if the ML service
        can say), committing first so no transaction waits on the call."""
        job_id = self.pending(row)
        if job_id is None:
            return
        try:
            state = await commit_then_call(session, lambda: self.ask(ml, job_id))
        except AppError:
            return  # the ML service cannot say: as far as we know, the row is as it was
        self.apply(row, state)
        await session.flush()
