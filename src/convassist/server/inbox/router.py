"""The inbox: conversations waiting for the owner's reply, and "no reply needed"."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from convassist.core.openapi import error_responses
from convassist.server.deps import MLDep, OwnerDep, SessionDep
from convassist.server.inbox import service
from convassist.server.inbox.schemas import DismissOut, InboxPage

router = APIRouter(prefix="/inbox", tags=["inbox"])


@router.get("", response_model=InboxPage, responses=error_responses(400))
async def list_inbox(
    _: OwnerDep,
    session: SessionDep,
    ml: MLDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> InboxPage:
    """Conversations waiting for a reply, newest first: the last few messages, the waiting
    message and its newest suggestion (live while generating), and any reply queued since."""
    return await service.list_inbox(session, ml, limit=limit, cursor=cursor)


@router.post(
    "/{conversation_id}/dismiss", response_model=DismissOut, responses=error_responses(404, 409)
)
async def dismiss(
    conversation_id: uuid.UUID,
    _: OwnerDep,
    session: SessionDep,
    seen: Annotated[
        datetime | None,
        Query(description="The `awaitingReplySince` you saw: a newer message is not dismissed."),
    ] = None,
) -> DismissOut:
    """No reply needed: the conversation leaves the inbox and its suggestions are retired
    (ready ones are rejected with the reason `no_reply_needed`)."""
    return await service.dismiss(session, conversation_id, seen=seen)
