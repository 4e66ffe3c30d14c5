"""The device's side of the outbox: claim what to send, report it, and sync's confirmation.

Exactly once: a claim is a conditional UPDATE (`queued`, or `sending` by this very
device, and not about to expire) of the rows it locked first (`FOR UPDATE SKIP LOCKED`, in
creation order), so of two devices asking at once only one gets an entry. The claim is
sticky: only the claiming device is offered it again (it alone can check its chat.db for a
send it could not report). The device's permission is read under a share lock, so a
revocation either waits for a claim in flight (and then fails what it claimed) or is seen
by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from convassist.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from convassist.core.logging import get_logger
from convassist.server.models import (
    Conversation,
    Device,
    Direction,
    OutboxMessage,
    OutboxStatus,
    utcnow,
)
from convassist.server.outbox.samples import learn
from convassist.server.outbox.schemas import SendResult
from convassist.server.outbox.service import NO_REPORT, REPORT_GRACE, expire_stale
from convassist.server.sync.schemas import SyncMessage

log = get_logger(__name__)

# An entry with less time left than this is not handed out (it expires unsent instead).
CLAIM_MARGIN = timedelta(seconds=2)
# Entries handed out per claim. One: a device whose sending is switched off or revoked
# sends nothing after the message in its hands (the next claim is refused).
CLAIM_LIMIT = 1
# A sent message may show in chat.db this long before the entry was queued (clock skew).
CONFIRM_SKEW = timedelta(minutes=1)
DEVICE_FAILED = "The device could not send it."
UNCONFIRMED = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.SENT, OutboxStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Claimed:
    entry: OutboxMessage
    chat_guid: str
    is_group: bool


def _offered_to(device_id: uuid.UUID, now: datetime) -> ColumnElement[bool]:
    return and_(
        or_(
            OutboxMessage.status == OutboxStatus.QUEUED,
            and_(
                OutboxMessage.status == OutboxStatus.SENDING,
                OutboxMessage.device_id == device_id,
            ),
        ),
        OutboxMessage.expires_at > now + CLAIM_MARGIN,
    )


async def _ensure_may_send(session: AsyncSession, device_id: uuid.UUID, *, lock: bool) -> None:
    query = select(Device.may_send, Device.is_active).where(Device.id == device_id)
    row = (await session.execute(query.with_for_update(read=True) if lock else query)).first()
    if row is None or not row.is_active:
        raise Unauthorized("This device has been deactivated.", code="device_revoked")
    if not row.may_send:
        raise Forbidden(
            "This device may not send replies; the owner can allow it on the Devices page.",
            code="send_not_allowed",
        )


async def has_pending(session: AsyncSession, device_id: uuid.UUID) -> bool:
    """Whether a claim would find something (a cheap read for the long poll)."""
    await _ensure_may_send(session, device_id, lock=False)
    found = await session.execute(select(exists().where(_offered_to(device_id, utcnow()))))
    return bool(found.scalar())


async def claim(session: AsyncSession, device_id: uuid.UUID) -> list[Claimed]:
    """Claim the oldest entry this device may send now (`CLAIM_LIMIT`), or none."""
    await _ensure_may_send(session, device_id, lock=True)
    await expire_stale(session)
    now = utcnow()
    offered = _offered_to(device_id, now)
    # Lock in one order (as the sync's confirmation does), skipping rows another request
    # holds: a claimant never waits on another, and never deadlocks with a sync.
    locked = list(
        (
            await session.execute(
                select(OutboxMessage.id)
                .where(offered)
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not locked:
        return []
    ids = list(
        (
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(locked), offered)
                .values(
                    status=OutboxStatus.SENDING,
                    device_id=device_id,
                    claimed_at=now,
                    claim_expires_at=OutboxMessage.expires_at,
                    attempts=OutboxMessage.attempts + 1,
                    updated_at=now,
                )
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    if not ids:
        return []
    rows = await session.execute(
        select(OutboxMessage, Conversation.imessage_id, Conversation.is_group)
        .join(Conversation, Conversation.id == OutboxMessage.conversation_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .execution_options(populate_existing=True)
    )
    claimed = [Claimed(entry, guid, group) for entry, guid, group in rows]
    log.info("outbox_claimed", device_id=str(device_id), entries=len(claimed))
    return claimed


async def report(
    session: AsyncSession, device_id: uuid.UUID, outbox_id: uuid.UUID, body: SendResult
) -> OutboxMessage:
    """The claiming device's report; the same report again answers the same (idempotent)."""
    entry = await session.get(
        OutboxMessage, outbox_id, with_for_update=True, populate_existing=True
    )
    if entry is None:
        raise NotFound("No such outbox entry.", code="outbox_not_found")
    if entry.device_id != device_id:
        raise Conflict("This device has not claimed this entry.", code="not_claimed")
    sent = body.status == "sent"
    late_truth = sent and entry.status is OutboxStatus.FAILED and entry.error == NO_REPORT
    if entry.status is OutboxStatus.SENDING or late_truth:
        now = utcnow()
        if sent:
            entry.status, entry.sent_at, entry.error = OutboxStatus.SENT, now, None
            entry.message_guid = body.message_guid or entry.message_guid
            await learn(session, entry)
        else:
            entry.status, entry.error = OutboxStatus.FAILED, body.error or DEVICE_FAILED
        entry.updated_at = now
        log.info("outbox_reported", outbox_id=str(entry.id), status=entry.status.value)
        return entry
    if _same(entry, body):
        return entry
    raise Conflict(
        f"This entry is already {entry.status.value}.",
        code="already_reported",
        status=entry.status.value,
    )


