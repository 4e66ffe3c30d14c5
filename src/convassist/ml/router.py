"""The ML service's HTTP endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from convassist.core.errors import NotFound
from convassist.ml.cache import ResponseCache
from convassist.ml.jobs import JobQueue
from convassist.ml.llm import LLMManager
from convassist.ml.manifest import load_manifest
from convassist.ml.metrics import Metrics
from convassist.ml.schemas import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    JobCreated,
    JobStatus,
    ModelInfo,
    ModelsResponse,
)
from convassist.ml.service import GenerationService
from convassist.ml.settings import MLSettings


@dataclass
class MLState:
    """Everything the endpoints use, kept on `app.state.ml`."""

    settings: MLSettings
    manager: LLMManager
    cache: ResponseCache
    service: GenerationService
    jobs: JobQueue
    metrics: Metrics


def ml_state(request: Request) -> MLState:
    state: MLState = request.app.state.ml
    return state


State = Annotated[MLState, Depends(ml_state)]

router = APIRouter()


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, ml: State) -> GenerateResponse:
    """Generate a reply (and up to 4 more distinct candidates) for a conversation prompt."""
    return await ml.service.generate(body)


@router.post("/generate/async", response_model=JobCreated, status_code=202)
async def generate_async(body: GenerateRequest, ml: State) -> JobCreated:
    """Queue a generation; poll `GET /jobs/{jobId}` for its result."""
    return JobCreated(job_id=await ml.jobs.submit(body))


@router.get("/jobs/{job_id}", response_model=JobStatus)
async def job_status(job_id: str, ml: State) -> JobStatus:
    status = await ml.jobs.status(job_id)
    if status is None:
        raise NotFound(f"No job {job_id!r}: unknown, or its result has expired.")
    return status


@router.get("/health", response_model=HealthResponse)
async def health(ml: State) -> HealthResponse:
    redis = await ml.cache.redis_state()
    return HealthResponse(
        status="degraded" if redis == "down" else "ok",
        model_loaded=True,
        model_version=ml.manager.model_version,
        backend=ml.manager.backend.name,
        redis=redis,
        cache=ml.cache.kind,
        jobs=ml.jobs.kind,
        queue_depth=await ml.jobs.depth(),
        in_flight=ml.manager.in_flight,
    )


@router.get("/models", response_model=ModelsResponse)
async def models(ml: State) -> ModelsResponse:
    """The manifest's models, which are on disk, and which one is being served."""
    version = ml.manager.model_version
    return ModelsResponse(
        loaded=version,
        backend=ml.manager.backend.name,
        models=[
            ModelInfo(
                id=spec.id,
                name=spec.name,
                license=spec.license,
                source=spec.source,
                cached=spec.is_available(ml.settings.models_dir),
                loaded=version.startswith(f"{spec.id}@"),
                description=spec.description,
            )
            for spec in load_manifest().models.values()
        ],
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(ml: State) -> Response:
    return Response(ml.metrics.render(), media_type=CONTENT_TYPE_LATEST)
