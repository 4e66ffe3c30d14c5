from __future__ import annotations

import uuid

from pydantic import Field

from convassist.core.schemas import APIModel


class ContactOut(APIModel):
    id: uuid.UUID
    apple_id: str = Field(description="The iMessage handle: a phone number or an email address.")
    display_name: str | None
    training: bool = Field(description="Learn from conversations with this person.")
    suggestions: bool = Field(description="Suggest replies in conversations with this person.")


class ContactPage(APIModel):
    items: list[ContactOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")
