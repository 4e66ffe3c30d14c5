"""First run in the browser: "Create your password" with the one-time setup code.

While no owner exists every page leads here (sign-in redirects to `/setup`); the form posts
the code (from the printed `/setup?code=…` link, or typed), the password and its repetition,
with the page's CSRF token. Success signs the owner in, as the sign-in form does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from convassist.core.errors import AppError
from convassist.server.auth import service, setup
from convassist.server.auth.cookies import set_session_cookies
from convassist.server.deps import SessionDep, SettingsDep, client_address
from convassist.server.web.deps import CSRFRefused, check_csrf
from convassist.server.web.errors import attempt
from convassist.server.web.render import render_signed_out

router = APIRouter()

SIGN_IN = "/login"
AFTER_SETUP = "/"


def _setup_page(
    request: Request, *, code: str, error: str | None = None, status_code: int = 200
) -> Response:
    return render_signed_out(
        request,
        "setup.html",
        status_code=status_code,
        code=code,
        error=error,
        min_length=service.MIN_PASSWORD_LENGTH,
    )


@router.get("/setup")
async def setup_page(request: Request, session: SessionDep, code: str = "") -> Response:
    """The "Create your password" form; sign-in instead once an owner exists."""
    if await service.get_owner(session) is not None:
        return RedirectResponse(SIGN_IN, status_code=303)
    return _setup_page(request, code=code[:200])


@router.post("/setup")
async def create_password(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        await check_csrf(request)
    except CSRFRefused:
        return _setup_page(
            request,
            code=code,
            error="The form had expired. Please enter your password again.",
            status_code=403,
        )
    if password != confirm:
        return _setup_page(
            request, code=code, error="The two passwords are not the same.", status_code=422
        )
    created = await attempt(
        session,
        setup.create_owner(
            session,
            settings,
            secret=request.app.state.jwt_secret,
            code=code,
            password=password,
            client=client_address(request),
        ),
    )
    if isinstance(created, AppError):
        if created.code == "owner_exists":
            return RedirectResponse(SIGN_IN, status_code=303)
        wrong_code = created.code == "invalid_setup_code"
        return _setup_page(
            request,
            code="" if wrong_code else code,
            error=created.detail,
            status_code=created.status_code,
        )
    token, _, csrf = await service.login(
        session,
        password,
        client=client_address(request),
        secret=request.app.state.jwt_secret,
        lifetime=timedelta(hours=settings.owner_session_hours),
    )
    response = RedirectResponse(AFTER_SETUP, status_code=303)
    set_session_cookies(response, token, csrf, settings)
    return response
