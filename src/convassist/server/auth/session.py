"""The owner's browser session and its CSRF check: one rule for the API and the web UI.

A session is the `convassist_session` cookie (or an API bearer token): an owner JWT whose
`gen` must match the owner's `session_generation` (changing the password or signing out
everywhere bumps it). An unsafe request made with the cookie must also carry the
`convassist_csrf` cookie's value (double submit), as the `X-CSRF-Token` header or, for a
form-encoded or multipart body, the `csrf_token` form field; compared in constant time.
The API (server/deps.py) and the pages (server/web/deps.py) only differ in how they refuse.
"""

from __future__ import annotations

import secrets

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import Unauthorized
from convassist.core.security import decode_token
from convassist.server.models import Owner

SESSION_COOKIE = "convassist_session"
CSRF_COOKIE = "convassist_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def session_owner(request: Request, session: AsyncSession, token: str | None) -> Owner:
    """The owner an owner token belongs to; `Unauthorized` if none, invalid or signed out."""
    if not token:
        raise Unauthorized("Sign in as the owner first.", code="not_authenticated")
    claims = decode_token(request.app.state.jwt_secret, token, kind="owner")
    owner = await session.get(Owner, int(claims["sub"]))
    if owner is None or owner.session_generation != claims["gen"]:
        raise Unauthorized("This session has been signed out.", code="session_revoked")
    return owner


async def csrf_valid(request: Request) -> bool:
    """Whether the request carries the CSRF cookie's value (header, or form field)."""
    expected = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent:
        return False
    return secrets.compare_digest(expected.encode(), sent.encode())
