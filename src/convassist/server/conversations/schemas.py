from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, model_validator

from convassist.core.schemas import APIModel, RequestModel
from convassist.server.models import Direction, MessageType


class ParticipantOut(APIModel):
    handle: str
    display_name: str | None = Field(description="The contact's name for this handle, if known.")
    contact_id: uuid.UUID | None = Field(None, description="The contact, if one is known.")
    training: bool = Field(True, description="The contact's training switch (true: no contact).")
    suggestions: bool = Field(True, description="The contact's suggestions switch.")


class ConsentUpdate(RequestModel):
    """The owner's switches for a conversation or a contact; give one or both."""

    training: bool | None = Field(None, description="Learn from it (false: leave it out).")
    suggestions: bool | None = Field(None, description="Suggest replies in it.")

    @model_validator(mode="after")
    def _something(self) -> ConsentUpdate:
        if self.training is None and self.suggestions is None:
            raise ValueError("give training, suggestions or both (true or false)")
        return self


class TextSpan(APIModel):
    start: int
    end: int = Field(description="Exclusive.")


class MessageMatchOut(APIModel):
    """The newest message of a conversation whose text matches the search."""

    message_id: uuid.UUID
    sent_at: datetime
    excerpt: str = Field(description="About 140 characters of its text around the first match.")
    highlights: list[TextSpan] = Field(
        description="Where the searched words are in `excerpt` (character offsets)."
    )


class ConversationOut(APIModel):
    id: uuid.UUID
    imessage_id: str = Field(description="The chat guid from chat.db.")
    display_name: str = Field(
        description="The chat's name, else its participants' contact names (or handles)."
    )
    is_group: bool
    participants: list[ParticipantOut]
    message_count: int
    last_message_at: datetime | None
    service: str | None
    awaiting_reply_since: datetime | None = Field(
        description="When the message waiting for your reply arrived; null when none waits."
    )
    training: bool = Field(description="This conversation's own training switch.")
    suggestions: bool = Field(description="This conversation's own suggestions switch.")
    learning: bool = Field(
        description="Its switch and its contacts' allow training (a group chat also needs "
        "CONVASSIST_TRAIN_ON_GROUPS)."
    )
    suggesting: bool = Field(
        description="Whether replies are suggested in it: its switch and its contacts'."
    )
    match: MessageMatchOut | None = Field(
        default=None,
        description="With `q`: the newest message matching it; null when only the name matched.",
    )


class ConversationPage(APIModel):
    items: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class MessageOut(APIModel):
    id: uuid.UUID
    imessage_guid: str
    sender_id: str | None
    sender_name: str | None = Field(description="The sender's contact name, if known.")
    direction: Direction
    message_type: MessageType
    text: str | None
    sent_at: datetime
    edited_at: datetime | None
    is_unsent: bool
    reply_to_guid: str | None


class MessagePage(APIModel):
    items: list[MessageOut] = Field(description="Oldest first within the page.")
    next_cursor: str | None = Field(
        description="Pass as `before` for the page of older messages; null when none are left."
    )


class ContextOut(APIModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    prompt: str = Field(description="The seed prompt format, ending with `Me:`.")
    message_count: int = Field(description="How many messages the prompt contains.")
