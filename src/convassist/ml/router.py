"""The ML service's HTTP endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from convassist.core.errors import NotFound
from convassist.core.limits import AdapterIdPath
from convassist.core.openapi import error_responses
from convassist.ml.auth import is_authenticated
from convassist.ml.cache import ResponseCache
from convassist.ml.jobs import JobQueue
from convassist.ml.llm import LLMManager
from convassist.ml.lora.jobs import TrainingJobs
from convassist.ml.lora.serving import AdapterService
from convassist.ml.manifest import load_manifest
from convassist.ml.metrics import Metrics
from convassist.ml.schemas import (
    ActiveAdapter,
    AdaptersResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    HealthStatus,
    JobCreated,
    JobStatus,
    Liveness,
    LlamaHealth,
    ModelInfo,
    ModelsResponse,
    TrainingJobState,
    TrainingRequest,
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
    training: TrainingJobs
    adapters: AdapterService


def ml_state(request: Request) -> MLState:
    state: MLState = request.app.state.ml
    return state


State = Annotated[MLState, Depends(ml_state)]

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


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=error_responses(404, 503))
async def job_status(job_id: str, ml: State) -> JobStatus:
    status = await ml.jobs.status(job_id)
    if status is None:
        raise NotFound(f"No job {job_id!r}: unknown, or its result has expired.")
    return status


@router.get("/health", response_model=HealthResponse | Liveness)
async def health(request: Request, ml: State) -> HealthResponse | Liveness:
    """Liveness for anyone; the details (model, backend, Redis, queue) only with the token."""
    redis = await ml.cache.redis_state()
    status: HealthStatus = "degraded" if redis == "down" else "ok"
    if not is_authenticated(request):
        return Liveness(status=status)
    return HealthResponse(
        status=status,
        model_loaded=True,
        model_version=ml.manager.model_version,
        backend=ml.manager.backend.name,
        redis=redis,
        cache=ml.cache.kind,
        jobs=ml.jobs.kind,
        queue_depth=await ml.jobs.depth(),
        in_flight=ml.manager.in_flight,
        llama=LlamaHealth.of(served.native) if (served := ml.manager.adapter_backend) else None,
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


@router.get("/adapters", response_model=AdaptersResponse)
async def adapters(ml: State) -> AdaptersResponse:
    """Stored LoRA adapters, newest first, and the one being served."""
    return ml.adapters.list()


@router.post("/adapters/deactivate", response_model=ActiveAdapter)
async def deactivate_adapter(ml: State) -> ActiveAdapter:
    """Serve the base model (between two requests, without a restart)."""
    return await ml.adapters.deactivate()


@router.post(
    "/adapters/{adapter_id}/activate",
    response_model=ActiveAdapter,
    responses=error_responses(404, 409),
)
async def activate_adapter(adapter_id: AdapterIdPath, ml: State) -> ActiveAdapter:
    """Serve this adapter from the next request on (hot swap, no restart)."""
    return await ml.adapters.activate(adapter_id)
