"""Liveness and readiness of the API server."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from convassist import SERVER_ID, __version__
from convassist.core.db import is_sqlite
from convassist.server.deps import SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(session: SessionDep, settings: SettingsDep) -> dict[str, object]:
    await session.execute(text("SELECT 1"))
    return {
        "service": SERVER_ID,  # what `convassist agent` checks: this is the API server
        "status": "ok",
        "version": __version__,
        "database": "sqlite" if is_sqlite(settings.resolved_database_url) else "postgresql",
    }
