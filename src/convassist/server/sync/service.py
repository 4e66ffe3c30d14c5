"""Message and contact sync (seed flow 2): idempotent batch upserts guarded by constraints.

One sync request is one transaction (the statements are in `upserts`):

1. upsert the conversation by chat guid (`ON CONFLICT (imessage_id) DO UPDATE`); on
   PostgreSQL this locks its row, so concurrent batches for one conversation run one after
   the other from here on (SQLite serialises all writers anyway);
2. add its participants (`ON CONFLICT DO NOTHING`);
3. read the stored versions of the batch's guids (one query) and classify each message as
   new, changed, unchanged, or stored under another conversation;
4. write the new and changed ones in one statement, `INSERT … ON CONFLICT (imessage_guid)
   DO UPDATE … WHERE <same conversation and a field changed>` (PostgreSQL: the rows travel
   as one JSON parameter; SQLite: multi-row VALUES), in guid order so that concurrent
   writers lock rows in the same order; its row count confirms the classification;
5. bump the conversation's `message_count` by what was inserted and recompute
   `last_message_at` from the (conversation_id, sent_at) index; stamp the device;
6. keep which message waits on the owner's reply (`suggest.waiting`: the inbox's column,
   retired suggestions, replied samples); the router hands a newly waiting one to the
   `Suggester` once this transaction has committed.

The unique constraint on `imessage_guid` is what makes duplicates impossible; the
classification only feeds the counts (and is re-checked when another conversation's batch
stored one of our new guids in between). A guid already stored under another conversation
is left where it is, untouched, and counted as `skipped`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.db import upsert_insert
from convassist.core.errors import PayloadTooLarge
from convassist.core.logging import get_logger
from convassist.server.models import (
    Contact,
    ConversationParticipant,
    Device,
    Direction,
    utcnow,
)
from convassist.server.outbox.delivery import confirm_sent
from convassist.server.responses.own_changes import note_change
from convassist.server.suggest.gate import SuggestPolicy
from convassist.server.suggest.waiting import refresh as refresh_waiting
from convassist.server.sync.schemas import (
    MAX_CONTACTS,
    ConversationSyncState,
    SyncContactsRequest,
    SyncMessage,
    SyncMessagesRequest,
    SyncStatusResponse,
)
from convassist.server.sync.upserts import (
    CONVERSATIONS,
    MESSAGE_FIELDS,
    MESSAGES,
    lookup,
    one_of,
    upsert_conversation,
    write_messages,
)

log = get_logger(__name__)

PARTICIPANTS: Table = ConversationParticipant.__table__  # type: ignore[assignment]
CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
DEVICES: Table = Device.__table__  # type: ignore[assignment]

CONTACT_FIELDS = ("display_name", "phone_number", "email", "avatar_hash")
# Keep IN (...) lists well below both backends' bound-parameter limits.
LOOKUP_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class MessageSyncResult:
    conversation_id: uuid.UUID
    inserted: int
    updated: int
    unchanged: int
    skipped: int
    message_count: int
    last_message_at: datetime | None
    waiting_message_id: uuid.UUID | None = None
    """A message that waits on the owner's reply because of this batch (`suggest.waiting`)."""


@dataclass(frozen=True, slots=True)
class ContactSyncResult:
    inserted: int
    updated: int
    unchanged: int


