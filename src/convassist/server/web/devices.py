"""Devices: approve a registering Mac by its code, see and deactivate verified devices,
allow each to send replies, and see what each sent last."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from starlette.responses import Response

from convassist.core.errors import AppError
from convassist.server.deps import SessionDep
from convassist.server.devices import service
from convassist.server.devices.schemas import ApproveRequest
from convassist.server.models import Device, OutboxMessage
from convassist.server.outbox.service import recent_by_device
from convassist.server.web.deps import FormViewer, PageViewer, Viewer, is_htmx
from convassist.server.web.errors import attempt
from convassist.server.web.render import render, triggers

router = APIRouter()

CODE_HINT = "Enter the 6-digit code your Mac shows, for example 123 456."


@dataclass(frozen=True, slots=True)
class DeviceGroups:
    pending: list[Device]
    verified: list[Device]
    expired: list[Device]


def group(devices: Sequence[Device]) -> DeviceGroups:
    """Waiting for approval (soonest expiry first), verified (active first), expired."""
    pending = sorted(
        (d for d in devices if d.status in ("pending", "approved")),
        key=lambda d: d.code_expires_at or d.created_at,
    )
    verified = sorted((d for d in devices if d.verified), key=lambda d: not d.is_active)
    expired = [d for d in devices if not d.verified and d.status == "expired"]
    return DeviceGroups(pending, verified, expired)


def _server_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _lists(session: SessionDep) -> dict[str, Any]:
    """The device lists' context: the groups, and the last replies each device sent."""
    groups = group(await service.list_devices(session))
    sent: dict[uuid.UUID, list[OutboxMessage]] = await recent_by_device(
        session, [d.id for d in groups.verified]
    )
    return {"groups": groups, "sent": sent}


async def _page(
    request: Request, viewer: Viewer, session: SessionDep, status_code: int = 200, **box: Any
) -> Response:
    return render(
        request,
        viewer,
        "devices.html",
        status_code=status_code,
        nav="devices",
        **await _lists(session),
        server_url=_server_url(request),
        box={"code": "", "error": None, "approved": None, **box},
    )


@router.get("/devices")
async def devices_page(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    return await _page(request, viewer, session)


@router.get("/devices/lists")
async def device_lists(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    """The pending and verified lists (the page polls this every few seconds)."""
    return render(
        request,
        viewer,
        "partials/device_lists.html",
        **await _lists(session),
        server_url=_server_url(request),
    )


@router.post("/devices/approve")
async def approve(
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    code: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Approve the device showing this code; its agent then receives its token."""
    error: str | None = None
    status_code = 200
    approved: Device | None = None
    try:
        digits = ApproveRequest(code=code).digits
    except ValidationError:
        error, status_code = CODE_HINT, 422
    else:
        result = await attempt(
            session, service.approve(session, digits, secret=request.app.state.jwt_secret)
        )
        if isinstance(result, AppError):
            error, status_code = result.detail, result.status_code
        else:
            approved = result
    box = {"code": code if error else "", "error": error, "approved": approved}
    if not is_htmx(request):
        return await _page(request, viewer, session, status_code=status_code, **box)
    return render(
        request,
        viewer,
        "partials/approve_box.html",
        status_code=status_code,
        headers=triggers("devices-changed") if approved else None,
        server_url=_server_url(request),
        box=box,
    )


@router.post("/devices/{device_id}/deactivate")
async def deactivate(
    device_id: uuid.UUID, request: Request, viewer: FormViewer, session: SessionDep
) -> Response:
    device = await service.deactivate(session, device_id)
    if not is_htmx(request):
        return await _page(request, viewer, session)
    return render(
        request,
        viewer,
        "partials/device_lists.html",
        headers=triggers(
            toast=f"{device.name} is deactivated. Its agent can no longer sync or sign in."
        ),
        **await _lists(session),
        server_url=_server_url(request),
    )


@router.post("/devices/{device_id}/may-send")
async def may_send(
    device_id: uuid.UUID,
    request: Request,
    viewer: FormViewer,
    session: SessionDep,
    allow: Annotated[bool, Form(alias="may_send")],
) -> Response:
    """The "May send replies" switch: allow or stop this device sending from the outbox."""
    device = await service.set_may_send(session, device_id, allow)
    if not is_htmx(request):
        return await _page(request, viewer, session)
    toast = (
        f"{device.name} may now send the replies you choose."
        if allow
        else f"{device.name} no longer sends replies."
    )
    return render(
        request,
        viewer,
        "partials/device_lists.html",
        headers=triggers(toast=toast),
        **await _lists(session),
        server_url=_server_url(request),
    )
