"""The in-process runtime (no Redis): this service holds and runs its jobs itself.

A submitted job is held from the start (its heartbeat runs while it waits), runs as a task
of this process (at most `JobKind.concurrency` at once), and is lost when the process
stops: a clean stop fails it ("stopped"); after a crash, a store with files still holds it,
and the restarted service's reads and sweep find it dead by the one rule ("restarted").
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from convassist.ml.runtime.records import now
from convassist.ml.runtime.runtime import JobKind, P, R, Runtime
from convassist.ml.runtime.stores import RecordStore

RESTARTED = "The ML service restarted while the job ran."
STOPPED = "The ML service stopped while the job ran."


class InProcessJobs(Runtime[R, P]):
    kind = "in-process"
    lost = RESTARTED
    stopped = STOPPED

    def __init__(self, job: JobKind[R, P], store: RecordStore[R], heartbeat: float) -> None:
        super().__init__(job, store, heartbeat)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(job.concurrency) if job.concurrency else None

    async def submit(self, record: R, payload: P) -> bool:
        """Store the job and start holding it; False when its id exists."""
        record = record.model_copy(update={"heartbeat_at": now(), "stale_after": self.heartbeat})
        if not await self.store.create(record, self.job.ttl):
            return False
        self._held.add(record.job_id)
        task = asyncio.create_task(self._hold(record.job_id, payload))
        self._tasks[record.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.job_id, None))
        return True

    async def _hold(self, job_id: str, payload: P) -> None:
        try:
            if self._slots is None:
                await self.execute(job_id, payload)
            else:
                async with self._slots:
                    await self.execute(job_id, payload)
        except asyncio.CancelledError:
            await self._final(job_id, {"status": self.job.record.FAILED, "error": self.stopped})
            raise
        finally:
            self._held.discard(job_id)

    async def finish(self, job_id: str, changes: dict[str, Any]) -> R | None:
        """End the job; its work here has stopped (its process too) when this returns."""
        record = await super().finish(job_id, changes)
        task = self._tasks.get(job_id)
        if record is not None and task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return record

    async def depth(self) -> int:
        """Jobs waiting for a slot."""
        return len(self._tasks) - len(self._running)

    async def close(self) -> None:
        """Stop: every job still held fails ("stopped")."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.stop()
        with contextlib.suppress(OSError):
            await self.store.close()
