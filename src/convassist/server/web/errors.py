"""Errors on web paths as readable pages (or toasts for HTMX), never JSON or a traceback.

The app's JSON error handlers stay in charge of `/api` and `/static`; for every other path
these wrappers render HTML. They run outside the request's dependencies, so a failed
request's database session has already rolled back when the page is rendered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote, urlsplit

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from convassist.core.errors import AppError
from convassist.core.logging import get_logger
from convassist.server.web.deps import CSRFRefused, SignInRequired, is_htmx
from convassist.server.web.render import render

log = get_logger(__name__)

T = TypeVar("T")
Handler = Callable[[Request, Exception], Response | Awaitable[Response]]

TITLES = {
    400: "That didn't work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Already done",
    410: "Expired",
    413: "Too large",
    422: "Check what you entered",
    429: "Slow down",
    500: "Something went wrong",
    502: "A service failed",
    503: "A service is unavailable",
    504: "That took too long",
}


async def attempt(session: AsyncSession, call: Awaitable[T]) -> T | AppError:
    """Run a service call whose failure the page shows inline (a form error, say).

    The error is returned instead of raised; unless it asks to keep what was recorded (a
    failed-attempt counter), the session's changes are rolled back first.
    """
    try:
        return await call
    except AppError as exc:
        if not exc.keep_changes:
            await session.rollback()
        return exc


def is_web_path(path: str) -> bool:
    return not (path == "/api" or path.startswith(("/api/", "/static/")))


def safe_next(target: str | None) -> str:
    """A local path to return to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def sign_in_redirect(request: Request) -> Response:
    """303 to `/login?next=…`; for HTMX, 401 with `HX-Redirect` (the page they were on)."""
    if is_htmx(request):
        current = urlsplit(request.headers.get("hx-current-url", ""))
        back = current.path + (f"?{current.query}" if current.query else "")
        return Response(
            status_code=401, headers={"HX-Redirect": f"/login?next={quote(safe_next(back))}"}
        )
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/login" if request.method != "GET" else f"/login?next={quote(safe_next(back))}"
    return RedirectResponse(target, status_code=303)


def error_response(request: Request, status_code: int, detail: str) -> Response:
    """A toast for HTMX requests, else a full error page."""
    if is_htmx(request):
        return render(
            request,
            None,
            "partials/toast.html",
            status_code=status_code,
            headers={"HX-Retarget": "#toasts", "HX-Reswap": "beforeend"},
            message=detail,
            kind="error",
        )
    return render(
        request,
        None,
        "error.html",
        status_code=status_code,
        title=TITLES.get(status_code, "Something went wrong"),
        detail=detail,
        status=status_code,
    )


def _validation_error(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if errors and tuple(errors[0].get("loc", ()))[:1] == ("path",):
        return 404, "This link doesn't point to anything here. Check the address and try again."
    return 422, "Some of what was sent isn't valid. Check the form and try again."


def _web_handler(original: Handler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        if not is_web_path(request.url.path):
            result = original(request, exc)
            return result if isinstance(result, Response) else await result
        if isinstance(exc, AppError):
            return error_response(request, exc.status_code, exc.detail)
        if isinstance(exc, RequestValidationError):
            return error_response(request, *_validation_error(exc))
        if isinstance(exc, StarletteHTTPException):
            detail = (
                "There is no page at this address."
                if exc.status_code == 404
                else "This request isn't allowed here."
            )
            return error_response(request, exc.status_code, detail)
        log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
        return error_response(
            request,
            500,
            "Something went wrong on our side. It has been logged; try again in a moment.",
        )

    return handler


async def _sign_in(request: Request, _: Exception) -> Response:
    return sign_in_redirect(request)


async def _csrf(request: Request, _: Exception) -> Response:
    return error_response(
        request,
        403,
        "This form has expired or didn't come from this site. Reload the page and try again.",
    )


def install_error_pages(app: FastAPI) -> None:
    """Wrap the app's error handlers so that web paths get HTML."""
    for exc_type in (AppError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, _web_handler(app.exception_handlers[exc_type]))
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(CSRFRefused, _csrf)
