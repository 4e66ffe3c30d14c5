"""`/training/jobs`: submit, read and cancel LoRA training jobs."""

from __future__ import annotations

from fastapi import APIRouter

from convassist.core.errors import NotFound
from convassist.core.openapi import error_responses
from convassist.ml.state import State
from convassist.ml.training.schemas import TrainingJobState, TrainingRequest

router = APIRouter()


@router.post(
    "/training/jobs",
    response_model=TrainingJobState,
    status_code=202,
    responses=error_responses(409, 503),
)
async def submit_training(body: TrainingRequest, ml: State) -> TrainingJobState:
    """Queue a LoRA training job on the served model; poll `GET /training/jobs/{jobId}`."""
    return await ml.training.submit(body)


@router.get(
    "/training/jobs/{job_id}", response_model=TrainingJobState, responses=error_responses(404, 503)
)
async def training_job(job_id: str, ml: State) -> TrainingJobState:
    state = await ml.training.get(job_id)
    if state is None:
        raise NotFound(f"No training job {job_id!r}.")
    return state


@router.post(
    "/training/jobs/{job_id}/cancel",
    response_model=TrainingJobState,
    responses=error_responses(404, 409, 503),
)
async def cancel_training(job_id: str, ml: State) -> TrainingJobState:
    """Cancel a queued or running job (its process stops within seconds); 409 if finished."""
    state = await ml.training.cancel(job_id)
    if state is None:
        raise NotFound(f"No training job {job_id!r}.")
    return state
