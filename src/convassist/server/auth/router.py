"""Owner sign-in: a bearer token for API clients and a session cookie for the web UI."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from convassist.server.auth import service
from convassist.server.auth.cookies import clear_session_cookies, set_session_cookies
from convassist.server.auth.schemas import LoginRequest, LoginResponse, SessionInfo
from convassist.server.deps import OwnerDep, SessionDep, SettingsDep, client_address

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse)
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
