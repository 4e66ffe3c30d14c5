"""Training jobs: snapshot the samples, hand them to the ML service, mirror its progress.

The ML service trains in a separate process and reports status, progress and metrics. A
read of an active job (the UI polls) shows that live state without writing it; the
server's reconciler (`server/reconciler.py`) stores it in the TrainingJob row, so a row
never keeps claiming `training` for a job the ML service has lost: it turns `failed` with
a reason. Cancelling stores the job's state first.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import AppError, Conflict, NotFound, Unprocessable
from convassist.core.logging import get_logger
from convassist.core.model_version import MalformedModelVersion, ModelVersion
from convassist.core.training import DEFAULT_LEARNING_RATE
from convassist.ml.training.schemas import TrainingJobState, TrainingRequest, TrainingSampleIn
from convassist.server.live import Mirror
from convassist.server.ml_client import MLClient, MLServiceError
from convassist.server.models import TrainingJob, TrainingStatus, utcnow
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.training.history import HISTORY_QUALITY, history_samples
from convassist.server.training.schemas import JobCreate
from convassist.server.training.service import SampleFilter, jsonl_record, learnable
from convassist.server.unit_of_work import commit_then_call

log = get_logger(__name__)

ACTIVE = (TrainingStatus.QUEUED, TrainingStatus.TRAINING)


def snapshot_path(data_dir: Path, job_id: uuid.UUID) -> Path:
    """Where the exact samples a job trained on are kept (JSONL, one sample a line)."""
    return data_dir / "training" / "jobs" / str(job_id) / "samples.jsonl"


async def _served_base_model(ml: MLClient) -> str:
    """The id of the base model the ML service serves (from its model_version)."""
    version = (await ml.health()).model_version
    try:
        return ModelVersion.parse(version).model_id
    except MalformedModelVersion as exc:
        raise Unprocessable(
            f"Cannot tell which model the ML service serves: {exc}. Give baseModel.",
            code="unknown_base_model",
        ) from None


async def _collect(session: AsyncSession, body: JobCreate, *, groups: bool) -> list[dict[str, Any]]:
    """The owner's samples at or above min quality, plus (optionally) history, deduplicated;
    none of a conversation the owner keeps out of training (or a group chat, unless `groups`)."""
    samples = await session.execute(
        learnable(SampleFilter(min_quality=body.min_quality), groups=groups)
    )
    records = [jsonl_record(sample) for sample in samples.scalars()]
    if body.include_history and body.min_quality <= HISTORY_QUALITY:
        seen = {(r["prompt"], r["completion"]) for r in records}
        async for sample in history_samples(session, groups=groups):
            if (sample.prompt, sample.completion) in seen:
                continue
            records.append(
                {
                    "id": None,
                    "prompt": sample.prompt,
                    "completion": sample.completion,
                    "source": "history",
                    "quality": HISTORY_QUALITY,
                    "conversationId": str(sample.conversation_id),
                    "createdAt": None,
                }
            )
    return records


def _write_snapshot(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


async def create_job(
    session: AsyncSession,
    ml: MLClient,
    body: JobCreate,
    *,
    data_dir: Path,
    train_on_groups: bool = False,
) -> TrainingJob:
    """Create the job (`queued`), snapshot its samples, submit them to the ML service."""
    base_model = body.base_model or await _served_base_model(ml)
    records = await _collect(session, body, groups=train_on_groups)
    if not records:
        raise Unprocessable(
            "No training samples to learn from: accept or edit some suggestions, add samples, "
            "lower minQuality, or set includeHistory to learn from your past replies.",
            code="no_samples",
        )
    job = TrainingJob(
        base_model=base_model,
        status=TrainingStatus.QUEUED,
        progress=0,
        epochs=body.epochs,
        budget_minutes=body.budget_minutes,
        # Until the ML service says which rate it uses (`apply_state`).
        learning_rate=body.learning_rate or DEFAULT_LEARNING_RATE,
        lora_rank=body.lora_rank,
        min_quality=body.min_quality,
        include_history=body.include_history,
        sample_count=len(records),
        metrics={},
    )
    session.add(job)
    await session.flush()
    await asyncio.to_thread(_write_snapshot, snapshot_path(data_dir, job.id), records)
    request = TrainingRequest(
        job_id=str(job.id),
        base_model=base_model,
        epochs=body.epochs,
        budget_minutes=body.budget_minutes,
        learning_rate=body.learning_rate,
        lora_rank=body.lora_rank,
        samples=[
            TrainingSampleIn(
                prompt=r["prompt"],
                completion=r["completion"],
                quality=r["quality"],
                conversation_id=r["conversationId"],
            )
            for r in records
        ],
    )

    def failed(exc: AppError) -> AppError | None:
        _fail(job, exc.detail)
        if isinstance(exc, MLServiceError) and 400 <= exc.upstream_status < 500:
            return Unprocessable(exc.detail, code="training_rejected")
        return None

    # The job is recorded before the submission, which may be slow or fail.
    state = await commit_then_call(session, lambda: ml.submit_training(request), on_error=failed)
    job.ml_job_id = state.job_id
    apply_state(job, state)
    log.info("training_job_submitted", job_id=str(job.id), samples=len(records))
    return job


def _fail(job: TrainingJob, reason: str) -> None:
    job.status = TrainingStatus.FAILED
    job.error = reason
    job.completed_at = utcnow()
    log.warning("training_job_failed", job_id=str(job.id))


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def apply_state(job: TrainingJob, state: TrainingJobState) -> None:
    """Mirror the ML service's view of the job onto the row."""
    job.status = TrainingStatus(state.status)
    job.progress = max(0, min(100, state.progress))
    for field in ("error", "adapter_id", "output_path"):
        if getattr(state, field) is not None:
            setattr(job, field, getattr(state, field))
    if state.metrics:
        job.metrics = state.metrics
    job.learning_rate = state.learning_rate or job.learning_rate
    job.started_at = _timestamp(state.started_at) or job.started_at
    job.completed_at = _timestamp(state.completed_at) or job.completed_at
    if job.status is TrainingStatus.COMPLETED:
        job.progress = 100


