"""The owner's stock replies for a suggestion request (`ownReplies`; see `core/replies.py`).

Tallied in SQL from the short messages the owner sent in one-to-one conversations the model
may learn from (`conversations/consent.py`: excluding a contact or a conversation from
training takes its messages out of the tally at once), grouped by exact text; `core.replies`
merges spellings and applies its thresholds.
"""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.replies import MAX_CHARS, Tally, frequent_replies
from convassist.server.conversations.consent import excluded_ids
from convassist.server.models import Direction, Message

TALLIED_TEXTS = 500
"""The most used exact texts read (ample: only `core.replies.LIMIT` are offered)."""


async def own_replies(session: AsyncSession) -> list[str]:
    """The owner's most used short replies, most used first."""
    uses = func.count(Message.id)
    rows = await session.execute(
        select(Message.text, uses, func.count(distinct(Message.conversation_id)))
        .where(
            Message.direction == Direction.OUTGOING,
            Message.text.is_not(None),
            func.length(Message.text) <= MAX_CHARS,
            Message.conversation_id.not_in(excluded_ids("training", groups=False)),
        )
        .group_by(Message.text)
        .order_by(uses.desc())
        .limit(TALLIED_TEXTS)
    )
    return frequent_replies(Tally(text, count, where) for text, count, where in rows if text)
