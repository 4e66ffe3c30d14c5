"""The ML service's LoRA adapters: which one is active, switching between them, rolling back.

An adapter that the activation gate kept off (it did worse than the one it was compared
with on the held-out measures) shows the gate's reason and can still be switched on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from convassist.core.errors import AppError
from convassist.core.limits import AdapterIdPath
from convassist.ml.adapters.schemas import AdaptersResponse
from convassist.server.deps import MLDep
from convassist.server.ml_client import MLServiceError
from convassist.server.web.deps import FormViewer, PageViewer, Viewer
from convassist.server.web.heldout import HeldOut, held_out
from convassist.server.web.render import render, triggers

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Adapter:
    id: str
    active: bool
    created_at: datetime | None
    measures: HeldOut


def _timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_adapters(payload: AdaptersResponse) -> list[Adapter]:
    """The adapters in the ML service's `GET /adapters`, newest first, the active one marked."""
    adapters = []
    for item in payload.adapters:
        adapters.append(
            Adapter(
                id=item.id,
                active=item.active,
                created_at=_timestamp(item.created_at),
                measures=held_out(item.metrics),
            )
        )
    return adapters


async def _panel(
    request: Request, viewer: Viewer, ml: MLDep, *, toast: str | None = None
) -> Response:
    previous = None
    try:
        payload = await ml.adapters()
        adapters, previous, error = parse_adapters(payload), payload.previous, None
    except MLServiceError as exc:
        adapters = []
        error = (
            f"The ML service at {ml.base_url} does not support adapters (is it an older version?)."
            if exc.upstream_status == 404
            else exc.detail
        )
    except AppError as exc:
        adapters, error = [], exc.detail
    return render(
        request,
        viewer,
        "partials/adapters.html",
        headers=triggers(toast=toast) if toast else None,
        adapters=adapters,
        previous=previous,
        error=error,
    )


@router.get("/training/adapters")
async def adapters_panel(request: Request, viewer: PageViewer, ml: MLDep) -> Response:
    return await _panel(request, viewer, ml)


@router.post("/training/adapters/deactivate")
async def use_base_model(request: Request, viewer: FormViewer, ml: MLDep) -> Response:
    await ml.deactivate_adapter()
    return await _panel(request, viewer, ml, toast="Suggestions now come from the base model.")


@router.post("/training/adapters/{adapter_id}/activate")
async def activate(
    adapter_id: AdapterIdPath, request: Request, viewer: FormViewer, ml: MLDep
) -> Response:
    await ml.activate_adapter(adapter_id)
    return await _panel(request, viewer, ml, toast=f"Suggestions now use adapter {adapter_id}.")


@router.post("/training/adapters/rollback")
async def rollback(request: Request, viewer: FormViewer, ml: MLDep) -> Response:
    """Serve the adapter active before the current choice (409: there is none)."""
    state = await ml.rollback_adapter()
    return await _panel(
        request, viewer, ml, toast=f"Rolled back: suggestions now use adapter {state.active}."
    )
