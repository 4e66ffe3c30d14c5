"""Contacts as the owner manages them: consent switches and deletion.

Deleting a contact deletes its row and every one-to-one conversation with its handle (with
their messages, suggestions, samples and outbox); group conversations it is part of stay.
A later contact sync brings the row back (with both switches on); to keep someone out of
training or suggestions, switch them off instead.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import NotFound
from convassist.server.contacts.schemas import ContactOut, ContactPage
from convassist.server.conversations.consent import set_switches
from convassist.server.conversations.schemas import ConsentUpdate
from convassist.server.conversations.service import delete_conversations
from convassist.server.models import Contact, Conversation, ConversationParticipant
from convassist.server.pagination import decode_timed_cursor, encode_cursor


async def list_contacts(
    session: AsyncSession, *, q: str | None, limit: int, cursor: str | None
) -> ContactPage:
    """Oldest first (by when they were synced), optionally those whose name or handle has `q`."""
    stmt = select(Contact)
    if q:
        stmt = stmt.where(
            Contact.display_name.icontains(q, autoescape=True)
            | Contact.apple_id.icontains(q, autoescape=True)
        )
    if cursor:
        at, after_id = decode_timed_cursor(cursor)
        stmt = stmt.where(tuple_(Contact.created_at, Contact.id) > (at, after_id))
    stmt = stmt.order_by(Contact.created_at, Contact.id).limit(limit + 1)
    rows = list((await session.execute(stmt)).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return ContactPage(
        items=[ContactOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


async def _get(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("No such contact.", code="contact_not_found")
    return contact


async def update_consent(
    session: AsyncSession, contact_id: uuid.UUID, body: ConsentUpdate
) -> ContactOut:
    """Set the contact's training and/or suggestions switch (for every conversation with them)."""
    contact = await _get(session, contact_id)
    await set_switches(session, contact, body)
    return ContactOut.model_validate(contact)


async def delete_contact(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """Delete the contact and its one-to-one conversations (see the module docstring)."""
    contact = await _get(session, contact_id)
    others = (
        select(func.count())
        .where(
            ConversationParticipant.conversation_id == Conversation.id,
            ConversationParticipant.handle != contact.apple_id,
        )
        .scalar_subquery()
    )
    one_to_one = select(Conversation.id).where(
        not_(Conversation.is_group),
        Conversation.id.in_(
            select(ConversationParticipant.conversation_id).where(
                ConversationParticipant.handle == contact.apple_id
            )
        ),
        others == 0,
    )
    await delete_conversations(session, list((await session.execute(one_to_one)).scalars()))
    await session.delete(contact)
