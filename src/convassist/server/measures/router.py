"""Online measures (owner only): `GET /api/training/online?days=30`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from convassist.server.deps import OwnerDep, SessionDep
from convassist.server.measures import service
from convassist.server.measures.schemas import OnlineMeasures

router = APIRouter(prefix="/training", tags=["training"])

DaysQuery = Annotated[int, Query(ge=1, le=365, description="How many days back, today included.")]


@router.get("/online", response_model=OnlineMeasures)
async def online_measures(_: OwnerDep, session: SessionDep, days: DaysQuery = 30) -> OnlineMeasures:
    """Coverage, usage by slot and edit distance, per day (or week) and per adapter."""
    return await service.online_measures(session, days)
