"""First run: a one-time setup code lets whoever holds it choose the owner password.

While no owner exists, `convassist server` makes a code at start-up (`issue_code`) and prints
`http://<host>:<port>/setup?code=…` for the person at its terminal, as Jupyter prints its
token. Only a keyed hash of the code is kept, in `<data dir>/setup_code` (mode 0600). Using
it (`create_owner`, behind `/setup` and `POST /api/auth/setup`) sets the password and
deletes the file, so the code dies once used; the next start makes a new one while there is
still no owner. Wrong codes are counted per client address and refused with 429 past
`SETUP_LIMIT` in `SETUP_WINDOW`.
"""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import Conflict, Forbidden
from convassist.core.security import hash_code
from convassist.core.settings import ServerSettings
from convassist.server import throttle
from convassist.server.auth.service import get_owner, set_owner_password

SETUP_CODE_FILE = "setup_code"
SETUP_LIMIT = 10
SETUP_WINDOW = timedelta(minutes=15)
SETUP_THROTTLE_PREFIX = "owner-setup:"


def _code_path(settings: ServerSettings) -> Path:
    return settings.data_dir / SETUP_CODE_FILE


def issue_code(settings: ServerSettings) -> str:
    """A new setup code (replacing any earlier one); only its keyed hash is stored."""
    code = secrets.token_urlsafe(32)
    path = settings.ensure_data_dir() / SETUP_CODE_FILE
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(hash_code(settings.jwt_secret(), code))
    os.replace(tmp, path)
    return code


def discard_code(settings: ServerSettings) -> None:
    """Forget the setup code (used, or an owner exists)."""
    _code_path(settings).unlink(missing_ok=True)


def setup_url(settings: ServerSettings, code: str) -> str:
    """The address to print: the bound host (loopback for a wildcard bind) and port."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/setup?code={code}"


def _matches(settings: ServerSettings, secret: str, code: str) -> bool:
    try:
        stored = _code_path(settings).read_text().strip()
    except FileNotFoundError:
        return False
    return bool(code) and hmac.compare_digest(stored, hash_code(secret, code))


async def create_owner(
    session: AsyncSession,
    settings: ServerSettings,
    *,
    secret: str,
    code: str,
    password: str,
    client: str,
) -> None:
    """Set the first owner password with the setup code, which then dies.

    409 `owner_exists` once there is an owner, 403 `invalid_setup_code` for a wrong or used
    code (counted against `client`), 422 for a too-short password (the code stays valid).
    """
    key = SETUP_THROTTLE_PREFIX + client
    await throttle.ensure_allowed(
        session, key, limit=SETUP_LIMIT, window=SETUP_WINDOW, what="setup attempts"
    )
    if await get_owner(session) is not None:
        raise Conflict("An owner password is already set: sign in instead.", code="owner_exists")
    if not _matches(settings, secret, code):
        await throttle.record_failure(session, key, window=SETUP_WINDOW)
        raise Forbidden(
            "This setup code is wrong or has already been used. The server prints a new one "
            "in its terminal each time it starts while no password is set.",
            code="invalid_setup_code",
            keep_changes=True,
        )
    try:
        await set_owner_password(session, password)
    except IntegrityError:  # another request with the code created the owner just now
        raise Conflict(
            "An owner password is already set: sign in instead.", code="owner_exists"
        ) from None
    await throttle.reset(session, key)
    discard_code(settings)
