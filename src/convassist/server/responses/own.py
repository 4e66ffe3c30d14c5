"""The owner's stock replies for a suggestion request (`ownReplies`; see `core/replies.py`).

Tallied in SQL from the short messages the owner sent in one-to-one conversations the model
may learn from (`conversations/consent.py`: excluding a contact or a conversation from
training takes its messages out of the tally at once), grouped by exact text; `core.replies`
merges spellings and applies its thresholds.

The tally is kept per database until something it reads changes (`own_changes.py`: the
owner's messages, consent, deletions) or it is `MAX_AGE` old, so a suggestion request
does not pay for a grouped scan of the owner's history each time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.replies import MAX_CHARS, Tally, frequent_replies
from convassist.server.conversations.consent import excluded_ids
from convassist.server.models import Direction, Message
from convassist.server.responses.own_changes import changing, revision

TALLIED_TEXTS = 500
"""The most used exact texts read (ample: only `core.replies.LIMIT` are offered)."""
MAX_AGE = 300.0
"""Seconds a tally is kept at most: catches writers in other processes (`convassist demo`)."""


@dataclass(frozen=True)
class _Kept:
    revision: int
    at: float
    replies: tuple[str, ...]


_kept: WeakKeyDictionary[Engine, _Kept] = WeakKeyDictionary()


async def tally_own_replies(session: AsyncSession) -> list[str]:
    """The owner's most used short replies, most used first, read from the database now."""
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


async def own_replies(session: AsyncSession) -> list[str]:
    """`tally_own_replies`, kept while nothing it reads has changed.

    A session with an uncommitted change of its own reads afresh and keeps nothing."""
    if changing(session):
        return await tally_own_replies(session)
    engine = session.sync_session.get_bind().engine
    current = revision(engine)  # before reading: a change committed meanwhile voids it
    kept = _kept.get(engine)
    now = time.monotonic()
    if kept is not None and kept.revision == current and now - kept.at < MAX_AGE:
        return list(kept.replies)
    replies = await tally_own_replies(session)
    _kept[engine] = _Kept(current, now, tuple(replies))
    return replies
