"""Cold start from history: the owner's own past replies become training samples.

For every conversation, each outgoing text message that answers an incoming one (the first
message of an owner turn) becomes a sample: the `max_history` text messages before it,
rendered by the one prompt renderer, and the reply. Reactions, unsent messages and
attachments without text are skipped, exactly as when building a prompt for a suggestion.
Pairs seen twice (same context, same reply) count once.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.prompt import ChatLine, Speaker, clean_text, render_prompt
from convassist.server.conversations.consent import allowed
from convassist.server.messages import has_text
from convassist.server.models import Contact, Conversation, Direction, Message

HISTORY_QUALITY = 1.0
"""The owner's own words: as good a target as an edited suggestion."""


@dataclass(frozen=True)
class HistorySample:
    conversation_id: uuid.UUID
    prompt: str
    completion: str


async def history_samples(
    session: AsyncSession, *, max_history: int = 10, groups: bool = False
) -> AsyncIterator[HistorySample]:
    """Stream the samples, conversation by conversation, in time order, of the conversations
    the owner lets the model learn from (group chats only with `groups`)."""
    query = (
        select(
            Message.conversation_id,
            Conversation.is_group,
            Message.direction,
            Message.sender_id,
            Message.text,
            Contact.display_name,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .outerjoin(Contact, Contact.apple_id == Message.sender_id)
        .where(has_text(), allowed("training", groups=groups))
        .order_by(Message.conversation_id, Message.sent_at, Message.id)
        .execution_options(yield_per=2000)
    )
    seen: set[tuple[str, str]] = set()
    window: deque[ChatLine] = deque(maxlen=max_history)
    current: uuid.UUID | None = None
    previous_incoming = False
    rows = await session.stream(query)
    async for conversation_id, is_group, direction, sender_id, text, contact_name in rows:
        if conversation_id != current:
            current, previous_incoming = conversation_id, False
            window.clear()
        reply = clean_text(text or "")
        if not reply:
            continue
        outgoing = direction is Direction.OUTGOING
        if outgoing and previous_incoming:
            prompt = render_prompt(window, group=is_group)
            if (prompt, reply) not in seen:
                seen.add((prompt, reply))
                yield HistorySample(conversation_id, prompt, reply)
        speaker: Speaker = "me" if outgoing else "them"
        window.append(ChatLine(speaker=speaker, text=reply, name=contact_name or sender_id))
        previous_incoming = not outgoing