def _chunks(items: Sequence[str], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _too_large(what: str, count: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"At most {limit} {what} per request; got {count}. Send them in smaller batches.",
        code="batch_too_large",
        limit=limit,
    )


async def sync_messages(
    session: AsyncSession,
    device: Device,
    body: SyncMessagesRequest,
    *,
    max_batch: int,
    policy: SuggestPolicy = SuggestPolicy(),
) -> MessageSyncResult:
    """Store one batch of one conversation's messages; see the module docstring."""
    if len(body.messages) > max_batch:
        raise _too_large("messages", len(body.messages), max_batch)
    now = utcnow()
    conversation_id, message_count, last_message_at = await upsert_conversation(session, body, now)
    handles = dict.fromkeys(body.participants)
    handles.update(
        dict.fromkeys(
            m.sender_id for m in body.messages if m.sender_id and m.direction is Direction.INCOMING
        )
    )
    if handles:
        await session.execute(
            upsert_insert(session, PARTICIPANTS).on_conflict_do_nothing(),
            [
                {"id": uuid.uuid4(), "conversation_id": conversation_id, "handle": handle}
                for handle in sorted(handles)
            ],
        )

    stored = await _stored_messages(session, [m.imessage_guid for m in body.messages])
    to_write: list[SyncMessage] = []
    unchanged = skipped = 0
    for message in sorted(body.messages, key=lambda m: m.imessage_guid):
        old = stored.get(message.imessage_guid)
        if old is not None:
            if old[0] != conversation_id:
                skipped += 1
                continue
            if old[1:] == tuple(getattr(message, name) for name in MESSAGE_FIELDS):
                unchanged += 1
                continue
        to_write.append(message)

    inserted = updated = 0
    waiting: uuid.UUID | None = None
    if to_write:
        written = await write_messages(
            session, to_write, conversation_id=conversation_id, device_id=device.id, now=now
        )
        changed = sum(1 for m in to_write if m.imessage_guid in stored)
        if written == len(to_write):
            inserted, updated = len(to_write) - changed, changed
        else:
            # Another conversation's batch stored some of our new guids between our read
            # and our write. Only we add rows to this (locked) conversation: the new guids
            # now in it are the ones we inserted.
            new = [m.imessage_guid for m in to_write if m.imessage_guid not in stored]
            ours = await lookup(
                session,
                select(func.count()).where(
                    MESSAGES.c.conversation_id == conversation_id,
                    one_of(session, MESSAGES.c.imessage_guid, new),
                ),
            )
            inserted = ours[0][0]
            updated = written - inserted
            unchanged += changed - updated
            skipped += len(new) - inserted
        message_count, last_message_at = await _refresh_conversation(
            session, conversation_id, inserted, now
        )
        arrived = [m for m in to_write if m.imessage_guid not in stored]
        if updated or any(m.direction is Direction.OUTGOING for m in arrived):
            note_change(session)  # the owner's stock replies are tallied from these
        # The outbox's sends that this batch shows in chat.db become confirmed first, so
        # they are not taken for replies from the phone.
        confirmed = await confirm_sent(session, conversation_id, arrived)
        waiting = await refresh_waiting(
            session,
            conversation_id,
            is_group=body.is_group,
            new=arrived,
            policy=policy,
            now=now,
            outbox_sends=confirmed,
        )
    await session.execute(
        update(DEVICES)
        .where(DEVICES.c.id == device.id)
        .values(
            last_sync_at=now,
            messages_synced=DEVICES.c.messages_synced + inserted,
            updated_at=now,
        )
    )
    log.info(
        "messages_synced",
        device_id=str(device.id),
        conversation_id=str(conversation_id),
        received=len(body.messages),
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        skipped=skipped,
    )
    return MessageSyncResult(
        conversation_id=conversation_id,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        skipped=skipped,
        message_count=message_count,
        last_message_at=last_message_at,
        waiting_message_id=waiting,
    )


async def _stored_messages(
    session: AsyncSession, guids: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """guid → (conversation_id, *MESSAGE_FIELDS) of the rows already stored."""
    columns = [MESSAGES.c.conversation_id, *(MESSAGES.c[name] for name in MESSAGE_FIELDS)]
    stored: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(guids):
        result = await lookup(
            session,
            select(MESSAGES.c.imessage_guid, *columns).where(
                one_of(session, MESSAGES.c.imessage_guid, chunk)
            ),
        )
        for row in result:
            stored[row[0]] = tuple(row[1:])
    return stored


async def _refresh_conversation(
    session: AsyncSession, conversation_id: uuid.UUID, inserted: int, now: datetime
) -> tuple[int, datetime | None]:
    """Count what this batch inserted; take the newest sent_at from the messages index."""
    newest = (
        select(func.max(MESSAGES.c.sent_at))
        .where(MESSAGES.c.conversation_id == conversation_id)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            update(CONVERSATIONS)
            .where(CONVERSATIONS.c.id == conversation_id)
            .values(
                message_count=CONVERSATIONS.c.message_count + inserted,
                last_message_at=newest,
                updated_at=now,
            )
            .returning(CONVERSATIONS.c.message_count, CONVERSATIONS.c.last_message_at)
        )
    ).one()
    return row[0], row[1]


async def sync_contacts(session: AsyncSession, body: SyncContactsRequest) -> ContactSyncResult:
    """Upsert contacts by handle (`apple_id`); each card replaces the stored one."""
    if len(body.contacts) > MAX_CONTACTS:
        raise _too_large("contacts", len(body.contacts), MAX_CONTACTS)
    stored: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks([c.apple_id for c in body.contacts]):
        result = await lookup(
            session,
            select(CONTACTS.c.apple_id, *(CONTACTS.c[name] for name in CONTACT_FIELDS)).where(
                one_of(session, CONTACTS.c.apple_id, chunk)
            ),
        )
        for found in result:
            stored[found[0]] = tuple(found[1:])
    now = utcnow()
    rows: list[dict[str, Any]] = []
    unchanged = 0
    for contact in sorted(body.contacts, key=lambda c: c.apple_id):
        values = contact.model_dump(include={"apple_id", *CONTACT_FIELDS})
        old = stored.get(contact.apple_id)
        if old is not None and old == tuple(values[name] for name in CONTACT_FIELDS):
            unchanged += 1
            continue
        values.update(id=uuid.uuid4(), created_at=now, updated_at=now)
        rows.append(values)
    inserted = updated = 0
    if rows:
        stmt = upsert_insert(session, CONTACTS)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[CONTACTS.c.apple_id],
            set_={**{name: excluded[name] for name in CONTACT_FIELDS}, "updated_at": now},
            where=or_(
                *(CONTACTS.c[name].is_distinct_from(excluded[name]) for name in CONTACT_FIELDS)
            ),
        ).returning(CONTACTS.c.apple_id)
        written = set((await session.execute(stmt, rows)).scalars())
        for row in rows:
            if row["apple_id"] not in written:
                unchanged += 1
            elif row["apple_id"] in stored:
                updated += 1
            else:
                inserted += 1
    log.info(
        "contacts_synced",
        received=len(body.contacts),
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
    )
    return ContactSyncResult(inserted=inserted, updated=updated, unchanged=unchanged)


