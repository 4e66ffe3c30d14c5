"""Async generation jobs on the job runtime (`ml/runtime`): in process, or SAQ on Redis.

Statuses on the wire: queued | running | completed | failed. A running job whose holder
stopped beating (its worker died) reads as failed by the runtime's one staleness rule, so
it never stays "running". Model-dependent checks (prompt length) run inside the job; a job
that fails them ends failed with the same message `POST /generate` would give.
"""

from __future__ import annotations

import uuid
from typing import Any

from convassist.core.errors import AppError
from convassist.core.logging import get_logger
from convassist.ml.generation.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationJob,
    GenerationJobStatus,
)
from convassist.ml.generation.service import GenerationService
from convassist.ml.metrics import Metrics
from convassist.ml.runtime.inprocess import InProcessJobs
from convassist.ml.runtime.records import JobFailed, JobRecord, now
from convassist.ml.runtime.runtime import JobContext, JobKind, unavailable
from convassist.ml.runtime.saq import QUEUE_TIMEOUT, SaqJobs, quiet_saq_logs, saq_queue
from convassist.ml.runtime.stores import LocalStore
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.generation.queue")

KIND = "generation"
UNAVAILABLE = "The job queue (Redis) is unavailable; use POST /generate or retry later."


class GenerationRecord(JobRecord):
    status: GenerationJobStatus
    result: GenerateResponse | None = None

    def public(self) -> GenerationJob:
        return GenerationJob(
            job_id=self.job_id, status=self.status, result=self.result, error=self.error
        )


def failure_message(exc: BaseException) -> str:
    """What a failed job reports: an AppError's own text, else only the error's type."""
    if isinstance(exc, AppError):
        return exc.detail
    return f"Generation failed ({type(exc).__name__})."


def generation_kind(
    settings: MLSettings, service: GenerationService, metrics: Metrics
) -> JobKind[GenerationRecord, GenerateRequest]:
    """Generation jobs: one `service.generate` each, on the same threads as `/generate`."""

    async def run(ctx: JobContext[GenerationRecord, GenerateRequest]) -> dict[str, Any]:
        try:
            response = await service.generate(ctx.payload)
        except Exception as exc:
            log.warning("job_failed", job_id=ctx.record.job_id, error_type=type(exc).__name__)
            raise JobFailed(failure_message(exc)) from None
        return {"result": response, "progress": 100}

    async def finished(record: GenerationRecord) -> None:
        metrics.jobs.labels(record.status).inc()

    return JobKind(
        name=KIND,
        record=GenerationRecord,
        payload=GenerateRequest,
        run=run,
        timeout=settings.job_timeout,
        ttl=settings.job_ttl,
        on_finished=finished,
    )


class GenerationJobs:
    """`POST /generate/async` and `GET /jobs/{id}` over either runtime."""

    def __init__(
        self,
        runtime: InProcessJobs[GenerationRecord, GenerateRequest]
        | SaqJobs[GenerationRecord, GenerateRequest],
    ) -> None:
        self.runtime = runtime
        self.kind = runtime.kind

    async def submit(self, request: GenerateRequest) -> str:
        record = GenerationRecord(job_id=uuid.uuid4().hex, status="queued", created_at=now())
        with unavailable(UNAVAILABLE):
            await self.runtime.submit(record, request)
        return record.job_id

    async def status(self, job_id: str) -> GenerationJob | None:
        with unavailable("The job queue (Redis) is unavailable."):
            record = await self.runtime.get(job_id)
        return record.public() if record is not None else None

    async def depth(self) -> int | None:
        return await self.runtime.depth()

    def start(self) -> None:
        self.runtime.start()

    async def close(self) -> None:
        await self.runtime.close()


def make_jobs(settings: MLSettings, service: GenerationService, metrics: Metrics) -> GenerationJobs:
    kind = generation_kind(settings, service, metrics)
    if settings.use_redis:
        assert settings.redis_url is not None
        quiet_saq_logs()
        queue = saq_queue(settings.redis_url, settings.queue_name, socket_timeout=QUEUE_TIMEOUT)
        return GenerationJobs(SaqJobs(kind, queue, settings.job_heartbeat))
    return GenerationJobs(InProcessJobs(kind, LocalStore(GenerationRecord), settings.job_heartbeat))
