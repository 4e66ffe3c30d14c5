"""The owner's outbox: queue a reply for a device to send through Messages, list entries.

The device side (claim, report) is under `/api/sync/outbox` (`outbox.device_router`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from convassist.core.openapi import error_responses
from convassist.server.deps import OwnerDep, SessionDep, SettingsDep
from convassist.server.models import OutboxMessage, OutboxStatus
from convassist.server.outbox import service
from convassist.server.outbox.schemas import OutboxOut, OutboxPage, OutboxRequest

router = APIRouter(prefix="/outbox", tags=["outbox"])


def outbox_out(entry: OutboxMessage) -> OutboxOut:
    return OutboxOut.model_validate(entry)


@router.post(
    "", response_model=OutboxOut, status_code=201, responses=error_responses(404, 409, 429)
)
async def enqueue(
    body: OutboxRequest, _: OwnerDep, session: SessionDep, settings: SettingsDep
) -> OutboxOut:
    """Queue a reply (`queued`) for a device that may send; it expires at `expiresAt`.

    With `responseId` the suggestion becomes `accepted` (sent as is) or `edited`, at most
    once (409 `already_acted` after). Rate-limited (429 with Retry-After)."""
    entry = await service.enqueue(session, body, service.OutboxPolicy.of(settings))
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
