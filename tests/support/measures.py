"""Rows for the online measures' tests: a conversation's messages, suggestions with their
outbox entries and replied samples, stored directly."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from convassist.server.models import (
    Conversation,
    Direction,
    GeneratedResponse,
    Message,
    MessageType,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
    SampleSource,
    TrainingSample,
)

BASE = "smollm2-135m-instruct@b179c9523d0e"
LORA = f"{BASE}+lora-one"
CANDIDATES = [
    {"text": "See you at 7", "confidence": 0.9},
    {"text": "Sounds good", "confidence": 0.5},
    {"text": "On my way", "confidence": 0.2},
]


class Rows:
    """Builds one conversation's messages, suggestions, outbox entries and samples."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.conversation = Conversation(id=uuid.uuid4(), imessage_id=f"iMessage;-;{uuid.uuid4()}")
        # Stored in this order (no relationships tell the session which rows come first).
        self.tiers: list[list[Any]] = [[self.conversation], [], [], []]

    async def save(self) -> None:
        for tier in self.tiers:
            self.session.add_all(tier)
            await self.session.flush()
        await self.session.commit()

    def message(
        self,
        at: datetime,
        *,
        direction: Direction = Direction.INCOMING,
        kind: MessageType = MessageType.TEXT,
    ) -> Message:
        row = Message(
            id=uuid.uuid4(),
            conversation_id=self.conversation.id,
            imessage_guid=str(uuid.uuid4()),
            direction=direction,
            message_type=kind,
            text="hi",
            sent_at=at,
        )
        self.tiers[1].append(row)
        return row

    def suggestion(
        self,
        message: Message,
        status: ResponseStatus = ResponseStatus.COMPLETED,
        *,
        version: str | None = BASE,
        after: timedelta = timedelta(seconds=5),
        chosen: int | None = None,
        edited: str | None = None,
        outbox: tuple[OutboxStatus, int | None, str] | None = None,
        replied: bool = False,
    ) -> GeneratedResponse:
        row = GeneratedResponse(
            id=uuid.uuid4(),
            message_id=message.id,
            prompt="Them: hi\nMe:",
            candidates=CANDIDATES if status is not ResponseStatus.FAILED else [],
            status=status,
            model_version=version,
            chosen_index=chosen,
            edited_response=edited,
            created_at=message.sent_at + after,
        )
        self.tiers[2].append(row)
        if outbox is not None:
            state, index, text = outbox
            self.tiers[3].append(
                OutboxMessage(
                    conversation_id=self.conversation.id,
                    text=text,
                    response_id=row.id,
                    candidate_index=index,
                    status=state,
                    expires_at=row.created_at + timedelta(minutes=10),
                )
            )
        if replied:
            self.tiers[3].append(
                TrainingSample(
                    input_context="Them: hi\nMe:",
                    expected_output="typed on the phone",
                    source=SampleSource.REPLIED,
                    quality=1.0,
                    response_id=row.id,
                )
            )
        return row
