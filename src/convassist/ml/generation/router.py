"""`/generate`, `/generate/async` and `/jobs/{jobId}`."""

from __future__ import annotations

from fastapi import APIRouter

from convassist.core.errors import NotFound
from convassist.core.openapi import error_responses
from convassist.ml.generation.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationJob,
    JobCreated,
)
from convassist.ml.state import State

router = APIRouter()


@router.post("/generate", response_model=GenerateResponse, responses=error_responses(502, 503))
async def generate(body: GenerateRequest, ml: State) -> GenerateResponse:
    """Generate a reply (and up to 4 more distinct candidates) for a conversation prompt."""
    return await ml.service.generate(body)


@router.post(
    "/generate/async", response_model=JobCreated, status_code=202, responses=error_responses(503)
)
async def generate_async(body: GenerateRequest, ml: State) -> JobCreated:
    """Queue a generation; poll `GET /jobs/{jobId}` for its result."""
    return JobCreated(job_id=await ml.jobs.submit(body))


@router.get("/jobs/{job_id}", response_model=GenerationJob, responses=error_responses(404, 503))
async def job_status(job_id: str, ml: State) -> GenerationJob:
    status = await ml.jobs.status(job_id)
    if status is None:
        raise NotFound(f"No job {job_id!r}: unknown, or its result has expired.")
    return status
