"""The owner's consent: which conversations the model learns from and suggests replies in.

The one definition everyone uses (suggestions, training jobs, the web UI): a conversation is
excluded from training (or suggestions) when its own switch is off, or the switch of any
participant's contact is off. Training also leaves out group conversations unless the owner
allows them (`CONVASSIST_TRAIN_ON_GROUPS`, off by default).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, exists, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from convassist.server.conversations.schemas import ConsentUpdate
from convassist.server.models import (
    Contact,
    Conversation,
    ConversationParticipant,
    GeneratedResponse,
    Message,
    utcnow,
)
from convassist.server.responses.own_changes import note_change

Use = Literal["training", "suggestions"]


def allowed(use: Use, *, groups: bool = True) -> ColumnElement[bool]:
    """SQL: the `Conversation` of the query may be used for `use` (correlated).

    `groups=False` leaves out group conversations too (training's group setting)."""
    refused_contact = (
        select(ConversationParticipant.id)
        .join(Contact, Contact.apple_id == ConversationParticipant.handle)
        .where(
            ConversationParticipant.conversation_id == Conversation.id,
            not_(getattr(Contact, use)),
        )
    )
    clause = and_(getattr(Conversation, use), not_(exists(refused_contact)))
    return clause if groups else and_(clause, not_(Conversation.is_group))


def excluded_ids(use: Use, *, groups: bool = True) -> Select[Any]:
    """The ids of the conversations that may not be used for `use`."""
    return select(Conversation.id).where(not_(allowed(use, groups=groups)))


def usable(
    column: QueryableAttribute[uuid.UUID | None], use: Use, *, groups: bool = True
) -> ColumnElement[bool]:
    """SQL: a row whose conversation (`column`, may be NULL: no conversation) is usable."""
    return or_(column.is_(None), column.not_in(excluded_ids(use, groups=groups)))


async def is_allowed(session: AsyncSession, conversation_id: uuid.UUID, use: Use) -> bool:
    """Whether this conversation may be used for `use` (False when it does not exist)."""
    found = await session.scalar(
        select(Conversation.id).where(Conversation.id == conversation_id, allowed(use))
    )
    return found is not None


async def retire_excluded_suggestions(session: AsyncSession) -> None:
    """Retire the suggestions still on offer in conversations now left out of suggestions
    (the inbox and the thread stop showing them)."""
    await session.execute(
        update(GeneratedResponse)
        .where(
            GeneratedResponse.retired_at.is_(None),
            GeneratedResponse.message_id.in_(
                select(Message.id).where(Message.conversation_id.in_(excluded_ids("suggestions")))
            ),
        )
        .values(retired_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def set_switches(
    session: AsyncSession, row: Conversation | Contact, body: ConsentUpdate
) -> None:
    """Apply the owner's switches to a conversation or a contact; switching suggestions off
    retires those on offer where that now applies."""
    if body.training is not None:
        row.training = body.training
        note_change(session)
    if body.suggestions is not None:
        row.suggestions = body.suggestions
    await session.flush()
    if body.suggestions is False:
        await retire_excluded_suggestions(session)