def apply_live(job: TrainingJob, state: TrainingJobState | None) -> None:
    """Bring an active job to the ML service's state; a job the service lost: failed."""
    if state is None:
        _fail(job, "The ML service no longer knows this job (was it restarted?).")
    else:
        apply_state(job, state)


def pending(job: TrainingJob) -> str | None:
    """The ML service's id of a job still queued or training."""
    return job.ml_job_id if job.status in ACTIVE else None


MIRROR = Mirror(
    model=TrainingJob,
    active=lambda: TrainingJob.status.in_(ACTIVE) & TrainingJob.ml_job_id.is_not(None),
    pending=pending,
    ask=lambda ml, job_id: ml.training_job(job_id),
    apply=apply_live,
)
"""Training jobs follow their ML job (`server/live.py`)."""


async def get_job(session: AsyncSession, ml: MLClient, job_id: uuid.UUID) -> TrainingJob:
    """The job; an active one as the ML service reports it now (not stored)."""
    job = await session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound("No such training job.")
    if pending(job) is None:
        return job
    return (await commit_then_call(session, lambda: MIRROR.shown(ml, [job])))[0]


async def list_jobs(
    session: AsyncSession, ml: MLClient, *, limit: int, cursor: str | None = None
) -> tuple[list[TrainingJob], str | None]:
    """Newest first, keyset-paginated; the page's active jobs as the ML service reports them."""
    query = select(TrainingJob)
    if cursor:
        created, job_id = decode_timed_cursor(cursor)
        query = query.where(tuple_(TrainingJob.created_at, TrainingJob.id) < (created, job_id))
    query = query.order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc())
    jobs = list((await session.execute(query.limit(limit + 1))).scalars())
    last = jobs[limit - 1] if len(jobs) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    page = jobs[:limit]
    if any(pending(job) for job in page):
        page = await commit_then_call(session, lambda: MIRROR.shown(ml, page))
    return page, next_cursor


async def cancel_job(session: AsyncSession, ml: MLClient, job_id: uuid.UUID) -> TrainingJob:
    """Cancel an active job; its state is stored first (it may have finished meanwhile)."""
    job = await session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound("No such training job.")
    ml_job_id = pending(job)
    await MIRROR.settle(session, ml, job)  # unreachable: cancel what the row says
    if job.status not in ACTIVE:
        raise Conflict(
            f"This job is already {job.status.value}.", code="job_finished", keep_changes=True
        )
    if ml_job_id is not None:
        try:
            cancelled = await ml.cancel_training(ml_job_id)
            if cancelled is not None:  # (None: the ML service has lost it; cancelled here)
                apply_state(job, cancelled)
        except MLServiceError as exc:
            if exc.upstream_status == 409:  # it finished meanwhile: take its final state
                state = await ml.training_job(ml_job_id)
                if state is not None:
                    apply_state(job, state)
                    if job.status not in ACTIVE:
                        raise Conflict(
                            f"This job is already {job.status.value}.",
                            code="job_finished",
                            keep_changes=True,
                        ) from None
            else:
                raise
    if job.status in ACTIVE:
        job.status = TrainingStatus.CANCELLED
        job.completed_at = utcnow()
    log.info("training_job_cancelled", job_id=str(job.id))
    return job
