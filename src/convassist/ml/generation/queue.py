"""Async generation jobs: SAQ on Redis (consumed by `convassist worker`), else in-process.

Statuses on the wire: queued | running | completed | failed. SAQ's `aborted` (a job swept
because its worker stopped sending heartbeats, or timed out) reads as failed, and so does a
running job whose heartbeat is overdue: a job whose worker died never stays "running".
Model-dependent checks (prompt length) run inside the job; a job that fails them ends failed
with the same message `POST /generate` would give.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from saq import Job, Queue, Status
from saq.queue.redis import RedisQueue

from convassist.core.errors import AppError, ServiceUnavailable
from convassist.core.logging import get_logger
from convassist.ml.generation.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationJob,
    GenerationJobStatus,
)
from convassist.ml.generation.service import GenerationService
from convassist.ml.metrics import Metrics
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.generation.queue")

JOB_FUNCTION = "generate"
QUEUE_TIMEOUT = 2.0
_STATES: dict[Status, GenerationJobStatus] = {
    Status.NEW: "queued",
    Status.QUEUED: "queued",
    Status.ACTIVE: "running",
    Status.ABORTING: "running",
    Status.COMPLETE: "completed",
    Status.FAILED: "failed",
    Status.ABORTED: "failed",
}


class JobQueue(Protocol):
    kind: str

    async def submit(self, request: GenerateRequest) -> str: ...

    async def status(self, job_id: str) -> GenerationJob | None: ...

    async def depth(self) -> int | None: ...

    async def close(self) -> None: ...


def failure_message(exc: BaseException) -> str:
    """What a failed job reports: an AppError's own text, else only the error's type."""
    if isinstance(exc, AppError):
        return exc.detail
    return f"Generation failed ({type(exc).__name__})."


@dataclass
class _LocalJob:
    state: GenerationJobStatus = "queued"
    result: GenerateResponse | None = None
    error: str | None = None
    finished: float | None = None


class InProcessJobs:
    """Jobs as tasks of this process, on the same inference threads as `/generate`."""

    kind = "in-process"

    def __init__(self, service: GenerationService, metrics: Metrics, ttl: float) -> None:
        self.service = service
        self.metrics = metrics
        self.ttl = ttl
        self._jobs: dict[str, _LocalJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: GenerateRequest) -> str:
        self._prune()
        job_id = uuid.uuid4().hex
        job = self._jobs[job_id] = _LocalJob()
        task = asyncio.create_task(self._run(job_id, job, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def _run(self, job_id: str, job: _LocalJob, request: GenerateRequest) -> None:
        job.state = "running"
        try:
            job.result = await self.service.generate(request)
            job.state = "completed"
        except Exception as exc:
            job.state, job.error = "failed", failure_message(exc)
            log.warning("job_failed", job_id=job_id, error_type=type(exc).__name__)
        job.finished = time.monotonic()
        self.metrics.jobs.labels(job.state).inc()

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for job_id in [k for k, j in self._jobs.items() if j.finished and j.finished < cutoff]:
            del self._jobs[job_id]

    async def status(self, job_id: str) -> GenerationJob | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return GenerationJob(job_id=job_id, status=job.state, result=job.result, error=job.error)

    async def depth(self) -> int:
        return sum(1 for job in self._jobs.values() if job.state == "queued")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RedactJobs(logging.Filter):
    """Replace SAQ `Job` objects in log arguments by their ids (their kwargs hold prompts)."""

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


class SaqJobs:
    """Jobs in Redis through SAQ; `convassist worker` processes run them."""

    kind = "saq"

    def __init__(self, queue: Queue, settings: MLSettings) -> None:
        self.queue = queue
        self.settings = settings

    async def submit(self, request: GenerateRequest) -> str:
        try:
            job = await self.queue.enqueue(
                JOB_FUNCTION,
                request=request.model_dump(mode="json"),
                timeout=self.settings.job_timeout,
                heartbeat=self.settings.job_heartbeat,
                ttl=self.settings.job_ttl,
                retries=1,
            )
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(
                "The job queue (Redis) is unavailable; use POST /generate or retry later."
            ) from exc
        assert job is not None  # a fresh random key is never a duplicate
        return job.key

    async def status(self, job_id: str) -> GenerationJob | None:
        try:
            job = await self.queue.job(job_id)
            if job is not None and job.status == Status.ACTIVE and job.stuck:
                await self._fail_stuck(job)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The job queue (Redis) is unavailable.") from exc
        if job is None:
            return None
        state = _STATES[job.status]
        result = GenerateResponse.model_validate(job.result) if state == "completed" else None
        error = _job_error(job) if state == "failed" else None
        return GenerationJob(job_id=job_id, status=state, result=result, error=error)

    async def _fail_stuck(self, job: Job) -> None:
        """The worker stopped sending heartbeats (it died): finish the job as failed."""
        message = (
            f"The worker running this job stopped responding "
            f"(no heartbeat for {job.heartbeat} s, or over the {job.timeout} s limit)."
        )
        job.meta["error"] = message
        await self.queue.abort(job, message)
        await self.queue.finish(job, Status.ABORTED, error=message)
        log.warning("job_failed", job_id=job.key, reason="worker_lost")

    async def depth(self) -> int | None:
        try:
            return await self.queue.count("queued")
        except (RedisError, OSError):
            return None

    async def close(self) -> None:
        await disconnect(self.queue)


def _job_error(job: Job) -> str:
    message = job.meta.get("error")
    if message:
        return str(message)
    if job.status == Status.ABORTED:
        return "The job was stopped: its worker died or it ran past its time limit."
    return "Generation failed."


async def disconnect(queue: Queue) -> None:
    """Close the queue's connections; with Redis gone there is nothing left to close."""
    try:
        await queue.disconnect()
    except (RedisError, OSError):
        log.info("queue_disconnected_while_redis_down")


def make_jobs(settings: MLSettings, service: GenerationService, metrics: Metrics) -> JobQueue:
    if settings.use_redis:
        assert settings.redis_url is not None
        quiet_saq_logs()
        queue = saq_queue(settings.redis_url, settings.queue_name, socket_timeout=QUEUE_TIMEOUT)
        return SaqJobs(queue, settings)
    return InProcessJobs(service, metrics, ttl=settings.job_ttl)
