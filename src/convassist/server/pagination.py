"""Keyset pagination cursors: the last row's sort key, a timestamp and an id, made opaque.

A cursor is base64url JSON; one that does not decode to a key (tampered, truncated, naive
timestamp) is refused with 400 `invalid_cursor`. Every listing with `nextCursor` uses these.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from convassist.core.errors import BadRequest


def encode_cursor(at: datetime | None, row_id: uuid.UUID) -> str:
    payload = json.dumps({"t": at.isoformat() if at else None, "id": str(row_id)})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, uuid.UUID]:
    """The (timestamp, id) in a cursor; the timestamp is None for rows sorted last by it."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(data["t"]) if data["t"] is not None else None
        if at is not None and at.tzinfo is None:
            raise ValueError("naive timestamp")
        return at, uuid.UUID(data["id"])
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
        raise _invalid() from None


def decode_timed_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A cursor of a listing sorted by a timestamp that is never null."""
    at, row_id = decode_cursor(cursor)
    if at is None:
        raise _invalid()
    return at, row_id


def _invalid() -> BadRequest:
    return BadRequest("The cursor is not valid; start again without it.", code="invalid_cursor")
