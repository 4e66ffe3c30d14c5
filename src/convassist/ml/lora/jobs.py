"""Training jobs as the ML service sees them: submission, state, supervision, cancellation.

A job always trains in its own process (`python -m convassist.ml.lora.runner <job dir>`),
never in the serving process. Without Redis the ML service starts that process itself, one
job at a time (the others wait, `queued`), and keeps each job's state in
`<data dir>/ml/training/<id>/state.json`. With Redis, jobs go to the SAQ queue
`conv-assistant:queue:training`; a `convassist worker` starts the process, and the state lives
in the Redis hash `conv-assistant:job:<id>` (the worker and the service share the data dir,
which holds the samples and the adapters).

Whoever started the process (the supervisor) copies the runner's `progress.json` into the
state every second, with a heartbeat. A job never stays `training` when its process is gone:
a process that exits without a final report fails the job ("the training process died"); a
service restarted mid-job fails its jobs at start-up; a worker that stops heartbeating fails
its job when the job is next read. Cancelling writes `cancelled` (only while the job is not
finished, atomically), and the supervisor then stops the process: SIGTERM, SIGKILL after 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError
from saq import Queue

from convassist.core.errors import AppError, Conflict, ServiceUnavailable, Unprocessable
from convassist.core.logging import get_logger
from convassist.ml.lora.dataset import Sample, unusable_reason, write_samples
from convassist.ml.lora.state import FINISHED, JobFiles, JobSpec, read_json, utcnow, write_json
from convassist.ml.native import NativeStatus
from convassist.ml.schemas import JOB_ID_PATTERN, TrainingJobState, TrainingRequest
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.training")

RUNNER_MODULE = "convassist.ml.lora.runner"
TRAIN_FUNCTION = "train"
JOB_KEY_PREFIX = "conv-assistant:job:"
STATE_TTL_SECONDS = 30 * 24 * 3600
POLL_SECONDS = 1.0
KILL_GRACE_SECONDS = 5.0
TRAIN_JOB_TIMEOUT = 7 * 24 * 3600
RESTARTED = "The ML service restarted while the job ran."
STOPPED = "The ML service stopped while the job ran."
WORKER_STOPPED = "The worker running this job stopped."
WORKER_LOST = "The worker running this job stopped responding."
MISSING = (
    "The job's files are missing: the worker and the ML service must share CONVASSIST_DATA_DIR."
)
TRAIN_MODULES = ("torch", "transformers", "peft", "gguf")
JOB_ID = re.compile(JOB_ID_PATTERN)
_PUBLIC = frozenset(TrainingJobState.model_fields) | {
    field.alias for field in TrainingJobState.model_fields.values() if field.alias
}


class StateStore(Protocol):
    """Job states (camelCase dicts); `update` only changes a job that is not finished."""

    async def create(self, job_id: str, state: dict[str, Any]) -> bool: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """The new state; None when the job is unknown or already finished."""
        ...

    async def unfinished(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


class FileStore:
    """`<root>/<job id>/state.json`, written only by the ML service's event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, job_id: str) -> Path:
        return self.root / job_id / "state.json"

    async def create(self, job_id: str, state: dict[str, Any]) -> bool:
        path = self._path(job_id)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, state)
        return True

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return read_json(self._path(job_id))

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        state = read_json(self._path(job_id))
        if state is None or state.get("status") in FINISHED:
            return None
        state.update(changes)
        write_json(self._path(job_id), state)
        return state

    async def unfinished(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        states = [read_json(entry / "state.json") for entry in self.root.iterdir()]
        return [s for s in states if s is not None and s.get("status") not in FINISHED]

    async def close(self) -> None:
        return None


class RedisStore:
    """The hash `conv-assistant:job:<id>` (`status`, and the whole state as JSON)."""

    def __init__(self, redis: aioredis.Redis[bytes]) -> None:
        self.redis = redis

    @staticmethod
    def key(job_id: str) -> str:
        return JOB_KEY_PREFIX + job_id

    async def create(self, job_id: str, state: dict[str, Any]) -> bool:
        key = self.key(job_id)
        created = await self.redis.hsetnx(key, "status", str(state["status"]))
        if not created:
            return False
        await self.redis.hset(key, "state", json.dumps(state))
        await self.redis.expire(key, STATE_TTL_SECONDS)
        return True

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.key(job_id), "state")
        return dict(json.loads(raw)) if raw else None

    async def update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        key = self.key(job_id)
        async with self.redis.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, "state")
                    if not raw:
                        return None
                    state: dict[str, Any] = json.loads(raw)
                    if state.get("status") in FINISHED:
                        return None
                    state.update(changes)
                    pipe.multi()
                    pipe.hset(key, mapping={"status": state["status"], "state": json.dumps(state)})
                    await pipe.execute()
                    return state
                except WatchError:
                    continue

    async def unfinished(self) -> list[dict[str, Any]]:
        states = []
        async for key in self.redis.scan_iter(match=JOB_KEY_PREFIX + "*", count=500):
            status = await self.redis.hget(key, "status")
            if status is not None and status.decode() not in FINISHED:
                state = await self.get(key.decode()[len(JOB_KEY_PREFIX) :])
                if state is not None:
                    states.append(state)
        return states

    async def close(self) -> None:
        await self.redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def public_state(state: dict[str, Any]) -> TrainingJobState:
    return TrainingJobState.model_validate({k: v for k, v in state.items() if k in _PUBLIC})


