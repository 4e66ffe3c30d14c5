"""Browsing conversations and messages, and building the prompt context for a message.

Pagination is keyset-based with opaque cursors (base64url JSON of the last row's sort key):
conversations newest first by `last_message_at` (never-active ones last) then id;
messages backwards in time by `(sent_at, id)`, served from the (conversation_id, sent_at, id)
index. Names resolve through contacts by handle (`contacts.apple_id`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import NotFound
from convassist.core.prompt import ChatLine, clean_text, render_prompt
from convassist.server.conversations import search
from convassist.server.conversations.consent import allowed, set_switches
from convassist.server.conversations.excerpt import excerpt
from convassist.server.conversations.schemas import (
    ConsentUpdate,
    ConversationOut,
    ConversationPage,
    MessageMatchOut,
    MessageOut,
    MessagePage,
    ParticipantOut,
    TextSpan,
)
from convassist.server.messages import has_text
from convassist.server.models import (
    Contact,
    Conversation,
    ConversationParticipant,
    Direction,
    GeneratedResponse,
    Message,
    TrainingSample,
)
from convassist.server.pagination import decode_cursor, decode_timed_cursor, encode_cursor
from convassist.server.responses.own_changes import note_change


def _participants_by_conversation(
    rows: Sequence[Any],
) -> dict[uuid.UUID, list[ParticipantOut]]:
    grouped: dict[uuid.UUID, list[ParticipantOut]] = defaultdict(list)
    for conversation_id, handle, name, contact_id, training, suggestions in rows:
        grouped[conversation_id].append(
            ParticipantOut(
                handle=handle,
                display_name=name,
                contact_id=contact_id,
                training=training is not False,
                suggestions=suggestions is not False,
            )
        )
    return grouped


async def conversation_views(
    session: AsyncSession, conversations: Sequence[Conversation]
) -> list[ConversationOut]:
    """Conversations with their participants, resolved names and consent (two queries)."""
    if not conversations:
        return []
    ids = [c.id for c in conversations]
    consent = {
        row[0]: (row[1], row[2])
        for row in await session.execute(
            select(Conversation.id, allowed("training"), allowed("suggestions")).where(
                Conversation.id.in_(ids)
            )
        )
    }
    rows = await session.execute(
        select(
            ConversationParticipant.conversation_id,
            ConversationParticipant.handle,
            Contact.display_name,
            Contact.id,
            Contact.training,
            Contact.suggestions,
        )
        .outerjoin(Contact, Contact.apple_id == ConversationParticipant.handle)
        .where(ConversationParticipant.conversation_id.in_(ids))
        .order_by(ConversationParticipant.handle)
    )
    participants = _participants_by_conversation(rows.all())
    views = []
    for conversation in conversations:
        people = participants.get(conversation.id, [])
        name = (
            conversation.display_name
            or ", ".join(p.display_name or p.handle for p in people)
            or conversation.imessage_id
        )
        views.append(
            ConversationOut(
                id=conversation.id,
                imessage_id=conversation.imessage_id,
                display_name=name,
                is_group=conversation.is_group,
                participants=people,
                message_count=conversation.message_count,
                last_message_at=conversation.last_message_at,
                service=conversation.service,
                awaiting_reply_since=conversation.awaiting_reply_since,
                training=conversation.training,
                suggestions=conversation.suggestions,
                learning=bool(consent[conversation.id][0]),
                suggesting=bool(consent[conversation.id][1]),
            )
        )
    return views


def _search(q: str) -> ColumnElement[bool]:
    """Case-insensitive substring over the chat name, participant handles and their names."""
    matching_participant = (
        select(ConversationParticipant.id)
        .outerjoin(Contact, Contact.apple_id == ConversationParticipant.handle)
        .where(
            ConversationParticipant.conversation_id == Conversation.id,
            or_(
                ConversationParticipant.handle.icontains(q, autoescape=True),
                Contact.display_name.icontains(q, autoescape=True),
            ),
        )
    )
    return or_(
        Conversation.display_name.icontains(q, autoescape=True), exists(matching_participant)
    )


async def list_conversations(
    session: AsyncSession, *, q: str | None, limit: int, cursor: str | None
) -> ConversationPage:
    """Newest first; with `q`, those whose name, handles or contact names contain it, or
    that have a message matching its words (see `search`), each with its newest match."""
    query = (q or "").strip()
    matches = search.newest_matches(session.get_bind().dialect.name, query)
    stmt: Select[Any] = select(Conversation)
    if matches is not None:
        stmt = (
            select(Conversation, matches.c.message_id, matches.c.sent_at, Message.text)
            .outerjoin(matches, matches.c.conversation_id == Conversation.id)
            .outerjoin(Message, Message.id == matches.c.message_id)
            .where(or_(_search(query), matches.c.conversation_id.is_not(None)))
        )
    elif query:
        stmt = stmt.where(_search(query))
    if cursor:
        at, after_id = decode_cursor(cursor)
        if at is None:
            stmt = stmt.where(Conversation.last_message_at.is_(None), Conversation.id < after_id)
        else:
            stmt = stmt.where(
                or_(
                    Conversation.last_message_at < at,
                    and_(Conversation.last_message_at == at, Conversation.id < after_id),
                    Conversation.last_message_at.is_(None),
                )
            )
    stmt = stmt.order_by(
        Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc()
    ).limit(limit + 1)
    rows = [tuple(row) for row in await session.execute(stmt)]
    conversations = [row[0] for row in rows]
    next_cursor = None
    if len(conversations) > limit:
        conversations, rows = conversations[:limit], rows[:limit]
        last = conversations[-1]
        next_cursor = encode_cursor(last.last_message_at, last.id)
    return ConversationPage(
        items=[
            _with_match(view, row, query)
            for view, row in zip(
                await conversation_views(session, conversations), rows, strict=True
            )
        ],
        next_cursor=next_cursor,
    )


def _with_match(view: ConversationOut, row: tuple[Any, ...], q: str) -> ConversationOut:
    """The view with the matching message of its row (conversation, id, sent_at, text)."""
    if len(row) < 4 or row[1] is None:
        return view
    text, spans = excerpt(row[3] or "", q)
    view.match = MessageMatchOut(
        message_id=row[1],
        sent_at=row[2],
        excerpt=text,
        highlights=[TextSpan(start=start, end=end) for start, end in spans],
    )
    return view


async def _get(session: AsyncSession, conversation_id: uuid.UUID) -> Conversation:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.", code="conversation_not_found")
    return conversation


async def get_conversation(session: AsyncSession, conversation_id: uuid.UUID) -> ConversationOut:
    return (await conversation_views(session, [await _get(session, conversation_id)]))[0]


async def update_consent(
    session: AsyncSession, conversation_id: uuid.UUID, body: ConsentUpdate
) -> ConversationOut:
    """Set the conversation's training and/or suggestions switch."""
    conversation = await _get(session, conversation_id)
    await set_switches(session, conversation, body)
    return await get_conversation(session, conversation_id)


