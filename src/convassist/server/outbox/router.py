"""The outbox: the owner queues a reply and lists entries (`router`); a device that may send
claims, sends and reports them under `/api/sync/outbox` (`device_router`, device token)."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from convassist.core.openapi import error_responses
from convassist.server.deps import DeviceDep, MLDep, OwnerDep, SessionDep, SettingsDep
from convassist.server.models import OutboxMessage, OutboxStatus, utcnow
from convassist.server.outbox import delivery, service
from convassist.server.outbox.schemas import (
    OutboxClaim,
    OutboxItem,
    OutboxOut,
    OutboxPage,
    OutboxRequest,
    SendResult,
)

router = APIRouter(prefix="/outbox", tags=["outbox"])
device_router = APIRouter(prefix="/sync/outbox", tags=["sync"])

POLL_AFTER_SECONDS = 5
# How often a long poll looks for new entries (a fresh short read each time).
POLL_STEP_SECONDS = 0.5


def outbox_out(entry: OutboxMessage) -> OutboxOut:
    return OutboxOut.model_validate(entry)


@router.post(
    "", response_model=OutboxOut, status_code=201, responses=error_responses(404, 409, 429)
)
async def enqueue(
    body: OutboxRequest, _: OwnerDep, session: SessionDep, settings: SettingsDep, ml: MLDep
) -> OutboxOut:
    """Queue a reply (`queued`) for a device that may send; it expires at `expiresAt`.

    With `responseId` the suggestion becomes `accepted` (sent as is) or `edited`, at most
    once (409 `already_acted` after). Rate-limited (429 with Retry-After)."""
    entry = await service.enqueue(session, body, service.OutboxPolicy.of(settings), ml)
    return outbox_out(entry)


@router.get("", response_model=OutboxPage, responses=error_responses(400))
async def list_outbox(
    _: OwnerDep,
    session: SessionDep,
    status: OutboxStatus | None = None,
    conversation_id: Annotated[uuid.UUID | None, Query(alias="conversationId")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`nextCursor` of the previous page.")
    ] = None,
) -> OutboxPage:
    """Entries newest first, with their status."""
    rows, next_cursor = await service.list_entries(
        session, status=status, conversation_id=conversation_id, limit=limit, cursor=cursor
    )
    return OutboxPage(items=[outbox_out(r) for r in rows], next_cursor=next_cursor)


def _item(claimed: delivery.Claimed, now: datetime) -> OutboxItem:
    entry = claimed.entry
    return OutboxItem(
        id=entry.id,
        conversation_id=entry.conversation_id,
        chat_guid=claimed.chat_guid,
        is_group=claimed.is_group,
        text=entry.text,
        expires_at=entry.expires_at,
        expires_in_seconds=max(0, math.floor((entry.expires_at - now).total_seconds())),
        attempt=entry.attempts,
    )


@device_router.get("", response_model=OutboxClaim, responses=error_responses(403))
async def claim(
    device: DeviceDep,
    session: SessionDep,
    wait: Annotated[
        float, Query(ge=0, le=25, description="Seconds to wait for an entry when none is pending.")
    ] = 0,
) -> OutboxClaim:
    """Claim the next reply to send (the oldest; one at a time, so that switching sending
    off stops the device at once). 403 `send_not_allowed` unless the owner allowed it.

    Send each before `expiresInSeconds` (the server's count, so clocks do not matter) and
    report it. A claimed entry is offered again only to this device (`attempt` counts)."""
    device_id = device.id
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    claimed = await delivery.claim(session, device_id)
    while not claimed and (left := deadline - loop.time()) > 0:
        await session.commit()  # hold no transaction while waiting
        await asyncio.sleep(min(POLL_STEP_SECONDS, left))
        if await delivery.has_pending(session, device_id):
            claimed = await delivery.claim(session, device_id)
    now = utcnow()
    return OutboxClaim(
        items=[_item(c, now) for c in claimed], poll_after_seconds=POLL_AFTER_SECONDS
    )


@device_router.post(
    "/{outbox_id}/result", response_model=OutboxOut, responses=error_responses(404, 409)
)
async def result(
    outbox_id: uuid.UUID, body: SendResult, device: DeviceDep, session: SessionDep
) -> OutboxOut:
    """Report a claimed entry `sent` (with its `messageGuid` if known) or `failed`.

    Only the claiming device (409 `not_claimed`), only once: the same report again gets the
    same answer; a different one 409 `already_reported`."""
    return outbox_out(await delivery.report(session, device.id, outbox_id, body))
