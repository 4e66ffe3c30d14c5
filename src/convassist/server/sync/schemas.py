from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, field_validator, model_validator

from convassist.core.schemas import APIModel, RequestModel
from convassist.server.models import Direction, MessageType

MAX_PARTICIPANTS = 100
MAX_CONTACTS = 5000


def normalize_handle(value: str) -> str:
    """Trim an iMessage handle; emails compare lowercase (phones arrive in E.164)."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value.lower() if "@" in value else value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Handle = Annotated[
    str, Field(max_length=320), AfterValidator(_no_nul), AfterValidator(normalize_handle)
]
Guid = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
Service = Annotated[str, Field(max_length=32), AfterValidator(_no_nul)]
Name = Annotated[str, Field(max_length=300), AfterValidator(_no_nul)]


class SyncMessage(RequestModel):
    imessage_guid: Guid
    sender_id: Handle | None = Field(None, description="The sender's handle; null if outgoing.")
    direction: Direction
    message_type: MessageType = MessageType.TEXT
    text: str | None = Field(
        None, description="The message text (NUL characters are removed); null if none."
    )
    sent_at: AwareDatetime
    edited_at: AwareDatetime | None = None
    is_unsent: bool = False
    reply_to_guid: Guid | None = None
    service: Service | None = None

    @field_validator("text")
    @classmethod
    def _strip_nul(cls, value: str | None) -> str | None:
        return value.replace("\x00", "") if value is not None and "\x00" in value else value


class SyncMessagesRequest(RequestModel):
    conversation_id: Annotated[
        str, Field(min_length=1, max_length=300), AfterValidator(_no_nul)
    ] = Field(description="The chat's guid in chat.db; identifies the conversation.")
    display_name: Name | None = None
    is_group: bool = False
    service: Service | None = None
    participants: list[Handle] = Field(default_factory=list, max_length=MAX_PARTICIPANTS)
    messages: list[SyncMessage]

    @field_validator("participants")
    @classmethod
    def _dedupe_participants(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _unique_guids(self) -> SyncMessagesRequest:
        seen: set[str] = set()
        for message in self.messages:
            if message.imessage_guid in seen:
                raise ValueError(f"duplicate imessageGuid in batch: {message.imessage_guid}")
            seen.add(message.imessage_guid)
        return self


class SyncMessagesResponse(APIModel):
    inserted: int = Field(description="Messages stored for the first time.")
    updated: int = Field(description="Stored messages whose fields changed (edited, unsent…).")
    unchanged: int = Field(description="Messages already stored exactly like this.")
    skipped: int = Field(
        description="Messages whose guid is stored under another conversation (left as is)."
    )
    conversation_id: uuid.UUID = Field(description="The server's id for the conversation.")
    message_count: int
    last_message_at: datetime | None


class SyncContact(RequestModel):
    apple_id: Handle = Field(description="The iMessage handle: E.164 phone or lowercase email.")
    display_name: Name | None = None
    phone_number: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    email: Annotated[str, Field(max_length=320), AfterValidator(_no_nul)] | None = None
    avatar_hash: Annotated[str, Field(max_length=128), AfterValidator(_no_nul)] | None = None


class SyncContactsRequest(RequestModel):
    contacts: list[SyncContact]

    @model_validator(mode="after")
    def _unique_handles(self) -> SyncContactsRequest:
        seen: set[str] = set()
        for contact in self.contacts:
            if contact.apple_id in seen:
                raise ValueError(f"duplicate appleId in batch: {contact.apple_id}")
            seen.add(contact.apple_id)
        return self


class SyncContactsResponse(APIModel):
    inserted: int
    updated: int
    unchanged: int


class ConversationSyncState(APIModel):
    conversation_id: str = Field(description="The chat guid the agent asked about.")
    id: uuid.UUID
    message_count: int
    last_message_at: datetime | None
    last_message_guid: str | None = Field(description="The newest stored message's guid.")


class SyncStatusResponse(APIModel):
    device_id: uuid.UUID
    last_sync_at: datetime | None = Field(description="This device's last successful sync.")
    messages_synced_by_device: int = Field(description="Messages this device inserted, ever.")
    conversation_count: int
    message_count: int
    contact_count: int
    latest_message_at: datetime | None = Field(description="Newest message stored, any device.")
    server_time: datetime
    max_batch: int = Field(description="Most messages accepted in one sync request.")
    max_contacts: int = Field(description="Most contacts accepted in one request.")
    max_body_bytes: int = Field(description="Largest accepted request body.")
    conversation: ConversationSyncState | None = Field(
        None, description="With ?conversationId=: what the server holds for that chat."
    )
