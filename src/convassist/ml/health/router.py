"""`/health` (liveness for anyone, details with the token) and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from convassist.ml.auth import is_authenticated
from convassist.ml.health.schemas import HealthResponse, HealthStatus, Liveness, LlamaHealth
from convassist.ml.models.native import NativeStatus
from convassist.ml.state import State

router = APIRouter()


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
        llama=_llama(served.native) if (served := ml.manager.adapter_backend) else None,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(ml: State) -> Response:
    return Response(ml.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _llama(status: NativeStatus) -> LlamaHealth:
    config = status.config
    return LlamaHealth(
        config=config.name,
        extra_bufts=config.use_extra_bufts,
        reason=config.reason,
        probe=status.probe,
    )
