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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convassist.core.errors import AppError
from convassist.core.logging import get_logger
from convassist.server.live import changed_values, transient_copy
from convassist.server.ml_client import MLClient
from convassist.server.models import GeneratedResponse, ResponseStatus, TrainingJob
from convassist.server.responses import service as responses
from convassist.server.training import jobs as training

log = get_logger(__name__)

INTERVAL_SECONDS = 2.0


@dataclass
class Pass:
    """What one pass found to store: per table, row id → changed columns."""

    responses: dict[Any, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[Any, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.responses) + len(self.jobs)


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
            active_responses = list(
                (
                    await session.execute(
                        select(GeneratedResponse).where(
                            GeneratedResponse.status == ResponseStatus.GENERATING,
                            GeneratedResponse.ml_job_id.is_not(None),
                        )
                    )
                ).scalars()
            )
            active_jobs = list(
                (
                    await session.execute(
                        select(TrainingJob).where(
                            TrainingJob.status.in_(training.ACTIVE),
                            TrainingJob.ml_job_id.is_not(None),
                        )
                    )
                ).scalars()
            )
        found = await self._ask(active_responses, active_jobs)
        if found:
            await self._store(found)
        return len(found)

    async def _ask(self, rows: list[GeneratedResponse], jobs: list[TrainingJob]) -> Pass:
        found = Pass()
        for row in rows:
            if (row_job := responses.pending(row)) is None:
                continue
            try:
                state = await self.ml.job(row_job)
            except AppError:
                continue  # unreachable for now: ask again next pass
            live = transient_copy(row)
            responses.apply_job(live, state)
            if changes := changed_values(row, live):
                found.responses[row.id] = changes
        for job in jobs:
            if (ml_job := training.pending(job)) is None:
                continue
            try:
                training_state = await self.ml.training_job(ml_job)
            except AppError:
                continue
            live_job = transient_copy(job)
            training.apply_live(live_job, training_state)
            if changes := changed_values(job, live_job):
                found.jobs[job.id] = changes
        return found

    async def _store(self, found: Pass) -> None:
        async with self.sessionmaker.begin() as session:
            for row_id, values in found.responses.items():
                await session.execute(
                    update(GeneratedResponse)
                    .where(
                        GeneratedResponse.id == row_id,
                        GeneratedResponse.status == ResponseStatus.GENERATING,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            for job_id, values in found.jobs.items():
                await session.execute(
                    update(TrainingJob)
                    .where(TrainingJob.id == job_id, TrainingJob.status.in_(training.ACTIVE))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
        log.info("reconciled", responses=len(found.responses), training_jobs=len(found.jobs))
