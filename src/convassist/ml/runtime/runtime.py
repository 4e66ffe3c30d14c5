"""Running one job, whatever holds it: claim, heartbeat, final write, hook; and the sweep.

A job kind (`JobKind`) says what a job records, what it takes (its payload) and how to run
it. `Runtime` runs it the same way in both implementations (`inprocess`, `saq`):

* claim: queued → running, only if still queued (a cancelled job, or one another worker
  took, is not run: a job runs at most once);
* heartbeat: every `heartbeat / 3` seconds for each job this process holds; a job found
  finished meanwhile (cancelled) has its work cancelled at that beat;
* final write: completed with the run's results, or failed with its `JobFailed` message,
  a time-out, or the runtime's `stopped` message when this process stops; a final write
  only lands on an unfinished job, and only the one that lands calls `on_finished`;
* dead jobs: `get` and `sweep` apply `records.is_dead` and fail the job with `lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from redis.exceptions import RedisError

from convassist.core.errors import ServiceUnavailable
from convassist.core.logging import get_logger
from convassist.ml.runtime.records import BEATS_PER_PERIOD, JobFailed, JobRecord, is_dead, now
from convassist.ml.runtime.stores import RecordStore

log = get_logger("convassist.ml.runtime")

R = TypeVar("R", bound=JobRecord)
P = TypeVar("P", bound=BaseModel)


@contextlib.contextmanager
def unavailable(message: str) -> Iterator[None]:
    """Redis (or the disk of a file store) failing: 503 with `message`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(message) from exc


class JobContext(Generic[R, P]):
    """What a running job sees: its record (as last written), its payload, `report`."""

    def __init__(self, record: R, payload: P, store: RecordStore[R]) -> None:
        self.record = record
        self.payload = payload
        self._store = store

    async def report(self, **changes: Any) -> bool:
        """Record progress; False when the job has finished meanwhile (cancelled): stop."""
        updated = await self._store.update(self.record.job_id, changes)
        if updated is not None:
            self.record = updated
        return updated is not None


@dataclass(frozen=True)
class JobKind(Generic[R, P]):
    """A kind of job: its record and payload models, its work, its limits and its hook."""

    name: str
    record: type[R]
    payload: type[P]
    run: Callable[[JobContext[R, P]], Coroutine[Any, Any, dict[str, Any]]]
    """The work; answers the completed record's changes, raises JobFailed to fail it."""
    timeout: float
    ttl: int
    """Seconds a record stays readable (Redis; in memory: after it finished)."""
    concurrency: int | None = None
    """Jobs of this kind run at once in process (None: no limit of the runtime's own)."""
    on_finished: Callable[[R], Awaitable[None]] | None = None


class Runtime(Generic[R, P]):
    """What both implementations share; `kind` ("in-process" or "saq") names which."""

    kind: str
    lost: str
    """The error of a job found dead."""
    stopped: str
    """The error of a job whose runtime stopped while it ran."""

    def __init__(self, job: JobKind[R, P], store: RecordStore[R], heartbeat: float) -> None:
        self.job = job
        self.store = store
        self.heartbeat = heartbeat
        self._held: set[str] = set()
        self._running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start beating the held jobs and sweeping dead ones."""
        self._loops = [
            asyncio.create_task(self._every(self.heartbeat / BEATS_PER_PERIOD, self.beat)),
            asyncio.create_task(self._every(self.heartbeat, self.sweep)),
        ]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except (RedisError, OSError) as exc:
                log.warning("job_store_unavailable", kind=self.job.name, error=type(exc).__name__)

    async def get(self, job_id: str) -> R | None:
        """The job's record; a dead one is failed first (the one rule, on every read)."""
        record = await self.store.get(job_id)
        if record is not None and is_dead(record, now()):
            record = await self._fail_dead(record)
        return record

    async def sweep(self) -> None:
        for record in await self.store.held():
            if is_dead(record, now()):
                await self._fail_dead(record)

    async def _fail_dead(self, record: R) -> R:
        changes = {"status": record.FAILED, "error": self.lost, "completed_at": now()}
        failed = await self.store.update(record.job_id, changes)
        if failed is not None:
            log.warning("job_failed", kind=self.job.name, job_id=record.job_id, reason="lost")
        return failed or await self.store.get(record.job_id) or record

    async def beat(self) -> None:
        for job_id in list(self._held):
            if await self.store.update(job_id, {"heartbeat_at": now()}) is None:
                self._held.discard(job_id)  # finished elsewhere (cancelled): stop its work
                if job_id in self._running:
                    self._running[job_id].cancel()

    async def finish(self, job_id: str, changes: dict[str, Any]) -> R | None:
        """End an unfinished job now (a cancel); None if it is unknown or already finished."""
        return await self.store.update(job_id, {**changes, "completed_at": now()})

    async def execute(self, job_id: str, payload: P) -> None:
        """Claim the job and run it to its final write (see the module docstring)."""
        record_type = self.job.record
        at = now()
        claimed = await self.store.update(
            job_id,
            {
                "status": record_type.RUNNING,
                "started_at": at,
                "heartbeat_at": at,
                "stale_after": self.heartbeat,
            },
            only_if=frozenset({record_type.QUEUED}),
        )
        if claimed is None:
            log.info("job_not_claimed", kind=self.job.name, job_id=job_id)
            return
        self._held.add(job_id)
        work = asyncio.create_task(self.job.run(JobContext(claimed, payload, self.store)))
        self._running[job_id] = work
        failed = record_type.FAILED
        try:
            async with asyncio.timeout(self.job.timeout):
                changes = {"status": record_type.COMPLETED, **await work}
        except TimeoutError:
            changes = {
                "status": failed,
                "error": f"The job ran past its {self.job.timeout:g} s limit.",
            }
        except JobFailed as exc:
            changes = {"status": failed, "error": str(exc)}
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # this process is stopping
                await self._final(job_id, {"status": failed, "error": self.stopped})
                raise
            return  # finished elsewhere (cancelled) while it ran
        except Exception as exc:
            log.error("job_error", kind=self.job.name, job_id=job_id, error=type(exc).__name__)
            changes = {"status": failed, "error": f"The job failed ({type(exc).__name__})."}
        finally:
            self._held.discard(job_id)
            self._running.pop(job_id, None)
        await self._final(job_id, changes)

    async def _final(self, job_id: str, changes: dict[str, Any]) -> None:
        record = await self.store.update(job_id, {**changes, "completed_at": now()})
        if record is None:
            return
        log.info("job_finished", kind=self.job.name, job_id=job_id, status=record.status)
        if self.job.on_finished is not None:
            try:
                await self.job.on_finished(record)
            except Exception as exc:  # a hook's failure never undoes the job's end
                log.warning("job_hook_failed", job_id=job_id, error=type(exc).__name__)
