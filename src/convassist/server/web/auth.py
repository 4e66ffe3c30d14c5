"""Sign in and sign out, with the same login service and cookies as `POST /api/auth/login`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from convassist.core.errors import AppError
from convassist.server.auth import service
from convassist.server.auth.cookies import clear_session_cookies, set_session_cookies
from convassist.server.deps import SessionDep, SettingsDep, client_address
from convassist.server.web.deps import (
    CSRFRefused,
    FormViewer,
    PageViewer,
    SignInRequired,
    check_csrf,
    page_viewer,
)
from convassist.server.web.errors import attempt, safe_next
from convassist.server.web.render import render_signed_out

router = APIRouter()


@router.get("/")
async def home(_: PageViewer) -> Response:
    return RedirectResponse("/conversations", status_code=303)


async def _login_page(
    request: Request,
    session: SessionDep,
    *,
    next_path: str,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    """The sign-in form; first run's "Create your password" page while there is no owner."""
    if await service.get_owner(session) is None:
        return RedirectResponse("/setup", status_code=303)
    return render_signed_out(
        request,
        "login.html",
        status_code=status_code,
        next=next_path,
        error=error,
        notice=notice,
    )


@router.get("/login")
async def login_page(
    request: Request, session: SessionDep, next: str | None = None, signed_out: bool = False
) -> Response:
    """The sign-in form; straight on to `next` when already signed in."""
    try:
        await page_viewer(request, session)
    except SignInRequired:
        notice = "You have signed out." if signed_out else None
        return await _login_page(request, session, next_path=safe_next(next), notice=notice)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    next_path = safe_next(next)
    try:
        await check_csrf(request)
    except CSRFRefused:
        return await _login_page(
            request,
            session,
            next_path=next_path,
            error="The sign-in form had expired. Please enter your password again.",
            status_code=403,
        )
    if not password:
        return await _login_page(
            request, session, next_path=next_path, error="Enter your password.", status_code=422
        )
    result = await attempt(
        session,
        service.login(
            session,
            password,
            client=client_address(request),
            secret=request.app.state.jwt_secret,
            lifetime=timedelta(hours=settings.owner_session_hours),
        ),
    )
    if isinstance(result, AppError):
        return await _login_page(
            request,
            session,
            next_path=next_path,
            error=result.detail,
            status_code=result.status_code,
        )
    token, _, csrf = result
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookies(response, token, csrf, settings)
    return response


@router.post("/logout")
async def logout(_: FormViewer) -> Response:
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    clear_session_cookies(response)
    return response
