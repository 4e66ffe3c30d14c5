"""The SAQ runtime: records and payloads in Redis, jobs run by `convassist worker` processes.

THE record of a job is our own Redis hash (`stores.RedisStore`), not SAQ's job: SAQ only
delivers the job id to one worker (its job key is the job id, one attempt, no SAQ timeout or
heartbeat), because SAQ rewrites its whole job on every update and has no conditional write,
so it could not give a cancel and a final report one winner. The payload (a generation
request; a training job's settings and samples) travels in Redis too,
`conv-assistant:job-input:<kind>:<id>`, so services and workers need not share a disk.

The service side submits, reads (failing dead jobs by the one rule) and cancels; a worker
runs `work` for each job SAQ hands it, beats the jobs it runs and sweeps dead ones.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from saq import Job, Queue
from saq.queue.redis import RedisQueue

from convassist.core.errors import ServiceUnavailable
from convassist.core.logging import get_logger
from convassist.ml.runtime.runtime import JobKind, P, R, Runtime
from convassist.ml.runtime.stores import RedisStore

log = get_logger("convassist.ml.runtime")

QUEUE_TIMEOUT = 2.0
WORKER_LOST = "The worker running this job stopped responding."
WORKER_STOPPED = "The worker running this job stopped."
INPUT_MISSING = "The job's input is gone from Redis (expired or deleted)."
UNAVAILABLE = "The job queue (Redis) is unavailable."


class RedactJobs(logging.Filter):
    """Replace SAQ `Job` objects in log arguments by their ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a.id if isinstance(a, Job) else a for a in record.args)
        return True


def quiet_saq_logs() -> None:
    saq_logger = logging.getLogger("saq")
    if not any(isinstance(f, RedactJobs) for f in saq_logger.filters):
        saq_logger.addFilter(RedactJobs())
    # At DEBUG, SAQ formats whole jobs (with their kwargs) into its messages itself.
    if saq_logger.getEffectiveLevel() < logging.INFO:
        saq_logger.setLevel(logging.INFO)


def saq_queue(url: str, name: str, *, socket_timeout: float | None) -> RedisQueue:
    redis = aioredis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=QUEUE_TIMEOUT
    )
    return RedisQueue(redis, name=name)


async def disconnect(queue: Queue) -> None:
    """Close the queue's connections; with Redis gone there is nothing left to close."""
    try:
        await queue.disconnect()
    except (RedisError, OSError):
        log.info("queue_disconnected_while_redis_down")


class SaqJobs(Runtime[R, P]):
    kind = "saq"
    lost = WORKER_LOST
    stopped = WORKER_STOPPED

    def __init__(self, job: JobKind[R, P], queue: RedisQueue, heartbeat: float) -> None:
        super().__init__(job, RedisStore(job.record, queue.redis, job.name), heartbeat)
        self.queue = queue
        self.input_prefix = f"conv-assistant:job-input:{job.name}:"

    async def submit(self, record: R, payload: P) -> bool:
        """Store the record and payload and queue the job; False when its id exists."""
        try:
            if not await self.store.create(record, self.job.ttl):
                return False
            key = self.input_prefix + record.job_id
            await self.queue.redis.set(key, payload.model_dump_json(), ex=self.job.ttl)
            await self.queue.enqueue(
                self.job.name,
                key=record.job_id,
                job_id=record.job_id,
                timeout=0,
                heartbeat=0,
                ttl=self.job.ttl,
                retries=1,
            )
        except (RedisError, OSError) as exc:
            await self._give_up(record.job_id)
            raise ServiceUnavailable(UNAVAILABLE) from exc
        return True

    async def _give_up(self, job_id: str) -> None:
        changes = {"status": self.job.record.FAILED, "error": "Redis is unavailable."}
        try:
            await self.finish(job_id, changes)
        except (RedisError, OSError):
            log.warning("job_left_queued", job_id=job_id)

    async def work(self, _ctx: dict[str, Any], *, job_id: str) -> None:
        """The SAQ job function (in a worker): run the job from its payload in Redis."""
        key = self.input_prefix + job_id
        raw = await self.queue.redis.get(key)
        if raw is None:
            await self.finish(job_id, {"status": self.job.record.FAILED, "error": INPUT_MISSING})
            return
        try:
            await self.execute(job_id, self.job.payload.model_validate_json(raw))
        finally:
            await self.queue.redis.delete(key)

    async def depth(self) -> int | None:
        try:
            return await self.queue.count("queued")
        except (RedisError, OSError):
            return None

    async def close(self) -> None:
        await self.stop()
        await disconnect(self.queue)
