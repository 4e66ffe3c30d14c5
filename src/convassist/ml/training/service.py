"""Training jobs as the ML service sees them: checks, submission, reading and cancelling.

A job always trains in its own process (`supervise.train`), never in the serving process,
and runs on the job runtime (`ml/runtime`). Without Redis the service runs it itself, one
job at a time (the others wait, `queued`), and the record is `<data dir>/ml/training/<id>/
job.json`. With Redis the job (record, settings and samples) goes to Redis and the SAQ
queue `conv-assistant:queue:training`; one `convassist worker` takes it, materialises it in
its own data dir and runs it; every instance reads the same record. A job never stays
`training` when its process is gone: the runtime's one staleness rule fails it. Cancelling
writes `cancelled` (only while the job is not finished) and whoever runs the job stops its
process: at once in process, within a heartbeat on a worker.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from convassist.core.errors import AppError, Conflict, ServiceUnavailable, Unprocessable
from convassist.core.logging import get_logger
from convassist.ml.runtime.inprocess import InProcessJobs
from convassist.ml.runtime.records import now
from convassist.ml.runtime.runtime import JobContext, JobKind, unavailable
from convassist.ml.runtime.saq import QUEUE_TIMEOUT, SaqJobs, saq_queue
from convassist.ml.runtime.stores import LocalStore
from convassist.ml.settings import MLSettings
from convassist.ml.training.architectures import export_rules, gguf_architecture
from convassist.ml.training.dataset import Sample, unusable_reason
from convassist.ml.training.device import check_device
from convassist.ml.training.record import TrainingPayload, TrainingRecord
from convassist.ml.training.schemas import JOB_ID_PATTERN, TrainingJobState, TrainingRequest
from convassist.ml.training.supervise import ServedModel, train

log = get_logger("convassist.ml.training")

KIND = "training"
TRAIN_JOB_TIMEOUT = 7 * 24 * 3600
RECORD_TTL_SECONDS = 30 * 24 * 3600
TRAIN_MODULES = ("torch", "transformers", "peft", "gguf")
JOB_ID = re.compile(JOB_ID_PATTERN)
STORE_DOWN = "The job store (Redis) is unavailable."

OnCompleted = Callable[[str], Awaitable[object]]
"""Switches on the adapter of a completed job that asked to be activated and that its gate
let through (`metrics.gate.activate`, `quality/gate.py`): called once, by whoever ran the
job (the service without Redis, the worker with it), before the job reads as completed, so
whoever sees `completed` sees the adapter it switched on."""


def training_kind(
    settings: MLSettings, served: ServedModel | None, on_completed: OnCompleted
) -> JobKind[TrainingRecord, TrainingPayload]:
    async def run(ctx: JobContext[TrainingRecord, TrainingPayload]) -> dict[str, Any]:
        changes = await train(ctx, settings, served)
        await switch_on(ctx, changes, on_completed)
        return changes

    return JobKind(
        name=KIND,
        record=TrainingRecord,
        payload=TrainingPayload,
        run=run,
        timeout=TRAIN_JOB_TIMEOUT,
        ttl=RECORD_TTL_SECONDS,
        concurrency=1,
    )


async def switch_on(
    ctx: JobContext[TrainingRecord, TrainingPayload],
    changes: dict[str, Any],
    on_completed: OnCompleted,
) -> None:
    """Activate the completed job's adapter (`OnCompleted`), unless the job did not ask for
    it, its gate held the adapter back, or the job was cancelled meanwhile."""
    job_id, adapter_id = ctx.record.job_id, changes.get("adapter_id")
    if changes.get("status") != "completed" or not (ctx.record.auto_activate and adapter_id):
        return
    if not (changes.get("metrics", {}).get("gate") or {}).get("activate", True):
        log.info("adapter_held_back", job_id=job_id, adapter_id=adapter_id)
        return
    if not await ctx.report(progress=100):
        return  # cancelled while it trained: its adapter stays stored, not served
    try:
        await on_completed(adapter_id)
    except AppError as exc:
        log.warning("adapter_not_activated", job_id=job_id, reason=exc.code)


def training_runtime(
    settings: MLSettings, served: ServedModel | None, on_completed: OnCompleted
) -> InProcessJobs[TrainingRecord, TrainingPayload] | SaqJobs[TrainingRecord, TrainingPayload]:
    """The runtime for training jobs: SAQ with Redis (socket time-outs for the service's
    side; a worker makes its own), else in process with one file per job."""
    kind = training_kind(settings, served, on_completed)
    if settings.use_redis:
        assert settings.redis_url is not None
        queue = saq_queue(
            settings.redis_url, settings.training_queue_name, socket_timeout=QUEUE_TIMEOUT
        )
        return SaqJobs(kind, queue, settings.job_heartbeat)
    store = LocalStore(TrainingRecord, settings.training_dir)
    return InProcessJobs(kind, store, settings.job_heartbeat)


class TrainingJobs:
    """Submission and state of training jobs."""

    def __init__(
        self, settings: MLSettings, served: ServedModel | None, on_completed: OnCompleted
    ) -> None:
        self.settings = settings
        self.served = served
        self.runtime = training_runtime(settings, served, on_completed)

    async def start(self) -> None:
        self.runtime.start()

    def _check(self, request: TrainingRequest) -> ServedModel:
        if self.served is None:
            raise Unprocessable(
                "Training needs the llama backend (a GGUF model served in process); this "
                "service uses another backend.",
                code="training_unavailable",
            )
        missing = [m for m in TRAIN_MODULES if not _importable(m)]
        if missing:
            raise ServiceUnavailable(
                f"Training needs {', '.join(missing)}: install the `train` extra "
                "(pip install 'conversation-assistant[train]').",
                code="training_unavailable",
            )
        wanted = request.base_model
        if wanted is not None and wanted != self.served.model_id:
            from convassist.ml.models.manifest import load_manifest

            known = wanted in load_manifest().models
            raise Unprocessable(
                f"This ML service serves {self.served.model_id!r}; it can only train adapters "
                f"for that model, not for {wanted!r}."
                if known
                else f"Unknown base model {wanted!r}: this ML service serves "
                f"{self.served.model_id!r}.",
                code="base_model_mismatch" if known else "unknown_base_model",
            )
        return self.served

    async def submit(self, request: TrainingRequest) -> TrainingJobState:
        served = self._check(request)
        rules = export_rules(await asyncio.to_thread(gguf_architecture, served.path))
        request = request.model_copy(
            update={"learning_rate": request.learning_rate or rules.learning_rate}
        )
        await asyncio.to_thread(check_device, self.settings.train_device)
        samples = [
            Sample(s.prompt, s.completion, s.quality, s.conversation_id) for s in request.samples
        ]
        if not any(unusable_reason(sample) is None for sample in samples):
            raise Unprocessable(
                "No usable training sample: each needs a prompt ending with 'Me:', a "
                "non-empty reply and a quality above 0.",
                code="no_samples",
            )
        job_id = request.job_id or str(uuid.uuid4())
        auto = (
            request.auto_activate
            if request.auto_activate is not None
            else self.settings.auto_activate_adapters
        )
        record = TrainingRecord(
            job_id=job_id,
            status="queued",
            created_at=now(),
            base_model=served.model_id,
            auto_activate=auto,
            learning_rate=request.learning_rate,
        )
        payload = TrainingPayload(
            request=request, base_version=served.base_version, compare_adapter=served.adapter_id
        )
        with unavailable(STORE_DOWN):
            created = await self.runtime.submit(record, payload)
        if not created:
            raise Conflict(f"A training job {job_id!r} already exists.", code="job_exists")
        log.info(
            "training_job_queued", job_id=job_id, samples=len(samples), runner=self.runtime.kind
        )
        return record.public()

    async def get(self, job_id: str) -> TrainingJobState | None:
        if not JOB_ID.fullmatch(job_id):
            return None
        with unavailable(STORE_DOWN):
            record = await self.runtime.get(job_id)
        return record.public() if record is not None else None

    async def cancel(self, job_id: str) -> TrainingJobState | None:
        """Cancel the job; its process is stopped within seconds. None if unknown."""
        if not JOB_ID.fullmatch(job_id):
            return None
        with unavailable(STORE_DOWN):
            record = await self.runtime.finish(
                job_id, {"status": "cancelled", "error": "The job was cancelled."}
            )
            if record is None:
                current = await self.runtime.get(job_id)
                if current is None:
                    return None
                raise Conflict(
                    f"The job is already {current.status}.",
                    code="job_finished",
                    status=current.status,
                )
        log.info("training_job_cancelled", job_id=job_id)
        return record.public()

    async def close(self) -> None:
        await self.runtime.close()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
