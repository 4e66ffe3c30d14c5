"""The inbox: conversations waiting for the owner's reply, with their ready suggestions.

A conversation waits while `Conversation.awaiting_reply_since` is set (sync keeps it).
A page costs a fixed number of queries, whatever its size: the conversations (with each
one's waiting message and the cut-off of its last few messages, as scalar subqueries),
their participants, their last messages and the waiting messages' suggestions; the first
page also lists the replies queued lately that no sync has confirmed yet. Newest waiting
first, keyset-paginated by (awaiting_reply_since, id).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Row, and_, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import Conflict, NotFound
from convassist.core.logging import get_logger
from convassist.server.conversations.schemas import ConversationOut, MessageOut
from convassist.server.conversations.service import conversation_views, message_out
from convassist.server.inbox.schemas import (
    DismissOut,
    InboxItemOut,
    InboxPage,
    InboxSendingOut,
    InboxSuggestionOut,
)
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Contact,
    Conversation,
    Device,
    Direction,
    GeneratedResponse,
    Message,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
    utcnow,
)
from convassist.server.outbox import service as outbox
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.responses import service as responses
from convassist.server.responses.schemas import CandidateOut

log = get_logger(__name__)

LAST_MESSAGES = 4
"""How many of a conversation's newest messages an inbox item shows."""
SENDING_WINDOW = timedelta(minutes=30)
SENDING_SHOWN = 10
"""The inbox shows at most this many of the replies queued within SENDING_WINDOW."""
NO_REPLY_NEEDED = "no_reply_needed"
"""The rejection reason of ready suggestions the owner dismissed with "no reply needed"."""


def _newest_first() -> tuple[ColumnElement[datetime], ColumnElement[uuid.UUID]]:
    return Message.sent_at.desc(), Message.id.desc()


