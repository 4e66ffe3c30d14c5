"""Only the owner's server drives the ML service: a bearer token (`ML_SERVICE_TOKEN`).

A pure ASGI middleware checks `Authorization: Bearer <token>` in constant time before the
app (or the body-size limiter) reads a byte of the body: an unauthenticated request is
answered 401 without its body being received or parsed. A few public paths (liveness, the
API description) also answer without a token; they see whether one was presented in
`request.state.authenticated`. A wrong token is refused everywhere.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from convassist.core.http import error_response

SCHEME_NAME = "mlServiceToken"


class BearerTokenMiddleware:
    """401 unless the request carries the token (optional on `public_paths`)."""

    def __init__(self, app: ASGIApp, *, token: str, public_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = token.encode()
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        authenticated = presented is not None and hmac.compare_digest(presented, self.expected)
        if not authenticated and (presented is not None or scope["path"] not in self.public_paths):
            response = error_response(
                401,
                "unauthorized",
                "This ML service needs its token: send `Authorization: Bearer` with the "
                "value of ML_SERVICE_TOKEN (or the data dir's ml_service_token file).",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["authenticated"] = authenticated
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = bytes(value).partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    return None


def is_authenticated(request: Request) -> bool:
    """Whether the request presented the right token (always true off the public paths)."""
    return bool(getattr(request.state, "authenticated", False))


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def document_bearer(app: FastAPI, public_paths: frozenset[str]) -> None:
    """Declare the bearer scheme in the OpenAPI document: required everywhere, optional
    (`{}` alternative) on the public paths, and a 401 answer on every other operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            SCHEME_NAME: {
                "type": "http",
                "scheme": "bearer",
                "description": "The value of ML_SERVICE_TOKEN (the server sends it).",
            }
        }
        required: list[dict[str, list[str]]] = [{SCHEME_NAME: []}]
        schema["security"] = required
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if path in public_paths:
                    operation["security"] = [{}, *required]
                else:
                    operation.setdefault("responses", {})["401"] = {
                        "description": "Missing or wrong ML service token."
                    }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
