"""Training jobs: snapshot the samples, hand them to the ML service, mirror its progress.

The ML service trains in a separate process and reports status, progress and metrics; the
server's TrainingJob row mirrors that state whenever a job is read (the UI polls), so a row
never claims `training` for a job the ML service has lost: it turns `failed` with a reason.
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
from convassist.server.ml_client import MLClient, MLServiceError
from convassist.server.models import TrainingJob, TrainingSample, TrainingStatus, utcnow
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.training.history import HISTORY_QUALITY, history_samples
from convassist.server.training.schemas import JobCreate
from convassist.server.training.service import jsonl_record

log = get_logger(__name__)

ACTIVE = (TrainingStatus.QUEUED, TrainingStatus.TRAINING)
_STATUSES = {status.value: status for status in TrainingStatus}


def snapshot_path(data_dir: Path, job_id: uuid.UUID) -> Path:
    """Where the exact samples a job trained on are kept (JSONL, one sample a line)."""
    return data_dir / "training" / "jobs" / str(job_id) / "samples.jsonl"


async def _served_base_model(ml: MLClient) -> str:
    """The base model id the ML service serves (its model_version before `@`)."""
    version = str((await ml.health())["model_version"])
    return version.split("@", 1)[0].split("+", 1)[0]


async def _collect(session: AsyncSession, body: JobCreate) -> list[dict[str, Any]]:
    """The owner's samples at or above min quality, plus (optionally) history, deduplicated."""
    samples = await session.execute(
        select(TrainingSample)
        .where(TrainingSample.quality >= body.min_quality)
        .order_by(TrainingSample.created_at, TrainingSample.id)
    )
    records = [jsonl_record(sample) for sample in samples.scalars()]
    if body.include_history and body.min_quality <= HISTORY_QUALITY:
        seen = {(r["prompt"], r["completion"]) for r in records}
        async for sample in history_samples(session):
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
    session: AsyncSession, ml: MLClient, body: JobCreate, *, data_dir: Path
) -> TrainingJob:
    """Create the job (`queued`), snapshot its samples, submit them to the ML service."""
    base_model = body.base_model or await _served_base_model(ml)
    records = await _collect(session, body)
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
        learning_rate=body.learning_rate,
        lora_rank=body.lora_rank,
        min_quality=body.min_quality,
        include_history=body.include_history,
        sample_count=len(records),
        metrics={},
    )
    session.add(job)
    await session.flush()
    await asyncio.to_thread(_write_snapshot, snapshot_path(data_dir, job.id), records)
    # The job is recorded before the submission, which may be slow or fail.
    await session.commit()
    payload = {
        "jobId": str(job.id),
        "baseModel": base_model,
        "epochs": body.epochs,
        "learningRate": body.learning_rate,
        "loraRank": body.lora_rank,
        "samples": [
            {
                "prompt": r["prompt"],
                "completion": r["completion"],
                "quality": r["quality"],
                "conversationId": r["conversationId"],
            }
            for r in records
        ],
    }
    try:
        state = await ml.submit_training(payload)
    except MLServiceError as exc:
        _fail(job, exc.detail)
        if 400 <= exc.upstream_status < 500:
            raise Unprocessable(exc.detail, code="training_rejected", keep_changes=True) from None
        exc.keep_changes = True
        raise
    except AppError as exc:
        _fail(job, exc.detail)
        exc.keep_changes = True
        raise
    job.ml_job_id = str(state.get("jobId", job.id))
    apply_state(job, state)
    log.info("training_job_submitted", job_id=str(job.id), samples=len(records))
    return job


def _fail(job: TrainingJob, reason: str) -> None:
    job.status = TrainingStatus.FAILED
    job.error = reason
    job.completed_at = utcnow()
    log.warning("training_job_failed", job_id=str(job.id))


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def apply_state(job: TrainingJob, state: dict[str, Any]) -> None:
    """Mirror the ML service's view of the job onto the row."""
    status = _STATUSES.get(str(state.get("status")))
    if status is not None:
        job.status = status
    if isinstance(state.get("progress"), int | float):
        job.progress = max(0, min(100, int(state["progress"])))
    for field, key in (
        ("error", "error"),
        ("adapter_id", "adapterId"),
        ("output_path", "outputPath"),
    ):
        if state.get(key) is not None:
            setattr(job, field, state[key])
    if isinstance(state.get("metrics"), dict) and state["metrics"]:
        job.metrics = state["metrics"]
    job.started_at = _timestamp(state.get("startedAt")) or job.started_at
    job.completed_at = _timestamp(state.get("completedAt")) or job.completed_at
    if job.status is TrainingStatus.COMPLETED:
        job.progress = 100


async def refresh(session: AsyncSession, ml: MLClient, job: TrainingJob) -> TrainingJob:
    """Bring an active job's row up to date; a job the ML service lost becomes failed."""
    if job.status not in ACTIVE or not job.ml_job_id:
        return job
    job_id = job.ml_job_id
    await session.commit()  # don't hold a transaction across the ML call
    try:
        state = await ml.training_job(job_id)
    except AppError:
        return job  # unreachable for now: leave the row as it was
    if state is None:
        _fail(job, "The ML service no longer knows this job (was it restarted?).")
    else:
        apply_state(job, state)
    return job


async def get_job(session: AsyncSession, ml: MLClient, job_id: uuid.UUID) -> TrainingJob:
    job = await session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound("No such training job.")
    return await refresh(session, ml, job)


async def list_jobs(
    session: AsyncSession, ml: MLClient, *, limit: int, cursor: str | None = None
) -> tuple[list[TrainingJob], str | None]:
    """Newest first, keyset-paginated; the page's active jobs are brought up to date."""
    query = select(TrainingJob)
    if cursor:
        created, job_id = decode_timed_cursor(cursor)
        query = query.where(tuple_(TrainingJob.created_at, TrainingJob.id) < (created, job_id))
    query = query.order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc())
    jobs = list((await session.execute(query.limit(limit + 1))).scalars())
    last = jobs[limit - 1] if len(jobs) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    for job in jobs[:limit]:
        await refresh(session, ml, job)
    return jobs[:limit], next_cursor


async def cancel_job(session: AsyncSession, ml: MLClient, job_id: uuid.UUID) -> TrainingJob:
    job = await get_job(session, ml, job_id)
    if job.status not in ACTIVE:
        raise Conflict(f"This job is already {job.status.value}.", code="job_finished")
    if job.ml_job_id:
        try:
            apply_state(job, await ml.cancel_training(job.ml_job_id))
        except MLServiceError as exc:
            if exc.upstream_status == 409:  # it finished meanwhile: take its final state
                state = await ml.training_job(job.ml_job_id)
                if state is not None:
                    apply_state(job, state)
                    if job.status not in ACTIVE:
                        raise Conflict(
                            f"This job is already {job.status.value}.", code="job_finished"
                        ) from None
            elif exc.upstream_status != 404:
                raise
    if job.status in ACTIVE:
        job.status = TrainingStatus.CANCELLED
        job.completed_at = utcnow()
    log.info("training_job_cancelled", job_id=str(job.id))
    return job
