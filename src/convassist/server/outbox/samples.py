"""What the outbox really sent becomes a training sample, once, when it is first sent.

A suggestion sent unchanged is `accepted` (quality = its candidate's confidence), an edited
one `edited` (1.0); both are linked by `response_id` (unique). Free text typed by the owner
answering an incoming message is `manual` (1.0), with that message's context.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.logging import get_logger
from convassist.server.conversations.service import build_context
from convassist.server.messages import has_text
from convassist.server.models import (
    Direction,
    GeneratedResponse,
    Message,
    OutboxMessage,
    ResponseStatus,
    SampleSource,
    TrainingSample,
)
from convassist.server.responses.service import EDITED_QUALITY, accepted_quality

log = get_logger(__name__)

MANUAL_QUALITY = 1.0


async def learn(session: AsyncSession, entry: OutboxMessage) -> TrainingSample | None:
    """The sample for an entry that has just become sent or confirmed (None if none fits)."""
    make = _from_suggestion if entry.response_id else _manual
    sample = await make(session, entry)
    if sample is not None:
        session.add(sample)
        await session.flush()
        log.info(
            "outbox_sample", outbox_id=str(entry.id), sample_id=str(sample.id), source=sample.source
        )
    return sample


async def _from_suggestion(session: AsyncSession, entry: OutboxMessage) -> TrainingSample | None:
    row = await session.get(GeneratedResponse, entry.response_id)
    if row is None:
        return None
    taken = await session.execute(
        select(TrainingSample.id).where(TrainingSample.response_id == row.id)
    )
    if taken.first() is not None:
        return None
    if row.status is ResponseStatus.EDITED:
        source, quality = SampleSource.EDITED, EDITED_QUALITY
    else:
        index = entry.candidate_index or 0
        chosen = row.candidates[index] if index < len(row.candidates) else {}
        source, quality = SampleSource.ACCEPTED, accepted_quality(chosen)
    return TrainingSample(
        input_context=row.prompt,
        expected_output=entry.text,
        source=source,
        quality=quality,
        response_id=row.id,
        conversation_id=entry.conversation_id,
    )


async def _manual(session: AsyncSession, entry: OutboxMessage) -> TrainingSample | None:
    """Free text answers the newest text message before it was queued, if that was theirs."""
    before = (
        await session.execute(
            select(Message.id, Message.direction)
            .where(
                Message.conversation_id == entry.conversation_id,
                Message.sent_at <= entry.created_at,
                has_text(),
            )
            .order_by(Message.sent_at.desc(), Message.id.desc())
            .limit(1)
        )
    ).first()
    if before is None or before.direction is not Direction.INCOMING:
        return None
    context = await build_context(session, before.id)
    return TrainingSample(
        input_context=context.prompt,
        expected_output=entry.text,
        source=SampleSource.MANUAL,
        quality=MANUAL_QUALITY,
        conversation_id=entry.conversation_id,
    )
