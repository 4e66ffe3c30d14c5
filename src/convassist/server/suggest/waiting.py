"""Which message waits on the owner's reply: `Conversation.awaiting_reply_since`, kept by sync.

After a batch is stored, in the sync's transaction, `refresh` walks the conversation's newest
messages (reactions left out) from the (conversation_id, sent_at, id) index:

- an outgoing message first: the owner replied, nothing waits (NULL);
- an incoming one that passes the gate first: it waits, but the column is set only when this
  batch inserted it and it is recent (`SuggestPolicy.max_age`). A message known before never
  turns NULL into a time, so a dismissed conversation stays dismissed on a re-sync, and
  history never fills the inbox (a conversation still waiting follows it, though: its newer
  message was unsent);
- neither within `WALK` messages: nothing waits.

It also settles the suggestions a batch makes moot: a newer waiting message retires those of
older messages, and an outgoing message the batch inserted retires those it answered. When
that reply beat a pending automatic suggestion, and it is not a send the outbox confirmed in
this batch (the outbox makes its own sample), the reply becomes a `replied` training sample.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.logging import get_logger
from convassist.server.models import (
    Conversation,
    Direction,
    GeneratedResponse,
    Message,
    MessageType,
    ResponseStatus,
    SampleSource,
    TrainingSample,
)
from convassist.server.suggest.gate import Skip, SuggestPolicy, check
from convassist.server.sync.schemas import SyncMessage

log = get_logger(__name__)

WALK = 20
"""How many of the newest messages to look at for the waiting one."""
REPLIED_QUALITY = 1.0
UNKNOWN: Any = object()
"""`awaiting_reply_since` before the refresh, when the walk found no message to read it from."""
# Suggestions that are still on offer (not acted on): a reply from the phone beats them.
ON_OFFER = (ResponseStatus.GENERATING, ResponseStatus.COMPLETED)


@dataclass(frozen=True, slots=True)
class _Pending:
    id: uuid.UUID
    message_id: uuid.UUID
    message_sent_at: datetime
    prompt: str
    auto: bool
    status: ResponseStatus


async def refresh(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    is_group: bool,
    new: Sequence[SyncMessage],
    policy: SuggestPolicy,
    now: datetime,
    outbox_sends: Collection[str] = (),
) -> uuid.UUID | None:
    """Keep the conversation's waiting state after a batch; the id of a message that waits
    because of this batch (to queue suggestions for), else None. See the module docstring.

    One query in the usual case (a history batch: nothing waited, nothing waits)."""
    rows = await _newest(session, conversation_id)
    before = rows[0].awaiting_reply_since if rows else UNKNOWN
    target = await _waiting(session, rows, conversation_id, is_group, policy)
    newly = None
    if target is None:
        after = None
    elif target.imessage_guid in {m.imessage_guid for m in new} and policy.fresh(
        target.sent_at, now
    ):
        newly, after = target, target.sent_at
    else:
        # Known before: a dismissed conversation stays dismissed; a waiting one follows its
        # message (the one it waited on was unsent or edited into a code: an older one waits).
        after = None if before is None else target.sent_at
    if after != before:
        stmt = update(Conversation).where(Conversation.id == conversation_id)
        if before is UNKNOWN:
            stmt = stmt.where(Conversation.awaiting_reply_since.is_distinct_from(after))
        await session.execute(stmt.values(awaiting_reply_since=after))
        log.info(
            "waiting_changed",
            conversation_id=str(conversation_id),
            waiting_message_id=str(newly.id) if newly is not None else None,
        )
    replies = sorted(
        (
            m
            for m in new
            if m.direction is Direction.OUTGOING and m.message_type is not MessageType.REACTION
        ),
        key=lambda m: m.sent_at,
    )
    # Suggestions on offer belong to waiting conversations (a reply, a dismissal or a newer
    # message retired the others), so a batch for one that did not wait settles nothing.
    if newly is not None or (replies and before is not None):
        await _settle_suggestions(session, conversation_id, newly, replies, now, outbox_sends)
    return newly.id if newly is not None else None


async def _newest(session: AsyncSession, conversation_id: uuid.UUID) -> list[Row[Any]]:
    """The conversation's newest `WALK` messages (no reactions), newest first, each with the
    conversation's `awaiting_reply_since` as it is before this refresh."""
    result = await session.execute(
        select(
            Message.id,
            Message.imessage_guid,
            Message.direction,
            Message.message_type,
            Message.text,
            Message.sender_id,
            Message.is_unsent,
            Message.sent_at,
            Conversation.awaiting_reply_since,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.message_type != MessageType.REACTION,
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(WALK)
    )
    return cast(list[Row[Any]], list(result))


async def _waiting(
    session: AsyncSession,
    rows: Sequence[Row[Any]],
    conversation_id: uuid.UUID,
    is_group: bool,
    policy: SuggestPolicy,
) -> Row[Any] | None:
    """The newest incoming message that passes the gate with no outgoing one after it."""
    participates: bool | None = None
    for row in rows:
        if row.direction is Direction.OUTGOING:
            return None
        reason = check(row, is_group=is_group, owner_participates=True, policy=policy)
        if reason is None and is_group and policy.groups == "participating":
            if participates is None:
                participates = await _owner_writes(session, conversation_id)
            if not participates:
                reason = Skip.GROUP_NOT_PARTICIPATING
        if reason is None:
            return row
    return None


async def _owner_writes(session: AsyncSession, conversation_id: uuid.UUID) -> bool:
    """Whether the owner has ever written in the conversation (takes part in the group)."""
    query = select(
        exists().where(
            Message.conversation_id == conversation_id,
            Message.direction == Direction.OUTGOING,
        )
    )
    return bool((await session.execute(query)).scalar())


async def _settle_suggestions(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    newly: Row[Any] | None,
    replies: Sequence[SyncMessage],
    now: datetime,
    outbox_sends: Collection[str],
) -> None:
    """Retire the suggestions this batch made moot; a reply that beat one becomes a sample,
    unless it is an outbox entry's send (`outbox_sends`: the guids the outbox just confirmed;
    the outbox makes its own sample)."""
    pending = await _pending(session, conversation_id)
    retire: set[uuid.UUID] = set()
    used: set[str] = set()
    for suggestion in sorted(pending, key=lambda p: p.message_sent_at, reverse=True):
        if (
            newly is not None
            and suggestion.message_id != newly.id
            and suggestion.message_sent_at <= newly.sent_at
        ):
            retire.add(suggestion.id)
        reply = next((r for r in replies if r.sent_at > suggestion.message_sent_at), None)
        if reply is None:
            continue
        retire.add(suggestion.id)
        text = (reply.text or "").strip()
        if not (suggestion.auto and suggestion.status in ON_OFFER and text):
            continue
        if reply.imessage_guid in used or reply.imessage_guid in outbox_sends:
            continue
        used.add(reply.imessage_guid)
        session.add(
            TrainingSample(
                input_context=suggestion.prompt,
                expected_output=text,
                source=SampleSource.REPLIED,
                quality=REPLIED_QUALITY,
                response_id=suggestion.id,
                conversation_id=conversation_id,
            )
        )
        log.info("replied_sample", response_id=str(suggestion.id))
    if retire:
        await session.execute(
            update(GeneratedResponse)
            .where(GeneratedResponse.id.in_(retire), GeneratedResponse.retired_at.is_(None))
            .values(retired_at=now)
            .execution_options(synchronize_session=False)
        )


async def _pending(session: AsyncSession, conversation_id: uuid.UUID) -> list[_Pending]:
    """The conversation's suggestions not yet retired."""
    rows = await session.execute(
        select(
            GeneratedResponse.id,
            GeneratedResponse.message_id,
            Message.sent_at,
            GeneratedResponse.prompt,
            GeneratedResponse.auto,
            GeneratedResponse.status,
        )
        .join(Message, Message.id == GeneratedResponse.message_id)
        .where(
            Message.conversation_id == conversation_id,
            GeneratedResponse.retired_at.is_(None),
        )
    )
    return [_Pending(*row) for row in rows]
