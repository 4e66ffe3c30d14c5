from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from convassist.core.schemas import APIModel
from convassist.server.conversations.schemas import ConversationOut, MessageOut
from convassist.server.models import OutboxStatus, ResponseStatus
from convassist.server.responses.schemas import CandidateOut


class InboxSuggestionOut(APIModel):
    id: uuid.UUID
    status: ResponseStatus = Field(
        description="`generating` while the ML service works; `completed` when ready to send."
    )
    candidates: list[CandidateOut] = Field(description="Best first.")
    auto: bool = Field(description="Queued by the server when the message synced.")
    model_version: str | None
    error: str | None
    created_at: datetime


class InboxSendingOut(APIModel):
    """A reply the owner queued lately that no sync has confirmed yet."""

    id: uuid.UUID
    conversation: ConversationOut
    status: OutboxStatus
    text: str
    device_name: str | None = Field(description="The device that claimed (or sent) it.")
    error: str | None
    created_at: datetime
    expires_at: datetime


class InboxItemOut(APIModel):
    conversation: ConversationOut
    awaiting_reply_since: datetime
    waiting_message_id: uuid.UUID | None = Field(
        description="The incoming message that waits for the reply."
    )
    messages: list[MessageOut] = Field(description="The last few messages, oldest first.")
    suggestion: InboxSuggestionOut | None = Field(
        description="The newest suggestion for the waiting message that is not retired."
    )


class InboxPage(APIModel):
    items: list[InboxItemOut] = Field(description="Newest waiting first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")
    sending: list[InboxSendingOut] = Field(
        description="On the first page: replies queued in the last 30 minutes that no sync has "
        "confirmed yet (queued, sending, sent, failed or expired), newest first."
    )


class DismissOut(APIModel):
    conversation_id: uuid.UUID
    was_waiting: bool = Field(description="Whether the conversation was waiting for a reply.")
    retired_suggestions: int = Field(description="Suggestions retired by the dismissal.")
