"""`/adapters`: the stored adapters, and activating, deactivating or rolling back."""

from __future__ import annotations

from fastapi import APIRouter

from convassist.core.limits import AdapterIdPath
from convassist.core.openapi import error_responses
from convassist.ml.adapters.schemas import ActiveAdapter, AdaptersResponse
from convassist.ml.state import State

router = APIRouter()


@router.get("/adapters", response_model=AdaptersResponse)
async def adapters(ml: State) -> AdaptersResponse:
    """Stored LoRA adapters, newest first, and the one being served."""
    return await ml.adapters.list()


@router.post("/adapters/deactivate", response_model=ActiveAdapter)
async def deactivate_adapter(ml: State) -> ActiveAdapter:
    """Serve the base model (between two requests, without a restart)."""
    return await ml.adapters.deactivate()


@router.post("/adapters/rollback", response_model=ActiveAdapter, responses=error_responses(409))
async def rollback_adapter(ml: State) -> ActiveAdapter:
    """Serve the adapter active before the current choice again (409 `no_previous_adapter`
    when the base model was served before it)."""
    return await ml.adapters.rollback()


@router.post(
    "/adapters/{adapter_id}/activate",
    response_model=ActiveAdapter,
    responses=error_responses(404, 409),
)
async def activate_adapter(adapter_id: AdapterIdPath, ml: State) -> ActiveAdapter:
    """Serve this adapter from the next request on (hot swap, no restart)."""
    return await ml.adapters.activate(adapter_id)
