"""The server's one writer of the ML service's job states into its rows.

Every `INTERVAL_SECONDS` it reads the rows still active (async suggestions `generating`,
training jobs `queued` or `training`), asks the ML service about each with no transaction
open, and stores what changed in one short transaction. A job the ML service no longer
knows turns `failed` with the reason. Each update is conditional on the row still being
active, so a POST that settled the row meanwhile (an action, a cancel) wins.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convassist.core.logging import get_logger
from convassist.server.live import Mirror, changed_values
from convassist.server.ml_client import MLClient
from convassist.server.responses import service as responses
from convassist.server.training import jobs as training

log = get_logger(__name__)

INTERVAL_SECONDS = 2.0


MIRRORS: tuple[Mirror[Any, Any], ...] = (responses.MIRROR, training.MIRROR)


class Reconciler:
    """Runs `reconcile_once` every few seconds while the app runs (`start` / `stop`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ml: MLClient,
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.ml = ml
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except Exception:  # a database hiccup must not end the loop
                log.exception("reconcile_failed")
            await asyncio.sleep(self.interval)

    async def reconcile_once(self) -> int:
        """One pass; how many rows it stored."""
        async with self.sessionmaker() as session:
            waiting = [
                list((await session.execute(select(m.model).where(m.active()))).scalars())
                for m in MIRRORS
            ]
        found: list[tuple[Mirror[Any, Any], Any, dict[str, Any]]] = []
        for mirror, rows in zip(MIRRORS, waiting, strict=True):
            for row in rows:
                live = await mirror.live(self.ml, row)
                if live is not None and (changes := changed_values(row, live)):
                    found.append((mirror, inspect(row).identity[0], changes))
        if found:
            async with self.sessionmaker.begin() as session:
                for mirror, row_id, changes in found:
                    key = inspect(mirror.model).primary_key[0]
                    await session.execute(
                        update(mirror.model)
                        .where(key == row_id, mirror.active())
                        .values(**changes)
                        .execution_options(synchronize_session=False)
                    )
            log.info("reconciled", rows=len(found))
        return len(found)
