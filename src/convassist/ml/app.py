"""The ML service (FastAPI, port 8100)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from convassist import __version__
from convassist.core.http import (
    add_common_middleware,
    install_error_handlers,
)
from convassist.core.openapi import document_errors
from convassist.ml.adapters import router as adapters_router
from convassist.ml.adapters.factory import make_adapter_store
from convassist.ml.adapters.service import AdapterService
from convassist.ml.auth import BearerTokenMiddleware, document_bearer
from convassist.ml.backends.factory import load_backend
from convassist.ml.generation import router as generation_router
from convassist.ml.generation.cache import make_cache
from convassist.ml.generation.manager import LLMManager
from convassist.ml.generation.queue import make_jobs
from convassist.ml.generation.service import GenerationService
from convassist.ml.health import router as health_router
from convassist.ml.metrics import Metrics, MetricsMiddleware
from convassist.ml.models import router as models_router
from convassist.ml.settings import MLSettings
from convassist.ml.state import MLState
from convassist.ml.training import router as training_router
from convassist.ml.training.service import TrainingJobs
from convassist.ml.training.yielding import GenerationMarks


def create_app(settings: MLSettings | None = None, llm: LLMManager | None = None) -> FastAPI:
    """Build the service. Without `llm`, loads the configured model now (raises ModelError)."""
    settings = settings or MLSettings()
    manager = llm or LLMManager(load_backend(settings))
    metrics = Metrics()
    cache = make_cache(settings)
    service = GenerationService(
        manager, cache, metrics, GenerationMarks(settings.generation_marks_dir)
    )
    adapters = AdapterService(manager, make_adapter_store(settings))

    state = MLState(
        settings=settings,
        manager=manager,
        cache=cache,
        service=service,
        jobs=make_jobs(settings, service, metrics),
        metrics=metrics,
        training=TrainingJobs(settings, manager.adapter_backend, adapters.activate),
        adapters=adapters,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await adapters.start()
        await state.training.start()
        state.jobs.start()
        yield
        await state.training.close()
        await adapters.close()
        await state.jobs.close()
        await cache.close()
        if llm is None:  # the app loaded it, the app releases it
            manager.close()

    app = FastAPI(
        title="Conversation Assistant ML service",
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.ml = state
    install_error_handlers(app)
    # Training submissions carry the samples: they get their own, larger body limit.
    add_common_middleware(
        app,
        max_body_bytes=settings.max_body_bytes,
        quiet_paths={"/health", "/metrics"},
        body_limits={TRAINING_JOBS_PATH: settings.training_max_body_bytes},
        auth=Middleware(
            BearerTokenMiddleware, token=settings.ml_token(), public_paths=PUBLIC_PATHS
        ),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(generation_router.router)
    app.include_router(health_router.router)
    app.include_router(models_router.router)
    app.include_router(training_router.router)
    app.include_router(adapters_router.router)
    document_bearer(app, PUBLIC_PATHS)
    document_errors(app, common=(500,))
    return app


TRAINING_JOBS_PATH = "/training/jobs"
# Answered without the token: liveness (details only with it) and the API description.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
