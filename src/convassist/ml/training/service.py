"""Training jobs as the ML service sees them: submission, state, supervision, cancellation.

A job always trains in its own process (`python -m convassist.ml.training.runner <job dir>`),
never in the serving process. Without Redis the ML service starts that process itself, one
job at a time (the others wait, `queued`), and keeps each job's state in
`<data dir>/ml/training/<id>/state.json`. With Redis, jobs go to the SAQ queue
`conv-assistant:queue:training`; a `convassist worker` starts the process, and the state lives
in the Redis hash `conv-assistant:job:<id>` (the worker and the service share the data dir,
which holds the samples and the adapters).

States are kept by `store`, and the process is run by `supervise`. A job never stays
`training` when its process is gone: a service restarted mid-job fails its jobs at start-up,
and a worker that stops heartbeating fails its job when the job is next read. Cancelling
writes `cancelled` (only while the job is not finished, atomically), and the supervisor then
stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from saq import Queue

from convassist.core.errors import AppError, Conflict, ServiceUnavailable, Unprocessable
from convassist.core.logging import get_logger
from convassist.ml.models.native import NativeStatus
from convassist.ml.settings import MLSettings
from convassist.ml.training.dataset import Sample, unusable_reason, write_samples
from convassist.ml.training.files import FINISHED, JobFiles, JobSpec, utcnow, write_json
from convassist.ml.training.schemas import JOB_ID_PATTERN, TrainingJobState, TrainingRequest
from convassist.ml.training.store import FileStore, RedisStore, StateStore, public_state
from convassist.ml.training.supervise import POLL_SECONDS, pid_is_runner, supervise, terminate

log = get_logger("convassist.ml.training")

TRAIN_FUNCTION = "train"
TRAIN_JOB_TIMEOUT = 7 * 24 * 3600
RESTARTED = "The ML service restarted while the job ran."
STOPPED = "The ML service stopped while the job ran."
WORKER_STOPPED = "The worker running this job stopped."
WORKER_LOST = "The worker running this job stopped responding."
TRAIN_MODULES = ("torch", "transformers", "peft", "gguf")
JOB_ID = re.compile(JOB_ID_PATTERN)


class ServedModel(Protocol):
    """What training needs to know about the model being served."""

    model_id: str
    base_version: str
    path: Path
    native: NativeStatus


class TrainingJobs:
    """Submission and state of training jobs; runs them itself without Redis."""

    def __init__(
        self,
        settings: MLSettings,
        served: ServedModel | None,
        on_completed: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.served = served
        self.on_completed = on_completed
        self.store: StateStore
        self.queue: Queue | None = None
        if settings.use_redis:
            assert settings.redis_url is not None
            from convassist.ml.generation.queue import QUEUE_TIMEOUT, saq_queue

            self.store = RedisStore(
                aioredis.from_url(
                    settings.redis_url,
                    socket_timeout=QUEUE_TIMEOUT,
                    socket_connect_timeout=QUEUE_TIMEOUT,
                )
            )
            self.queue = saq_queue(
                settings.redis_url, settings.training_queue_name, socket_timeout=QUEUE_TIMEOUT
            )
        else:
            self.store = FileStore(settings.training_dir)
        self.kind = "saq" if self.queue is not None else "subprocess"
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._watched: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._process: asyncio.subprocess.Process | None = None
        self._running: str | None = None

    def files(self, job_id: str) -> JobFiles:
        return JobFiles(self.settings.training_dir / job_id)

    async def start(self) -> None:
        """Fail what a previous instance left running (no Redis), then start the job loop."""
        if self.queue is None:
            for state in await self.store.unfinished():
                await self._fail_orphan(str(state["jobId"]))
            self._tasks.append(asyncio.create_task(self._run_queue()))
        else:
            with contextlib.suppress(RedisError, OSError):
                for state in await self.store.unfinished():
                    if state.get("autoActivate"):
                        self._watched.add(str(state["jobId"]))
            self._tasks.append(asyncio.create_task(self._watch()))

    async def _fail_orphan(self, job_id: str) -> None:
        files = self.files(job_id)
        with contextlib.suppress(OSError, ValueError):
            pid = int(files.pid.read_text())
            if pid_is_runner(pid, files.directory):
                os.kill(pid, signal.SIGKILL)
        await self.store.update(
            job_id, {"status": "failed", "error": RESTARTED, "completedAt": utcnow()}
        )
        log.warning("training_job_failed", job_id=job_id, reason="service_restarted")

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
        state: dict[str, Any] = {
            "jobId": job_id,
            "status": "queued",
            "progress": 0,
            "error": None,
            "adapterId": None,
            "outputPath": None,
            "metrics": {},
            "createdAt": utcnow(),
            "startedAt": None,
            "completedAt": None,
            "baseModel": served.model_id,
            "autoActivate": auto,
        }
        files = self.files(job_id)
        try:
            if not await self.store.create(job_id, state):
                raise Conflict(f"A training job {job_id!r} already exists.", code="job_exists")
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The job store (Redis) is unavailable.") from exc
        spec = JobSpec(
            job_id=job_id,
            base_model=served.model_id,
            base_version=served.base_version,
            model_path=str(served.path),
            epochs=request.epochs,
            learning_rate=request.learning_rate,
            lora_rank=request.lora_rank,
            lora_alpha=request.lora_alpha,
            seed=request.seed,
            holdout_fraction=request.holdout_fraction,
            max_length=self.settings.train_max_context,
            batch_size=self.settings.train_batch_size,
            threads=self.settings.train_threads,
            lora_layers=self.settings.train_lora_layers,
            llama_config=served.native.config.name,
        )
        await asyncio.to_thread(_write_job, files, spec, samples)
        if self.queue is None:
            self._pending.put_nowait(job_id)
        else:
            await self._enqueue(job_id)
            if auto:
                self._watched.add(job_id)
        log.info("training_job_queued", job_id=job_id, samples=len(samples), runner=self.kind)
        return public_state(state)

    async def _enqueue(self, job_id: str) -> None:
        assert self.queue is not None
        try:
            await self.queue.enqueue(
                TRAIN_FUNCTION,
                key=job_id,
                job_id=job_id,
                timeout=TRAIN_JOB_TIMEOUT,
                heartbeat=self.settings.job_heartbeat,
                ttl=self.settings.job_ttl,
                retries=1,
            )
        except (RedisError, OSError) as exc:
            await self.store.update(
                job_id,
                {"status": "failed", "error": "Redis is unavailable.", "completedAt": utcnow()},
            )
            raise ServiceUnavailable("The job queue (Redis) is unavailable.") from exc

    async def get(self, job_id: str) -> TrainingJobState | None:
        if not JOB_ID.fullmatch(job_id):
            return None
        try:
            state = await self.store.get(job_id)
            if state is not None and self.queue is not None and _stale(state, self._stale_after):
                state = await self.store.update(
                    job_id, {"status": "failed", "error": WORKER_LOST, "completedAt": utcnow()}
                ) or await self.store.get(job_id)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The job store (Redis) is unavailable.") from exc
        return public_state(state) if state is not None else None

    @property
    def _stale_after(self) -> float:
        return max(3.0 * self.settings.job_heartbeat, 15.0)

    async def cancel(self, job_id: str) -> TrainingJobState | None:
        """Cancel the job; its process is stopped within a few seconds. None if unknown."""
        if not JOB_ID.fullmatch(job_id):
            return None
        try:
            state = await self.store.update(
                job_id,
                {"status": "cancelled", "error": "The job was cancelled.", "completedAt": utcnow()},
            )
            if state is None:
                current = await self.store.get(job_id)
                if current is None:
                    return None
                raise Conflict(
                    f"The job is already {current['status']}.",
                    code="job_finished",
                    status=current["status"],
                )
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The job store (Redis) is unavailable.") from exc
        if self._running == job_id and self._process is not None:
            await terminate(self._process)
        log.info("training_job_cancelled", job_id=job_id)
        return public_state(state)

    async def _run_queue(self) -> None:
        while True:
            job_id = await self._pending.get()
            self._running = job_id

            def started(process: asyncio.subprocess.Process) -> None:
                self._process = process

            try:
                state = await supervise(
                    job_id,
                    self.files(job_id),
                    self.store,
                    stopped=STOPPED,
                    env=self.settings.runner_env(),
                    started=started,
                )
                if state is not None:
                    await self._finished(state)
            except Exception as exc:  # never let one job stop the loop
                log.error("training_supervisor_error", job_id=job_id, error_type=type(exc).__name__)
                await self.store.update(
                    job_id,
                    {
                        "status": "failed",
                        "error": "The job could not be run.",
                        "completedAt": utcnow(),
                    },
                )
            finally:
                self._running, self._process = None, None

    async def _watch(self) -> None:
        """With Redis: notice jobs that completed on a worker (for auto-activation)."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            for job_id in list(self._watched):
                try:
                    state = await self.store.get(job_id)
                except (RedisError, OSError):
                    break
                if state is None or state.get("status") in FINISHED:
                    self._watched.discard(job_id)
                    if state is not None:
                        await self._finished(state)

    async def _finished(self, state: dict[str, Any]) -> None:
        if state.get("status") == "completed" and state.get("autoActivate"):
            try:
                await self.on_completed(state)
            except AppError as exc:
                log.warning("adapter_not_activated", job_id=state.get("jobId"), reason=exc.code)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.queue is not None:
            from convassist.ml.generation.queue import disconnect

            await disconnect(self.queue)
        with contextlib.suppress(RedisError, OSError):
            await self.store.close()


def _write_job(files: JobFiles, spec: JobSpec, samples: list[Sample]) -> None:
    files.directory.mkdir(parents=True, exist_ok=True)
    write_samples(files.samples, samples)
    write_json(files.spec, spec.to_json())


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _stale(state: dict[str, Any], seconds: float) -> bool:
    if state.get("status") != "training" or not state.get("heartbeatAt"):
        return False
    beat = datetime.fromisoformat(str(state["heartbeatAt"]))
    return (datetime.now(UTC) - beat).total_seconds() > seconds
