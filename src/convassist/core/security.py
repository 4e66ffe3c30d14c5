"""Password hashing, JWTs and one-time code hashing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from convassist.core.errors import Unauthorized

JWT_ALGORITHM = "HS256"
TokenKind = Literal["device", "owner"]

_password_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_verification_code() -> str:
    """A uniformly random 6-digit code."""
    return f"{secrets.randbelow(1_000_000):06d}"


def hash_code(secret: str, code: str) -> str:
    """Keyed hash of a short code: lookup-friendly, useless to an attacker without the key."""
    return hmac.new(secret.encode(), code.encode(), hashlib.sha256).hexdigest()


def issue_token(
    secret: str,
    *,
    subject: str,
    kind: TokenKind,
    generation: int,
    lifetime: timedelta,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    issued = now or datetime.now(UTC)
    expires = issued + lifetime
    claims = {
        "sub": subject,
        "typ": kind,
        "gen": generation,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires


def decode_token(secret: str, token: str, *, kind: TokenKind) -> dict[str, Any]:
    """Validate signature, expiry and type; raise 401 with a precise reason otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "typ", "gen", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not valid.", code="invalid_token") from None
    if claims["typ"] != kind:
        raise Unauthorized(f"A {kind} token is required.", code="invalid_token")
    return claims
