"""`convassist ml` (the ML service) and `convassist worker` (generation and training jobs)."""

from __future__ import annotations

import asyncio

import typer

from convassist.cli.common import console, ensure_port_free, fail, setup_logging
from convassist.ml.auth import is_loopback
from convassist.ml.backends.factory import load_backend
from convassist.ml.errors import ModelError
from convassist.ml.generation.manager import LLMManager
from convassist.ml.settings import MLSettings


def _load(settings: MLSettings) -> LLMManager:
    try:
        return LLMManager(load_backend(settings))
    except ModelError as exc:
        fail(str(exc))


def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address [default: 127.0.0.1]."),
    port: int | None = typer.Option(None, "--port", help="Port [default: 8100]."),
) -> None:
    """Run the ML service (generation, cache, async jobs) on port 8100."""
    import uvicorn

    from convassist.ml.app import create_app

    settings = MLSettings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    setup_logging(settings, "ml")
    settings.ensure_data_dir()
    if not settings.ml_service_token and not is_loopback(settings.host):
        fail(
            f"The ML service would listen on {settings.host}, beyond this machine, without "
            "ML_SERVICE_TOKEN: set it (the same on the server) so only your server can use it."
        )
    ensure_port_free(
        "The ML service",
        settings.host,
        settings.port,
        f"Choose another port with `convassist ml --port {settings.port + 1}` "
        "(or ML_SERVICE_PORT) and point the server at it with ML_SERVICE_URL.",
    )
    manager = _load(settings)
    redis = "Redis" if settings.use_redis else "in-process cache and jobs"
    console.print(
        f"ML service on http://{settings.host}:{settings.port} "
        f"(model: {manager.model_version}, {redis})",
        highlight=False,
    )
    uvicorn.run(
        create_app(settings, llm=manager),
        host=settings.host,
        port=settings.port,
        log_config=None,
        server_header=False,
    )
    manager.close()


def worker() -> None:
    """Run a worker for async generation and training jobs (needs REDIS_URL)."""
    from convassist.ml.worker import run_worker

    settings = MLSettings()
    setup_logging(settings, "worker")
    settings.ensure_data_dir()
    if not settings.use_redis:
        fail(
            "The worker takes jobs from Redis: set REDIS_URL (and keep "
            "ML_SERVICE_REDIS_ENABLED=true). Without Redis the ML service runs jobs itself."
        )
    manager = _load(settings)
    try:
        asyncio.run(run_worker(settings, manager))
    finally:
        manager.close()
