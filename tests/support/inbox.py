"""Setting up inbox states directly in the database, for tests: a conversation waiting
since a time, suggestions in any state (and as stored), a message's id by its GUID."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from convassist.server.models import Conversation, GeneratedResponse, Message, ResponseStatus


async def set_waiting(app: Any, conversation_id: str, since: datetime | None) -> None:
    """The conversation waits since `since` (None: not waiting); suggestions sync may have
    queued are deleted, so that a test sees only its own."""
    async with app.state.sessionmaker() as session:
        await session.execute(
            sa.update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation_id))
            .values(awaiting_reply_since=since)
        )
        await session.execute(sa.delete(GeneratedResponse))
        await session.commit()


async def message_id(app: Any, guid: str) -> uuid.UUID:
    async with app.state.sessionmaker() as session:
        found = await session.execute(sa.select(Message.id).where(Message.imessage_guid == guid))
        found_id: uuid.UUID = found.scalar_one()
        return found_id


async def stored_suggestion(app: Any, response_id: uuid.UUID) -> GeneratedResponse:
    """The suggestion row as stored now."""
    async with app.state.sessionmaker() as session:
        row = await session.get(GeneratedResponse, response_id)
        assert row is not None
        return row


async def add_suggestion(
    app: Any,
    message: uuid.UUID,
    *,
    texts: list[str],
    created_at: datetime,
    status: ResponseStatus = ResponseStatus.COMPLETED,
    retired_at: datetime | None = None,
    job: str | None = None,
    auto: bool = True,
) -> uuid.UUID:
    """A suggestion queued by the server (`auto`; a message has one live automatic suggestion
    at most, others are the owner's), confidences 0.9, 0.8, … best first."""
    async with app.state.sessionmaker() as session:
        row = GeneratedResponse(
            message_id=message,
            prompt="them: hi\nMe:",
            status=status,
            candidates=[{"text": t, "confidence": 0.9 - i / 10} for i, t in enumerate(texts)],
            response=texts[0] if texts else None,
            auto=auto,
            ml_job_id=job,
            created_at=created_at,
            retired_at=retired_at,
        )
        session.add(row)
        await session.commit()
        return row.id
