"""`convassist worker`: a SAQ worker that loads the model and runs queued generation jobs.

While a job runs the worker touches it every third of its heartbeat interval; if the worker
dies, the heartbeat stops, and the API (on `GET /jobs/{id}`) or another worker's sweep fails
the job. Job arguments hold the prompt, so SAQ's log lines are reduced to job ids.

The same process also takes training jobs from `conv-assistant:queue:training`, one at a
time, each in a child process (`convassist.ml.training.runner`), so the worker stays responsive;
their state goes to the Redis hash `conv-assistant:job:<id>` (see `ml/training/service.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from saq import Job, Worker
from saq.types import PartialTimersDict

from convassist.core.logging import get_logger
from convassist.ml.adapters.factory import make_adapter_store
from convassist.ml.adapters.service import AdapterService
from convassist.ml.generation.cache import make_cache
from convassist.ml.generation.manager import LLMManager
from convassist.ml.generation.queue import (
    JOB_FUNCTION,
    disconnect,
    failure_message,
    quiet_saq_logs,
    saq_queue,
)
from convassist.ml.generation.schemas import GenerateRequest
from convassist.ml.generation.service import GenerationService
from convassist.ml.metrics import Metrics
from convassist.ml.settings import MLSettings
from convassist.ml.training.files import JobFiles
from convassist.ml.training.service import TRAIN_FUNCTION, WORKER_STOPPED
from convassist.ml.training.store import RedisStore
from convassist.ml.training.supervise import supervise

log = get_logger("convassist.ml.worker")

# SAQ's defaults, but sweeping for dead workers' jobs every 10 s instead of 60 s.
TIMERS: PartialTimersDict = {"schedule": 1, "worker_info": 10, "sweep": 10, "abort": 1}


class JobFailed(Exception):
    """A job's failure, carrying only a message that is safe to store and log."""


async def generate_job(ctx: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
    """The SAQ job function: one generation, heartbeating while it runs."""
    service: GenerationService = ctx["service"]
    job: Job = ctx["job"]
    beat = asyncio.create_task(_heartbeat(job))
    try:
        response = await service.generate(GenerateRequest.model_validate(request))
    except Exception as exc:
        message = failure_message(exc)
        job.meta["error"] = message
        log.warning("job_failed", job_id=job.key, error_type=type(exc).__name__)
        raise JobFailed(message) from None
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    log.info("job_completed", job_id=job.key)
    return response.model_dump(mode="json", by_alias=True)


async def _heartbeat(job: Job) -> None:
    interval = max(job.heartbeat / 3, 0.5) if job.heartbeat else 5.0
    while True:
        await asyncio.sleep(interval)
        await job.update()


def build_worker(settings: MLSettings, manager: LLMManager) -> Worker[Any]:
    """A SAQ worker bound to the configured queue, running jobs through `manager`."""
    assert settings.redis_url is not None
    queue = saq_queue(settings.redis_url, settings.queue_name, socket_timeout=None)
    service = GenerationService(manager, make_cache(settings), Metrics())
    worker: Worker[Any] = Worker(
        queue,
        functions=[(JOB_FUNCTION, generate_job)],
        concurrency=manager.backend.max_concurrency,
        timers=TIMERS,
        shutdown=_shutdown,
    )
    worker.context["service"] = service
    return worker


async def _shutdown(ctx: dict[str, Any]) -> None:
    service: GenerationService = ctx["service"]
    await service.cache.close()
    await disconnect(ctx["worker"].queue)


async def train_job(ctx: dict[str, Any], *, job_id: str) -> dict[str, Any]:
    """The SAQ training job function: run the job's process to its end, heartbeating."""
    settings: MLSettings = ctx["settings"]
    job: Job = ctx["job"]
    state = await supervise(
        job_id,
        JobFiles(settings.training_dir / job_id),
        ctx["store"],
        stopped=WORKER_STOPPED,
        env=settings.runner_env(),
        beat=job.update,
    )
    return {"status": state.get("status") if state else None}


def build_training_worker(settings: MLSettings) -> Worker[Any]:
    """A SAQ worker for the training queue: one job at a time, each in a child process."""
    assert settings.redis_url is not None
    queue = saq_queue(settings.redis_url, settings.training_queue_name, socket_timeout=None)
    worker: Worker[Any] = Worker(
        queue,
        functions=[(TRAIN_FUNCTION, train_job)],
        concurrency=1,
        timers=TIMERS,
        shutdown=_shutdown_training,
    )
    worker.context["settings"] = settings
    worker.context["store"] = RedisStore(aioredis.from_url(settings.redis_url))
    return worker


async def _shutdown_training(ctx: dict[str, Any]) -> None:
    store: RedisStore = ctx["store"]
    await store.close()
    await disconnect(ctx["worker"].queue)


async def run_worker(settings: MLSettings, manager: LLMManager) -> None:
    quiet_saq_logs()
    # Serve the adapter every instance serves, and follow when it changes.
    adapters = AdapterService(manager, make_adapter_store(settings))
    await adapters.start()
    worker = build_worker(settings, manager)
    training = build_training_worker(settings)
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
