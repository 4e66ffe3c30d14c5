"""The owner's side of the outbox: queue a reply, list what was sent, keep entries current.

An entry is `queued` until a device that may send claims it (`sending`, see `delivery`),
then `sent` or `failed` by the device's report, and `confirmed` when a sync shows it in
chat.db. Nothing is handed out after `expires_at`: a queued entry past it is `expired`
(lazily, by one UPDATE before every read and claim). A `sending` entry whose device never
reported is `failed` long after expiry; a later sync confirmation still upgrades it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.errors import Conflict, NotFound, Unprocessable
from convassist.core.logging import get_logger
from convassist.core.settings import ServerSettings
from convassist.server import throttle
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Conversation,
    GeneratedResponse,
    Message,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
    utcnow,
)
from convassist.server.outbox.schemas import OutboxRequest
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.responses import service as responses

log = get_logger(__name__)

SEND_THROTTLE_KEY = "outbox-send"
SEND_WINDOW = timedelta(minutes=1)
# How long after its expiry a claimed entry may still be reported before it counts as failed.
REPORT_GRACE = timedelta(minutes=10)
NO_REPORT = "No report from the device that was sending it; it may or may not have been sent."
REVOKED = "The device that was sending it was revoked; it may or may not have been sent."
SEND_OFF = (
    "Sending was turned off for the device that was sending it; it may or may not have been sent."
)


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """How long a reply may wait for a device, and how many the owner may queue a minute."""

    expiry: timedelta = timedelta(seconds=600)
    sends_per_minute: int = 30

    @classmethod
    def of(cls, settings: ServerSettings) -> OutboxPolicy:
        return cls(
            expiry=timedelta(seconds=settings.outbox_expiry_seconds),
            sends_per_minute=settings.outbox_sends_per_minute,
        )


async def enqueue(
    session: AsyncSession,
    request: OutboxRequest,
    policy: OutboxPolicy | None = None,
    ml: MLClient | None = None,
) -> OutboxMessage:
    """Queue a reply (rate-limited); a suggestion it comes from becomes accepted or edited.

    Pass `OutboxPolicy.of(settings)` to honour the configured expiry and limit, and `ml` so
    that a suggestion shown live (its ML job done, not yet stored) is settled first. The
    suggestion's conditional update lets it be sent at most once; the conversation stops
    waiting for a reply."""
    policy = policy or OutboxPolicy()
    await throttle.count_attempt(
        session,
        SEND_THROTTLE_KEY,
        limit=policy.sends_per_minute,
        window=SEND_WINDOW,
        what="replies queued for sending",
    )
    conversation = await session.get(Conversation, request.conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.", code="conversation_not_found")
    now = utcnow()
    if request.response_id is not None:
        await _use_suggestion(session, conversation, request, now, ml)
    entry = OutboxMessage(
        conversation_id=conversation.id,
        text=request.text,
        response_id=request.response_id,
        candidate_index=(request.candidate_index or 0) if request.response_id else None,
        status=OutboxStatus.QUEUED,
        expires_at=now + policy.expiry,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    conversation.awaiting_reply_since = None
    await session.flush()
    log.info(
        "outbox_queued",
        outbox_id=str(entry.id),
        conversation_id=str(conversation.id),
        response_id=str(request.response_id) if request.response_id else None,
    )
    return entry


async def _use_suggestion(
    session: AsyncSession,
    conversation: Conversation,
    request: OutboxRequest,
    now: datetime,
    ml: MLClient | None,
) -> None:
    """Mark the suggestion accepted (sent as is) or edited, once; retire its message's rows."""
    found = (
        await session.execute(
            select(GeneratedResponse, Message)
            .join(Message, Message.id == GeneratedResponse.message_id)
            .where(GeneratedResponse.id == request.response_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFound("No such suggestion.", code="response_not_found")
    row, message = found
    if message.conversation_id != conversation.id:
        raise Unprocessable(
            "This suggestion belongs to another conversation.", code="response_mismatch"
        )
    if ml is not None:  # the inbox shows a finished job's candidates before they are stored
        await responses.MIRROR.settle(session, ml, row)
    responses.require_completed(row, nothing_to="send")
    waiting = conversation.awaiting_reply_since
    if row.retired_at is not None or (waiting is not None and message.sent_at < waiting):
        raise Conflict(
            "This suggestion is out of date: a newer message arrived or you already replied.",
            code="suggestion_retired",
        )
    index = responses.chosen_index(row, request.candidate_index)
    chosen = str(row.candidates[index]["text"]).strip()
    edited = request.text != chosen
    claimed = await session.execute(
        update(GeneratedResponse)
        .where(
            GeneratedResponse.id == row.id,
            GeneratedResponse.status == ResponseStatus.COMPLETED,
            GeneratedResponse.retired_at.is_(None),
        )
        .values(
            status=ResponseStatus.EDITED if edited else ResponseStatus.ACCEPTED,
            chosen_index=index,
            response=chosen,
            edited_response=request.text if edited else None,
            acted_at=now,
            retired_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("This suggestion was already sent or acted on.", code="already_acted")
    # The owner answered this message: its other suggestions are moot.
    await session.execute(
        update(GeneratedResponse)
        .where(GeneratedResponse.message_id == message.id, GeneratedResponse.retired_at.is_(None))
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )


async def expire_stale(session: AsyncSession) -> None:
    """Queued entries past their expiry: expired; claimed ones never reported: failed."""
    now = utcnow()
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.expires_at <= now)
        .values(status=OutboxStatus.EXPIRED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.expires_at <= now - REPORT_GRACE,
        )
        .values(status=OutboxStatus.FAILED, error=NO_REPORT, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def abandon_device(session: AsyncSession, device_id: uuid.UUID, *, reason: str) -> int:
    """The device may no longer send: what it was sending goes to no one else (failed)."""
    now = utcnow()
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.device_id == device_id, OutboxMessage.status == OutboxStatus.SENDING)
        .values(status=OutboxStatus.FAILED, error=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    count: int = result.rowcount  # type: ignore[attr-defined]
    if count:
        log.info("outbox_abandoned", device_id=str(device_id), entries=count)
    return count


async def list_entries(
    session: AsyncSession,
    *,
    status: OutboxStatus | None,
    conversation_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[OutboxMessage], str | None]:
    """Newest first, keyset-paginated."""
    await expire_stale(session)
    query = select(OutboxMessage)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    if conversation_id is not None:
        query = query.where(OutboxMessage.conversation_id == conversation_id)
    if cursor:
        created, row_id = decode_timed_cursor(cursor)
        query = query.where(tuple_(OutboxMessage.created_at, OutboxMessage.id) < (created, row_id))
    query = query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], encode_cursor(last.created_at, last.id) if last else None


async def recent_by_device(
    session: AsyncSession, device_ids: list[uuid.UUID], *, per_device: int = 3
) -> dict[uuid.UUID, list[OutboxMessage]]:
    """The last few entries each device claimed, newest first."""
    if device_ids:
        await expire_stale(session)
    recent: dict[uuid.UUID, list[OutboxMessage]] = {}
    for device_id in device_ids:
        recent[device_id] = list(
            (
                await session.execute(
                    select(OutboxMessage)
                    .where(OutboxMessage.device_id == device_id)
                    .order_by(OutboxMessage.claimed_at.desc(), OutboxMessage.id.desc())
                    .limit(per_device)
                )
            ).scalars()
        )
    return recent