async def sync_status(
    session: AsyncSession,
    device: Device,
    *,
    max_batch: int,
    max_body_bytes: int,
    conversation_guid: str | None = None,
) -> SyncStatusResponse:
    """What the server holds, for an agent to cross-check its own cursor."""
    totals = (
        await session.execute(
            select(
                func.count(CONVERSATIONS.c.id),
                func.coalesce(func.sum(CONVERSATIONS.c.message_count), 0),
                func.max(CONVERSATIONS.c.last_message_at),
                select(func.count(CONTACTS.c.id)).scalar_subquery(),
            )
        )
    ).one()
    conversation = None
    if conversation_guid is not None:
        conversation = await _conversation_state(session, conversation_guid)
    return SyncStatusResponse(
        device_id=device.id,
        last_sync_at=device.last_sync_at,
        messages_synced_by_device=device.messages_synced,
        conversation_count=totals[0],
        message_count=int(totals[1]),
        contact_count=totals[3],
        latest_message_at=totals[2],
        server_time=utcnow(),
        max_batch=max_batch,
        max_contacts=MAX_CONTACTS,
        max_body_bytes=max_body_bytes,
        conversation=conversation,
    )


async def _conversation_state(session: AsyncSession, guid: str) -> ConversationSyncState | None:
    row = (
        await session.execute(
            select(
                CONVERSATIONS.c.id, CONVERSATIONS.c.message_count, CONVERSATIONS.c.last_message_at
            ).where(CONVERSATIONS.c.imessage_id == guid)
        )
    ).one_or_none()
    if row is None:
        return None
    newest_guid = (
        await session.execute(
            select(MESSAGES.c.imessage_guid)
            .where(MESSAGES.c.conversation_id == row[0])
            .order_by(MESSAGES.c.sent_at.desc(), MESSAGES.c.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return ConversationSyncState(
        conversation_id=guid,
        id=row[0],
        message_count=row[1],
        last_message_at=row[2],
        last_message_guid=newest_guid,
    )