def _waiting_conversations(where: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(Conversation.awaiting_reply_since.is_not(None), where)


async def _conversations(
    session: AsyncSession, where: ColumnElement[bool], limit: int
) -> Sequence[Row[Conversation, datetime | None, uuid.UUID | None]]:
    """Waiting conversations, newest first, each with the `sent_at` of its LAST_MESSAGES-th
    newest message (None when it has fewer) and its waiting message's id."""
    cutoff = (
        select(Message.sent_at)
        .where(Message.conversation_id == Conversation.id)
        .order_by(*_newest_first())
        .offset(LAST_MESSAGES - 1)
        .limit(1)
        .correlate(Conversation)
        .scalar_subquery()
    )
    waiting = (
        select(Message.id)
        .where(
            Message.conversation_id == Conversation.id,
            Message.direction == Direction.INCOMING,
            Message.sent_at <= Conversation.awaiting_reply_since,
        )
        .order_by(*_newest_first())
        .limit(1)
        .correlate(Conversation)
        .scalar_subquery()
    )
    stmt = (
        select(Conversation, cutoff, waiting)
        .where(_waiting_conversations(where))
        .order_by(Conversation.awaiting_reply_since.desc(), Conversation.id.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).all()


async def _last_messages(
    session: AsyncSession, cutoffs: dict[uuid.UUID, datetime | None]
) -> dict[uuid.UUID, list[MessageOut]]:
    """Each conversation's last LAST_MESSAGES messages, oldest first (one query)."""
    if not cutoffs:
        return {}
    ranges = [
        and_(Message.conversation_id == cid, Message.sent_at >= at if at else true())
        for cid, at in cutoffs.items()
    ]
    rows = await session.execute(
        select(Message, Contact.display_name)
        .outerjoin(Contact, Contact.apple_id == Message.sender_id)
        .where(or_(*ranges))
        .order_by(*_newest_first())
    )
    grouped: dict[uuid.UUID, list[MessageOut]] = defaultdict(list)
    for message, name in rows:
        shown = grouped[message.conversation_id]
        if len(shown) < LAST_MESSAGES:  # ties on the cut-off's sent_at bring a few more
            shown.append(message_out(message, name))
    return {cid: shown[::-1] for cid, shown in grouped.items()}


async def _sending(session: AsyncSession) -> list[InboxSendingOut]:
    """Replies queued within SENDING_WINDOW that no sync has confirmed, newest first."""
    await outbox.expire_stale(session)
    rows = (
        await session.execute(
            select(OutboxMessage, Conversation, Device.name)
            .join(Conversation, Conversation.id == OutboxMessage.conversation_id)
            .outerjoin(Device, Device.id == OutboxMessage.device_id)
            .where(
                OutboxMessage.status != OutboxStatus.CONFIRMED,
                OutboxMessage.created_at >= utcnow() - SENDING_WINDOW,
            )
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(SENDING_SHOWN)
        )
    ).all()
    unique = list({conversation.id: conversation for _, conversation, _ in rows}.values())
    views = {view.id: view for view in await conversation_views(session, unique)}
    return [
        sending_out(entry, views[entry.conversation_id], device_name)
        for entry, _, device_name in rows
    ]


def sending_out(
    entry: OutboxMessage, conversation: ConversationOut, device_name: str | None
) -> InboxSendingOut:
    """A queued reply as the inbox shows it; `device_name`: the device sending it."""
    return InboxSendingOut(
        id=entry.id,
        conversation=conversation,
        status=entry.status,
        text=entry.text,
        device_name=device_name,
        error=entry.error,
        created_at=entry.created_at,
        expires_at=entry.expires_at,
    )


def _suggestion_out(view: responses.ResponseView) -> InboxSuggestionOut:
    row = view.row
    return InboxSuggestionOut(
        id=row.id,
        status=row.status,
        candidates=[CandidateOut.model_validate(c) for c in row.candidates],
        auto=row.auto,
        model_version=row.model_version,
        error=row.error,
        created_at=row.created_at,
    )


async def _items(
    session: AsyncSession, ml: MLClient, where: ColumnElement[bool], limit: int
) -> list[InboxItemOut]:
    rows = await _conversations(session, where, limit)
    conversations = [conversation for conversation, _, _ in rows]
    views = await conversation_views(session, conversations)
    messages = await _last_messages(session, {c.id: cutoff for c, cutoff, _ in rows})
    waiting = [message_id for _, _, message_id in rows if message_id is not None]
    suggestions = await responses.current(session, ml, waiting)
    items = []
    for (conversation, _, message_id), view in zip(rows, views, strict=True):
        suggestion = suggestions.get(message_id) if message_id else None
        assert conversation.awaiting_reply_since is not None
        items.append(
            InboxItemOut(
                conversation=view,
                awaiting_reply_since=conversation.awaiting_reply_since,
                waiting_message_id=message_id,
                messages=messages.get(conversation.id, []),
                suggestion=_suggestion_out(suggestion) if suggestion else None,
            )
        )
    return items


async def list_inbox(
    session: AsyncSession, ml: MLClient, *, limit: int, cursor: str | None
) -> InboxPage:
    """One page of waiting conversations, newest waiting first."""
    where: ColumnElement[bool] = true()
    if cursor:
        at, after_id = decode_timed_cursor(cursor)
        where = tuple_(Conversation.awaiting_reply_since, Conversation.id) < (at, after_id)
    items = await _items(session, ml, where, limit + 1)
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        next_cursor = encode_cursor(last.awaiting_reply_since, last.conversation.id)
    sending = [] if cursor else await _sending(session)
    return InboxPage(items=items, next_cursor=next_cursor, sending=sending)


async def get_item(
    session: AsyncSession, ml: MLClient, conversation_id: uuid.UUID
) -> InboxItemOut | None:
    """The conversation's inbox item; None when it does not wait for a reply."""
    items = await _items(session, ml, Conversation.id == conversation_id, 1)
    return items[0] if items else None


async def send_devices(session: AsyncSession) -> list[str]:
    """The names of the devices the owner allows to send (active ones)."""
    rows = await session.execute(
        select(Device.name)
        .where(Device.may_send.is_(True), Device.is_active.is_(True), Device.verified.is_(True))
        .order_by(Device.name)
    )
    return list(rows.scalars())


async def dismiss(
    session: AsyncSession, conversation_id: uuid.UUID, *, seen: datetime | None = None
) -> DismissOut:
    """No reply needed: the conversation stops waiting and its pending suggestions are
    retired; ready (completed) ones are also rejected with the reason `no_reply_needed`.

    `seen`: the `awaiting_reply_since` the owner saw; a newer message waiting since then is
    not dismissed unseen (409 `newer_message`, nothing changes)."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.", code="conversation_not_found")
    waiting = conversation.awaiting_reply_since
    if seen is not None and waiting is not None and waiting > seen:
        raise Conflict(
            "A newer message arrived in this conversation; read it before dismissing.",
            code="newer_message",
        )
    was_waiting = waiting is not None
    conversation.awaiting_reply_since = None
    now = utcnow()
    pending = and_(
        GeneratedResponse.message_id.in_(
            select(Message.id).where(Message.conversation_id == conversation_id)
        ),
        GeneratedResponse.retired_at.is_(None),
    )
    await session.execute(
        update(GeneratedResponse)
        .where(pending, GeneratedResponse.status == ResponseStatus.COMPLETED)
        .values(status=ResponseStatus.REJECTED, rejection_reason=NO_REPLY_NEEDED, acted_at=now)
        .execution_options(synchronize_session=False)
    )
    retired = await session.execute(
        update(GeneratedResponse)
        .where(pending)
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(retired.rowcount)  # type: ignore[attr-defined]
    await session.flush()
    log.info(
        "inbox_dismissed",
        conversation_id=str(conversation_id),
        was_waiting=was_waiting,
        retired=count,
    )
    return DismissOut(
        conversation_id=conversation_id, was_waiting=was_waiting, retired_suggestions=count
    )