def _same(entry: OutboxMessage, body: SendResult) -> bool:
    """Whether the entry already says what this report says (a repeated report)."""
    if body.status == "sent":
        done = entry.status in (OutboxStatus.SENT, OutboxStatus.CONFIRMED)
        return done and body.message_guid in (None, entry.message_guid)
    return entry.status is OutboxStatus.FAILED and entry.error == (body.error or DEVICE_FAILED)


async def confirm_sent(
    session: AsyncSession, conversation_id: uuid.UUID, messages: Sequence[SyncMessage]
) -> set[str]:
    """Link newly synced outgoing messages to the entries they sent; their guids.

    Called in the sync's transaction once its messages are stored. A message matches an
    unconfirmed entry of this conversation by its GUID (as reported), else by its text
    (stripped) sent between queueing (less some clock skew) and the report grace after
    expiry. A queued entry that expired unclaimed was never sent and never matches."""
    outgoing = [
        m for m in messages if m.direction is Direction.OUTGOING and m.text and m.text.strip()
    ]
    if not outgoing:
        return set()
    open_entries = list(
        (
            await session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.conversation_id == conversation_id,
                    OutboxMessage.status.in_(UNCONFIRMED),
                )
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )
    confirmed: set[str] = set()
    now = utcnow()
    for message in sorted(outgoing, key=lambda m: m.sent_at):
        entry = _match(open_entries, message)
        if entry is None:
            continue
        open_entries.remove(entry)
        first_send = entry.status is not OutboxStatus.SENT
        entry.status, entry.confirmed_at, entry.error = OutboxStatus.CONFIRMED, now, None
        entry.message_guid = message.imessage_guid
        entry.sent_at = entry.sent_at or message.sent_at
        entry.updated_at = now
        if first_send:
            await learn(session, entry)
        confirmed.add(message.imessage_guid)
        log.info("outbox_confirmed", outbox_id=str(entry.id), conversation_id=str(conversation_id))
    return confirmed


def _match(entries: list[OutboxMessage], message: SyncMessage) -> OutboxMessage | None:
    for entry in entries:
        if entry.message_guid == message.imessage_guid:
            return entry
    text = (message.text or "").strip()
    for entry in entries:
        if entry.text != text or entry.message_guid not in (None, message.imessage_guid):
            continue
        grace = REPORT_GRACE if entry.status is not OutboxStatus.QUEUED else timedelta(0)
        end = entry.expires_at + grace
        if entry.created_at - CONFIRM_SKEW <= message.sent_at <= end:
            return entry
    return None