async def terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the runner reports `cancelled` and exits), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _exit_description(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


async def supervise(
    job_id: str,
    files: JobFiles,
    store: StateStore,
    *,
    stopped: str,
    beat: Callable[[], Awaitable[Any]] | None = None,
    started: Callable[[asyncio.subprocess.Process], None] | None = None,
) -> dict[str, Any] | None:
    """Run the job's process to its end, mirroring its progress into `store`.

    If this coroutine is cancelled (its owner stops), the process is stopped and the job
    fails with the message `stopped`.
    """
    if not files.spec.is_file():
        await store.update(job_id, {"status": "failed", "error": MISSING, "completedAt": utcnow()})
        return await store.get(job_id)
    if await store.update(job_id, {"status": "training", "heartbeatAt": utcnow()}) is None:
        return await store.get(job_id)  # cancelled while it waited
    files.progress.unlink(missing_ok=True)
    with files.log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            RUNNER_MODULE,
            str(files.directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    files.pid.write_text(str(process.pid))
    if started is not None:
        started(process)
    log.info("training_started", job_id=job_id, pid=process.pid)
    try:
        await _mirror(job_id, files, store, process, beat)
    except asyncio.CancelledError:  # our owner is shutting down: the job cannot go on
        await terminate(process)
        await store.update(job_id, {"status": "failed", "error": stopped, "completedAt": utcnow()})
        raise
    final = read_json(files.progress)
    if final is not None and final.get("status") in FINISHED:
        changes = {k: v for k, v in final.items() if k in _PUBLIC and k != "jobId"}
    else:
        changes = {
            "status": "failed",
            "error": f"The training process died ({_exit_description(process.returncode)}).",
            "completedAt": utcnow(),
        }
    await store.update(job_id, changes)
    state = await store.get(job_id)
    log.info("training_finished", job_id=job_id, status=state and state.get("status"))
    return state


async def _mirror(
    job_id: str,
    files: JobFiles,
    store: StateStore,
    process: asyncio.subprocess.Process,
    beat: Callable[[], Awaitable[Any]] | None,
) -> None:
    """Copy progress into the store every second until the process ends (or is cancelled)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), POLL_SECONDS)
        if process.returncode is not None:
            return
        progress = read_json(files.progress) or {}
        changes: dict[str, Any] = {
            k: progress[k] for k in ("progress", "metrics", "startedAt") if k in progress
        }
        if await store.update(job_id, {**changes, "heartbeatAt": utcnow()}) is None:
            await terminate(process)  # the job was cancelled
            return
        if beat is not None:
            await beat()


def pid_is_runner(pid: int, job_dir: Path) -> bool:
    """Whether `pid` is still this job's runner process (Linux: its command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return RUNNER_MODULE.encode() in cmdline and str(job_dir).encode() in cmdline


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
            from convassist.ml.jobs import QUEUE_TIMEOUT, saq_queue

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
            from convassist.ml.manifest import load_manifest

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
            adapters_dir=str(self.settings.adapters_dir),
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
                    job_id, self.files(job_id), self.store, stopped=STOPPED, started=started
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
            from convassist.ml.jobs import disconnect

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
