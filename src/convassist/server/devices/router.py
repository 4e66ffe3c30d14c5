"""Device registration (seed flow 1, RFC 8628 style) and device management."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Request

from convassist.core.openapi import error_responses
from convassist.server.deps import OwnerDep, SessionDep, SettingsDep, client_address
from convassist.server.devices import service
from convassist.server.devices.schemas import (
    ApproveRequest,
    DeviceOut,
    DeviceUpdate,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
    VerifyRequest,
)
from convassist.server.models import Device

router = APIRouter(prefix="/devices", tags=["devices"])


def device_out(device: Device) -> DeviceOut:
    return DeviceOut.model_validate(device)


@router.post(
    "/register",
    response_model=RegisterResponse,
    status_code=201,
    responses=error_responses(429),
)
async def register(
    body: RegisterRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> RegisterResponse:
    """Start registration. Show `code` to the person; the owner approves it on the server.

    Limited per client address (429 with Retry-After)."""
    device, code = await service.register(
        session, body, secret=request.app.state.jwt_secret, client=client_address(request)
    )
    assert device.code_expires_at is not None
    return RegisterResponse(
        device_id=device.id,
        code=code,
        expires_at=device.code_expires_at,
        interval=max(1, round(settings.device_poll_interval)),
    )


@router.post("/approve", response_model=DeviceOut, responses=error_responses(400, 409, 410, 429))
async def approve(
    body: ApproveRequest, request: Request, _: OwnerDep, session: SessionDep
) -> DeviceOut:
    """The owner approves the device that shows this code (owner only)."""
    device = await service.approve(session, body.digits, secret=request.app.state.jwt_secret)
    return device_out(device)


@router.post("/verify", response_model=TokenResponse, responses=error_responses(400, 404))
async def verify(
    body: VerifyRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Poll for the token. 400 `authorization_pending` until the owner approves."""
    device, token, expires = await service.verify(
        session,
        body.device_id,
        body.code,
        secret=request.app.state.jwt_secret,
        token_lifetime=timedelta(days=settings.device_token_days),
        poll_interval=settings.device_poll_interval,
    )
    return TokenResponse(device_id=device.id, token=token, expires_at=expires)


@router.get("", response_model=list[DeviceOut])
async def list_devices(_: OwnerDep, session: SessionDep) -> list[DeviceOut]:
    return [device_out(d) for d in await service.list_devices(session)]


@router.patch("/{device_id}", response_model=DeviceOut, responses=error_responses(404, 409))
async def update_device(
    device_id: uuid.UUID, body: DeviceUpdate, _: OwnerDep, session: SessionDep
) -> DeviceOut:
    """Allow (`maySend: true`) or stop a device sending replies from the outbox (off by default).

    Stopping also fails what it was sending, so no other device sends it."""
    return device_out(await service.set_may_send(session, device_id, body.may_send))


@router.post("/{device_id}/deactivate", response_model=DeviceOut, responses=error_responses(404))
async def deactivate(device_id: uuid.UUID, _: OwnerDep, session: SessionDep) -> DeviceOut:
    return device_out(await service.deactivate(session, device_id))
