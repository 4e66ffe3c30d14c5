"""The owner's browser session: an HttpOnly session cookie and the CSRF double-submit cookie."""

from __future__ import annotations

from starlette.responses import Response

from convassist.core.settings import ServerSettings
from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE


def set_session_cookies(
    response: Response, token: str, csrf: str, settings: ServerSettings
) -> None:
    max_age = settings.owner_session_hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    set_csrf_cookie(response, csrf, settings)


def set_csrf_cookie(response: Response, csrf: str, settings: ServerSettings) -> None:
    """The CSRF token for the page's script (readable: not HttpOnly), as long as a session."""
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=settings.owner_session_hours * 3600,
        samesite="strict",
        secure=settings.cookie_secure,
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
