"""The single owner account: password, sign-in, sessions."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import Conflict, Unauthorized, Unprocessable
from convassist.core.security import hash_password, issue_token, verify_password
from convassist.server import throttle
from convassist.server.models import Owner

OWNER_ID = 1
MIN_PASSWORD_LENGTH = 8
LOGIN_LIMIT = 10
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_THROTTLE_KIND = "owner-login"


async def get_owner(session: AsyncSession) -> Owner | None:
    return (await session.execute(select(Owner).where(Owner.id == OWNER_ID))).scalar_one_or_none()


async def set_owner_password(session: AsyncSession, password: str) -> Owner:
    """Set (or change) the owner password; every existing owner session is signed out."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    owner = await get_owner(session)
    if owner is None:
        owner = Owner(id=OWNER_ID, password_hash=hash_password(password), session_generation=1)
        session.add(owner)
    else:
        owner.password_hash = hash_password(password)
        owner.session_generation += 1
    await throttle.reset_kind(session, LOGIN_THROTTLE_KIND)
    await session.flush()
    return owner


async def login(
    session: AsyncSession, password: str, *, client: str, secret: str, lifetime: timedelta
) -> tuple[str, datetime, str]:
    """Check the password; return (bearer token, expiry, CSRF token).

    Failures are limited per client address, so a stranger's guesses never lock the owner
    out elsewhere; setting the password (`convassist admin set-password`) clears every
    client's lockout."""
    key = f"{LOGIN_THROTTLE_KIND}:{client}"
    await throttle.ensure_allowed(
        session, key, limit=LOGIN_LIMIT, window=LOGIN_WINDOW, what="failed sign-ins"
    )
    owner = await get_owner(session)
    if owner is None:
        raise Conflict(
            "No owner password is set yet. Run `convassist admin set-password` on the server.",
            code="owner_not_configured",
        )
    if not verify_password(owner.password_hash, password):
        await throttle.record_failure(session, key, window=LOGIN_WINDOW)
        raise Unauthorized("Wrong password.", code="invalid_credentials", keep_changes=True)
    await throttle.reset(session, key)
    token, expires = issue_token(
        secret,
        subject=str(owner.id),
        kind="owner",
        generation=owner.session_generation,
        lifetime=lifetime,
    )
    return token, expires, secrets.token_urlsafe(32)


async def logout_everywhere(session: AsyncSession, owner: Owner) -> None:
    owner.session_generation += 1
