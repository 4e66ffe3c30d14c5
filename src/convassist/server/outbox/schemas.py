"""The outbox's API bodies: the owner queues a reply; a device claims, sends and reports it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from convassist.core.schemas import APIModel, RequestModel
from convassist.server.models import OutboxStatus

# iMessage takes far longer texts, but a reply this long is not a reply.
MAX_TEXT = 5000


class OutboxRequest(RequestModel):
    """A reply to send: free text, or a suggestion (`responseId`) as chosen or edited."""

    conversation_id: uuid.UUID
    text: str = Field(max_length=MAX_TEXT, description="What to send (trimmed; not empty).")
    response_id: uuid.UUID | None = Field(
        None, description="The suggestion this reply comes from; it becomes accepted or edited."
    )
    candidate_index: int | None = Field(
        None, ge=0, le=4, description="Which of its candidates was chosen (default 0)."
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text must not be empty")
        return value

    @model_validator(mode="after")
    def _index_needs_response(self) -> OutboxRequest:
        if self.candidate_index is not None and self.response_id is None:
            raise ValueError("candidateIndex is only for a reply with responseId")
        return self


class OutboxOut(APIModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    text: str
    response_id: uuid.UUID | None
    candidate_index: int | None
    status: OutboxStatus
    created_at: datetime
    expires_at: datetime
    device_id: uuid.UUID | None = Field(description="The device that claimed it.")
    claimed_at: datetime | None
    attempts: int
    sent_at: datetime | None
    confirmed_at: datetime | None
    error: str | None
    message_guid: str | None = Field(description="The sent message's GUID in Messages.")


class OutboxPage(APIModel):
    items: list[OutboxOut]
    next_cursor: str | None


class OutboxItem(APIModel):
    """One reply a device has claimed and should send now."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    chat_guid: str = Field(description="The chat's guid in Messages (address the send to it).")
    is_group: bool
    text: str
    expires_at: datetime
    expires_in_seconds: int = Field(
        description="Seconds left to send it, by the server's clock; never send after them."
    )
    attempt: int = Field(description="1 for the first claim; more when re-offered to this device.")


class OutboxClaim(APIModel):
    items: list[OutboxItem]
    poll_after_seconds: int


class SendResult(RequestModel):
    """The device's report of one send."""

    status: Literal["sent", "failed"]
    error: str | None = Field(None, min_length=1, max_length=1000)
    message_guid: str | None = Field(None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _fields_match_status(self) -> SendResult:
        if self.status == "sent" and self.error is not None:
            raise ValueError("error is only for status 'failed'")
        if self.status == "failed" and self.message_guid is not None:
            raise ValueError("messageGuid is only for status 'sent'")
        return self
