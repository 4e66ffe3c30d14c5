"""HTTP plumbing shared by the API server and the ML service.

Pure ASGI middleware (no per-request task hops): a request id bound into the log context,
one access-log line per request (method, route, status, duration; never bodies), a request
body size limit, and JSON error handlers with one body shape.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convassist.core.errors import AppError
from convassist.core.logging import get_logger

log = get_logger("convassist.http")

REQUEST_ID_HEADER = "x-request-id"


class RequestContextMiddleware:
    """Bind a request id (incoming `X-Request-ID` or a new one) and log one line per request."""

    def __init__(self, app: ASGIApp, *, quiet_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            if path not in self.quiet_paths:
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")[:64]
            if candidate.replace("-", "").isalnum():
                return candidate
    return None


class BodySizeLimitMiddleware:
    """Refuse bodies over the limit with 413, by Content-Length or while streaming.

    The limit is `max_bytes`, or `path_limits[path]` for the paths listed there."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(limit)(scope, receive, send)
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            # Past the limit the app sees a disconnect (it stops reading) and we answer 413.
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app says about the cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _too_large(limit)(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": "payload_too_large",
            "detail": f"Request body is larger than the limit of {max_bytes} bytes.",
        },
        status_code=413,
    )


def error_response(
    status_code: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "detail": detail, **extra}, status_code=status_code, headers=headers
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as `{"error", "detail"}` JSON; never a traceback."""

    async def app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [_describe(e) for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "Request body is not valid JSON.")
        first = errors[0] if errors else {"location": "body", "message": "invalid"}
        return error_response(
            422,
            "validation_error",
            f"Invalid request: {first['location']}: {first['message']}",
            errors=errors,
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and str(exc.detail).startswith("There was an error parsing"):
            return error_response(
                400, "invalid_json", "Request body is not valid JSON (or not valid UTF-8)."
            )
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    async def unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", "Internal server error.")

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)


def _describe(error: MutableMapping[str, Any]) -> dict[str, str]:
    """A validation error without the offending input (it may be message text)."""
    location = ".".join(str(part) for part in error.get("loc", ()))
    return {"location": location, "message": str(error.get("msg", "")), "type": error["type"]}


def add_common_middleware(
    app: FastAPI,
    *,
    max_body_bytes: int,
    quiet_paths: set[str],
    body_limits: Mapping[str, int] | None = None,
    auth: Middleware | None = None,
) -> None:
    """Request ids and access logs (outermost), then `auth` (it may refuse a request before
    anything reads its body), then the body limit (`body_limits`: per path)."""
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes, path_limits=body_limits)
    if auth is not None:
        app.add_middleware(auth.cls, *auth.args, **auth.kwargs)
    app.add_middleware(RequestContextMiddleware, quiet_paths=frozenset(quiet_paths))
