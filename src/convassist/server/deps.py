"""Request dependencies: one DB session per request, the settings, owner and device auth."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.db import session_scope
from convassist.core.errors import Forbidden, Unauthorized
from convassist.core.security import decode_token
from convassist.core.settings import ServerSettings
from convassist.server.auth.session import SAFE_METHODS, SESSION_COOKIE, csrf_valid, session_owner
from convassist.server.ml_client import MLClient
from convassist.server.models import Device, Owner


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's only session; it commits when the endpoint returns without error."""
    async with session_scope(request.app.state.sessionmaker) as session:
        yield session


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_ml_client(request: Request) -> MLClient:
    client: MLClient = request.app.state.ml_client
    return client


# scope="function": commit before the response is sent, so a 200 means the data is stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
MLDep = Annotated[MLClient, Depends(get_ml_client)]


def client_address(request: Request) -> str:
    """The caller's address, for per-client failure limits."""
    return request.client.host if request.client else "unknown"


# Security schemes: how a caller authenticates (each operation lists its own in the OpenAPI).
owner_token = HTTPBearer(
    auto_error=False, scheme_name="ownerToken", description="`token` from `POST /api/auth/login`."
)
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="sessionCookie",
    description="Set by signing in; writes also need `X-CSRF-Token` (the `csrfToken`).",
)
device_token = HTTPBearer(
    auto_error=False,
    scheme_name="deviceToken",
    description="`token` from `POST /api/devices/verify`.",
)
Bearer = HTTPAuthorizationCredentials | None


async def require_owner(
    request: Request,
    session: SessionDep,
    bearer: Annotated[Bearer, Security(owner_token)],
    cookie: Annotated[str | None, Security(session_cookie)],
) -> Owner:
    """The owner, by bearer token or session cookie (cookie + unsafe method needs CSRF)."""
    token = bearer.credentials.strip() if bearer else None
    if token is None:
        token = cookie
        if token and request.method not in SAFE_METHODS and not await csrf_valid(request):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")
    return await session_owner(request, session, token)


async def require_device(
    request: Request, session: SessionDep, bearer: Annotated[Bearer, Security(device_token)]
) -> Device:
    """The device behind a bearer token; deactivated or re-registered devices are refused."""
    token = bearer.credentials.strip() if bearer else None
    if token is None:
        raise Unauthorized("A device bearer token is required.", code="not_authenticated")
    claims = decode_token(request.app.state.jwt_secret, token, kind="device")
    try:
        device_id = uuid.UUID(claims["sub"])
    except ValueError:
        raise Unauthorized("The token is not valid.", code="invalid_token") from None
    device = await session.get(Device, device_id)
    if device is None or not device.is_active or not device.verified:
        raise Unauthorized("This device has been deactivated.", code="device_revoked")
    if device.token_generation != claims["gen"]:
        raise Unauthorized("This token has been revoked.", code="token_revoked")
    return device


OwnerDep = Annotated[Owner, Depends(require_owner)]
DeviceDep = Annotated[Device, Depends(require_device)]
