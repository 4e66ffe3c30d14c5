"""Which stored messages say something: the one SQL predicate for it."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_

from convassist.server.models import Message, MessageType


def has_text() -> ColumnElement[bool]:
    """Messages a prompt shows as lines: with text, neither a reaction nor unsent (an
    attachment without a caption has no text)."""
    return and_(
        Message.text.is_not(None),
        Message.text != "",
        Message.message_type != MessageType.REACTION,
        Message.is_unsent.is_(False),
    )
