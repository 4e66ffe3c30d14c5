"""Liveness and readiness of the API server."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field

from convassist import SERVER_ID, __version__
from convassist.core.db import database_reachable, is_sqlite
from convassist.core.schemas import APIModel
from convassist.server.deps import SettingsDep

router = APIRouter(tags=["health"])

Check = Literal["up", "down"]


class HealthChecks(APIModel):
    database: Check


class Health(APIModel):
    service: str = Field(SERVER_ID, description="Names a Conversation Assistant server.")
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["sqlite", "postgresql"]
    checks: HealthChecks


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request, response: Response, settings: SettingsDep) -> Health:
    """200 `ok`; 503 `degraded` with `checks` naming what is down (the database)."""
    up = await database_reachable(request.app.state.engine)
    if not up:
        response.status_code = 503
    return Health(
        status="ok" if up else "degraded",
        version=__version__,
        database="sqlite" if is_sqlite(settings.resolved_database_url) else "postgresql",
        checks=HealthChecks(database="up" if up else "down"),
    )
