"""The API server (FastAPI): JSON API under /api, admin UI at / (issue 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from convassist import __version__
from convassist.core.db import create_engine, create_sessionmaker
from convassist.core.http import add_common_middleware, install_error_handlers
from convassist.core.openapi import document_errors
from convassist.core.settings import ServerSettings
from convassist.server.auth.router import router as auth_router
from convassist.server.contacts.router import router as contacts_router
from convassist.server.conversations.router import router as conversations_router
from convassist.server.devices.router import router as devices_router
from convassist.server.health import router as health_router
from convassist.server.inbox.router import router as inbox_router
from convassist.server.measures.router import router as measures_router
from convassist.server.ml_client import MLClient
from convassist.server.outbox.router import device_router as outbox_device_router
from convassist.server.outbox.router import router as outbox_router
from convassist.server.reconciler import Reconciler
from convassist.server.responses.router import router as responses_router
from convassist.server.suggest.gate import SuggestPolicy
from convassist.server.suggest.service import Suggester
from convassist.server.sync.router import router as sync_router
from convassist.server.training.router import router as training_router
from convassist.server.web import install as install_web


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    engine = create_engine(settings.resolved_database_url)
    ml_client = MLClient(
        settings.ml_service_url, settings.ml_service_timeout, token=settings.ml_token()
    )

    sessionmaker = create_sessionmaker(engine)
    reconciler = Reconciler(sessionmaker, ml_client)
    suggester = Suggester(sessionmaker, ml_client, SuggestPolicy.from_settings(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reconciler.start()
        suggester.start()
        yield
        await suggester.stop()
        await reconciler.stop()
        await ml_client.aclose()
        await engine.dispose()

    app = FastAPI(
        title="Conversation Assistant",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by the web UI from the package (web/apidocs.py)
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.reconciler = reconciler
    app.state.suggester = suggester
    app.state.jwt_secret = settings.jwt_secret()
    app.state.ml_client = ml_client

    install_error_handlers(app)
    add_common_middleware(app, max_body_bytes=settings.max_body_bytes, quiet_paths={"/api/health"})
    for router in (
        health_router,
        auth_router,
        devices_router,
        sync_router,
        outbox_device_router,
        conversations_router,
        contacts_router,
        inbox_router,
        responses_router,
        outbox_router,
        training_router,
        measures_router,
    ):
        app.include_router(router, prefix="/api")
    install_web(app)
    # Any route may meet an unexpected error (500) or an unreachable database (503).
    document_errors(app, common=(500, 503))
    return app
