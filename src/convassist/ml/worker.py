"""`convassist worker`: runs the jobs queued in Redis, generation and training alike.

Both kinds run on the job runtime's SAQ implementation (`ml/runtime/saq.py`): SAQ hands each
job id to one worker, which claims the job's record (a job runs once), writes its heartbeat
every `ML_SERVICE_JOB_HEARTBEAT / 3` seconds, and sweeps jobs whose holder went silent (the
runtime's one staleness rule). Generation jobs run on the model this worker loads. Training
jobs run one at a time, each in a child process, materialised from Redis in this worker's
own data dir; the worker activates a completed job's adapter (`on_completed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from saq import Worker

from convassist.core.logging import get_logger
from convassist.ml.adapters.factory import make_adapter_store
from convassist.ml.adapters.service import AdapterService
from convassist.ml.generation.cache import make_cache
from convassist.ml.generation.manager import LLMManager
from convassist.ml.generation.queue import generation_kind
from convassist.ml.generation.service import GenerationService
from convassist.ml.metrics import Metrics
from convassist.ml.runtime.saq import SaqJobs, quiet_saq_logs, saq_queue
from convassist.ml.settings import MLSettings
from convassist.ml.training.service import OnCompleted, training_kind
from convassist.ml.training.supervise import KILL_GRACE_SECONDS
from convassist.ml.training.yielding import GenerationMarks

log = get_logger("convassist.ml.worker")


def _worker(
    runtime: SaqJobs[Any, Any],
    concurrency: int,
    closing: Callable[[], Awaitable[None]] | None = None,
) -> Worker[Any]:
    async def startup(_ctx: dict[str, Any]) -> None:
        runtime.start()

    async def shutdown(_ctx: dict[str, Any]) -> None:
        await runtime.close()
        if closing is not None:
            await closing()

    return Worker(
        runtime.queue,
        functions=[(runtime.job.name, runtime.work)],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
        # Time for a job's work to stop (a training process: SIGTERM, then SIGKILL).
        cancellation_hard_deadline_s=KILL_GRACE_SECONDS + 2,
    )


def build_worker(settings: MLSettings, manager: LLMManager) -> Worker[Any]:
    """A SAQ worker for the generation queue, running jobs through `manager`."""
    assert settings.redis_url is not None
    queue = saq_queue(settings.redis_url, settings.queue_name, socket_timeout=None)
    metrics = Metrics()
    marks = GenerationMarks(settings.generation_marks_dir)
    service = GenerationService(manager, make_cache(settings), metrics, marks)
    runtime = SaqJobs(generation_kind(settings, service, metrics), queue, settings.job_heartbeat)
    return _worker(runtime, manager.backend.max_concurrency, service.cache.close)


def build_training_worker(
    settings: MLSettings, manager: LLMManager, on_completed: OnCompleted
) -> Worker[Any]:
    """A SAQ worker for the training queue: one job at a time, each in a child process."""
    assert settings.redis_url is not None
    queue = saq_queue(settings.redis_url, settings.training_queue_name, socket_timeout=None)
    kind = training_kind(settings, manager.adapter_backend, on_completed)
    return _worker(SaqJobs(kind, queue, settings.job_heartbeat), 1)


async def run_worker(settings: MLSettings, manager: LLMManager) -> None:
    quiet_saq_logs()
    # Serve the adapter every instance serves, and follow when it changes.
    adapters = AdapterService(manager, make_adapter_store(settings))
    await adapters.start()
    worker = build_worker(settings, manager)
    training = build_training_worker(settings, manager, adapters.activate)
    log.info(
        "worker_started",
        queue=settings.queue_name,
        training_queue=settings.training_queue_name,
        model_version=manager.model_version,
    )
    # One set of signal handlers (a second worker's would replace the first's): SIGTERM or
    # Ctrl-C stops the generation worker, which then stops the training worker.
    training.SIGNALS = []
    training_task = asyncio.create_task(training.start())
    try:
        await worker.start()
    finally:
        await training.stop()
        await training_task
        await adapters.close()