async def delete_conversations(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Delete conversations with everything stored about them.

    The database cascades to participants, messages (and the search index, by trigger),
    their suggestions and the outbox; training samples only point at a conversation or a
    suggestion (SET NULL), so they are deleted here first."""
    if not ids:
        return
    suggestions = (
        select(GeneratedResponse.id)
        .join(Message, Message.id == GeneratedResponse.message_id)
        .where(Message.conversation_id.in_(ids))
    )
    await session.execute(
        delete(TrainingSample).where(
            or_(
                TrainingSample.conversation_id.in_(ids),
                TrainingSample.response_id.in_(suggestions),
            )
        )
    )
    await session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
    note_change(session)


async def delete_conversation(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    """404 if unknown; see `delete_conversations`."""
    await _get(session, conversation_id)
    await delete_conversations(session, [conversation_id])


async def list_messages(
    session: AsyncSession, conversation_id: uuid.UUID, *, before: str | None, limit: int
) -> MessagePage:
    """One page of messages older than `before` (newest page first), oldest first within."""
    await _get(session, conversation_id)
    stmt = (
        select(Message, Contact.display_name)
        .outerjoin(Contact, Contact.apple_id == Message.sender_id)
        .where(Message.conversation_id == conversation_id)
    )
    if before:
        at, before_id = decode_timed_cursor(before)
        stmt = stmt.where(
            or_(Message.sent_at < at, and_(Message.sent_at == at, Message.id < before_id))
        )
    stmt = stmt.order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        oldest = rows[-1][0]
        next_cursor = encode_cursor(oldest.sent_at, oldest.id)
    items = [message_out(message, name) for message, name in reversed(rows)]
    return MessagePage(items=items, next_cursor=next_cursor)


def message_out(message: Message, sender_name: str | None) -> MessageOut:
    """A message as the API shows it; `sender_name` is its sender's contact name."""
    return MessageOut(
        id=message.id,
        imessage_guid=message.imessage_guid,
        sender_id=message.sender_id,
        sender_name=sender_name,
        direction=message.direction,
        message_type=message.message_type,
        text=message.text,
        sent_at=message.sent_at,
        edited_at=message.edited_at,
        is_unsent=message.is_unsent,
        reply_to_guid=message.reply_to_guid,
    )


@dataclass(frozen=True, slots=True)
class BuiltContext:
    """The prompt for replying at one message, with the lines it was rendered from."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    is_group: bool
    lines: list[ChatLine]
    prompt: str


async def build_context(
    session: AsyncSession,
    message_id: uuid.UUID,
    *,
    max_history: int = 10,
    conversation_id: uuid.UUID | None = None,
) -> BuiltContext:
    """The last `max_history` text messages up to and including `message_id`, as a prompt.

    Only messages with text count: reactions, unsent messages and attachments without a
    caption are left out. Ties on `sent_at` are broken by id. In group chats incoming lines
    carry the sender's contact name (else the handle). 404 if the message is unknown or,
    when `conversation_id` is given, belongs to another conversation.
    """
    target = await session.get(Message, message_id)
    if target is None or (
        conversation_id is not None and target.conversation_id != conversation_id
    ):
        raise NotFound("No such message in this conversation.", code="message_not_found")
    conversation = await _get(session, target.conversation_id)
    rows = (
        await session.execute(
            select(Message.direction, Message.sender_id, Message.text, Contact.display_name)
            .outerjoin(Contact, Contact.apple_id == Message.sender_id)
            .where(
                Message.conversation_id == target.conversation_id,
                or_(
                    Message.sent_at < target.sent_at,
                    and_(Message.sent_at == target.sent_at, Message.id <= target.id),
                ),
                has_text(),
            )
            .order_by(Message.sent_at.desc(), Message.id.desc())
            .limit(max_history)
        )
    ).all()
    lines = [
        ChatLine(
            speaker="me" if direction is Direction.OUTGOING else "them",
            text=text,
            name=contact_name or sender_id,
        )
        for direction, sender_id, text, contact_name in reversed(rows)
        if text is not None and clean_text(text)
    ]
    return BuiltContext(
        conversation_id=conversation.id,
        message_id=target.id,
        is_group=conversation.is_group,
        lines=lines,
        prompt=render_prompt(lines, group=conversation.is_group),
    )
