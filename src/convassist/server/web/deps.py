"""Who may see a page: the owner's session cookie, and CSRF checks for every form.

Pages authenticate only by the `convassist_session` cookie that `POST /api/auth/login` (or
the sign-in form) sets. Without a valid session a page redirects to `/login?next=…`; an
HTMX request gets 401 with `HX-Redirect` instead (errors.py turns `SignInRequired` into
those). Every unsafe request must carry the `convassist_csrf` cookie's value, either as
the `X-CSRF-Token` header (HTMX sends it from `hx-headers` on `<body>`) or as the hidden
`csrf_token` form field (plain form posts); otherwise it is refused with 403.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from convassist.core.errors import AppError
from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE, csrf_valid, session_owner
from convassist.server.deps import SessionDep
from convassist.server.models import Owner
from convassist.server.web.formatting import Clock


class SignInRequired(Exception):
    """No valid owner session: send the browser to the sign-in page."""


class CSRFRefused(Exception):
    """An unsafe request without the session's CSRF token."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in owner as a page sees them: CSRF token to embed, their clock."""

    owner: Owner | None
    csrf_token: str
    fresh_csrf: bool
    clock: Clock


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def csrf_for(request: Request) -> tuple[str, bool]:
    """The CSRF token to put in forms; a new one (to be set as a cookie) if there is none."""
    token = request.cookies.get(CSRF_COOKIE)
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


async def _owner(request: Request, session: SessionDep) -> Owner:
    try:
        return await session_owner(request, session, request.cookies.get(SESSION_COOKIE))
    except AppError:
        raise SignInRequired from None


async def check_csrf(request: Request) -> None:
    """Refuse the request unless it carries the CSRF cookie's value (header or form field)."""
    if not await csrf_valid(request):
        raise CSRFRefused


async def page_viewer(request: Request, session: SessionDep) -> Viewer:
    """For pages and partials (GET): the owner, or a redirect to sign in."""
    owner = await _owner(request, session)
    token, fresh = csrf_for(request)
    return Viewer(owner, token, fresh, Clock.for_request(request))


async def form_viewer(request: Request, session: SessionDep) -> Viewer:
    """For form posts: the owner, and a valid CSRF token."""
    owner = await _owner(request, session)
    await check_csrf(request)
    token = request.cookies.get(CSRF_COOKIE, "")
    return Viewer(owner, token, False, Clock.for_request(request))


PageViewer = Annotated[Viewer, Depends(page_viewer)]
FormViewer = Annotated[Viewer, Depends(form_viewer)]
