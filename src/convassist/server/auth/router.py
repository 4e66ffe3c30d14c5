"""Owner sign-in: a bearer token for API clients and a session cookie for the web UI."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from convassist.core.openapi import error_responses
from convassist.server.auth import service, setup
from convassist.server.auth.cookies import clear_session_cookies, set_session_cookies
from convassist.server.auth.schemas import (
    LoginRequest,
    LoginResponse,
    SessionInfo,
    SetupRequest,
)
from convassist.server.deps import OwnerDep, SessionDep, SettingsDep, client_address

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse, responses=error_responses(401, 409, 429))
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> LoginResponse:
    token, expires, csrf = await service.login(
        session,
        body.password,
        client=client_address(request),
        secret=request.app.state.jwt_secret,
        lifetime=timedelta(hours=settings.owner_session_hours),
    )
    set_session_cookies(response, token, csrf, settings)
    return LoginResponse(token=token, expires_at=expires, csrf_token=csrf)


@router.post("/setup", response_model=LoginResponse, responses=error_responses(403, 409, 429))
async def first_setup(
    body: SetupRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> LoginResponse:
    """First run: set the owner password with the one-time code the server printed at
    start-up, and sign in (the same answer and cookies as `login`)."""
    await setup.create_owner(
        session,
        settings,
        secret=request.app.state.jwt_secret,
        code=body.code,
        password=body.password,
        client=client_address(request),
    )
    return await login(LoginRequest(password=body.password), request, response, session, settings)


@router.post("/logout", status_code=204)
async def logout(
    owner: OwnerDep, session: SessionDep, response: Response, everywhere: bool = False
) -> Response:
    """Clear the cookies; with `everywhere=true` every token and session is revoked."""
    if everywhere:
        await service.logout_everywhere(session, owner)
    response.status_code = 204
    clear_session_cookies(response)
    return response


@router.get("/session", response_model=SessionInfo)
async def current_session(_: OwnerDep) -> SessionInfo:
    """200 while signed in as the owner, 401 otherwise."""
    return SessionInfo(authenticated=True)
