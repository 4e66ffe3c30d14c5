"""Browse synced conversations and messages; build the prompt context (owner only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from convassist.core.openapi import error_responses
from convassist.server.conversations import service
from convassist.server.conversations.schemas import (
    ConsentUpdate,
    ContextOut,
    ConversationOut,
    ConversationPage,
    MessagePage,
)
from convassist.server.deps import OwnerDep, SessionDep

router = APIRouter(prefix="/conversations", tags=["conversations"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]


@router.get("", response_model=ConversationPage, responses=error_responses(400))
async def list_conversations(
    _: OwnerDep,
    session: SessionDep,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Substring of the name, a handle or a contact name."),
    ] = None,
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ConversationPage:
    """Conversations, most recently active first."""
    return await service.list_conversations(session, q=q, limit=limit, cursor=cursor)


@router.get("/{conversation_id}", response_model=ConversationOut, responses=error_responses(404))
async def get_conversation(
    conversation_id: uuid.UUID, _: OwnerDep, session: SessionDep
) -> ConversationOut:
    return await service.get_conversation(session, conversation_id)


@router.patch("/{conversation_id}", response_model=ConversationOut, responses=error_responses(404))
async def update_conversation(
    conversation_id: uuid.UUID, body: ConsentUpdate, _: OwnerDep, session: SessionDep
) -> ConversationOut:
    """Learn from this conversation (`training`) and suggest replies in it (`suggestions`).

    Off for the conversation or for any of its contacts leaves it out."""
    return await service.update_consent(session, conversation_id, body)


@router.delete("/{conversation_id}", status_code=204, responses=error_responses(404))
async def delete_conversation(
    conversation_id: uuid.UUID, _: OwnerDep, session: SessionDep
) -> Response:
    """Delete the conversation, its messages, suggestions, training samples and outbox."""
    await service.delete_conversation(session, conversation_id)
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/messages",
    response_model=MessagePage,
    responses=error_responses(400, 404),
)
async def list_messages(
    conversation_id: uuid.UUID,
    _: OwnerDep,
    session: SessionDep,
    before: Annotated[
        str | None, Query(max_length=512, description="`nextCursor` of the previous page.")
    ] = None,
    limit: Limit = 50,
) -> MessagePage:
    """Messages backwards in time: the newest page first, oldest first within a page."""
    return await service.list_messages(session, conversation_id, before=before, limit=limit)


@router.get("/{conversation_id}/context", response_model=ContextOut, responses=error_responses(404))
async def get_context(
    conversation_id: uuid.UUID,
    _: OwnerDep,
    session: SessionDep,
    message_id: Annotated[uuid.UUID, Query(alias="messageId")],
    max_history: Annotated[int, Query(alias="maxHistory", ge=1, le=100)] = 10,
) -> ContextOut:
    """The prompt for replying at `messageId`: its last `maxHistory` text messages + `Me:`."""
    context = await service.build_context(
        session, message_id, max_history=max_history, conversation_id=conversation_id
    )
    return ContextOut(
        conversation_id=context.conversation_id,
        message_id=context.message_id,
        prompt=context.prompt,
        message_count=len(context.lines),
    )
