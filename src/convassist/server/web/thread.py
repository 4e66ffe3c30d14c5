"""A page of messages laid out like Messages: day and time breaks, runs of bubbles.

Bubbles from one sender within a few minutes of each other form a run (tight spacing, one
tail, the sender's name once in group chats). A day break opens every page and every new
day; a time break marks a pause of an hour or more.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from convassist.server.conversations.schemas import ConversationOut, MessageOut
from convassist.server.models import Direction, MessageType
from convassist.server.responses.service import ResponseView
from convassist.server.web.formatting import Clock, iso

RUN_GAP = timedelta(minutes=5)
TIME_BREAK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Break:
    kind: ClassVar[str] = "break"
    label: str
    day: str | None = None  # set on day breaks: the local date, to merge across pages


KIND_LABELS = {
    MessageType.ATTACHMENT: "Attachment",
    MessageType.STICKER: "Sticker",
    MessageType.APP: "App message",
}


@dataclass(slots=True)
class Bubble:
    """One message, its strings worked out here (much cheaper than in the template)."""

    kind: ClassVar[str] = "bubble"
    message: MessageOut
    clock: Clock
    mid: str  # the message id, as text
    outgoing: bool
    who: str  # "You" or the sender's name, for unsent marks, reactions, screen readers
    variant: str  # "bubble", "unsent" or "reaction"
    sender: str | None  # shown above the first bubble of a run in group chats
    run_end: bool = True
    suggestable: bool = False
    latest: bool = False  # the newest message one can reply to: its button is always shown
    suggestions: list[ResponseView] = field(default_factory=list)

    @property
    def css(self) -> str:
        side = "msg msg-out" if self.outgoing else "msg msg-in"
        return side if self.run_end else f"{side} msg-cont"

    @property
    def kind_label(self) -> str | None:
        return KIND_LABELS.get(self.message.message_type)

    @property
    def time(self) -> str:
        return self.clock.time(self.message.sent_at)

    @property
    def stamp(self) -> str:
        """Full date and time, for the tooltip."""
        return self.clock.full(self.message.sent_at)

    @property
    def iso(self) -> str:
        return iso(self.message.sent_at)

    @property
    def edited(self) -> str | None:
        edited_at = self.message.edited_at
        return None if edited_at is None else f"Edited {self.clock.full(edited_at)}"


def can_suggest(message: MessageOut) -> bool:
    """Suggestions answer incoming messages that say something."""
    return (
        message.direction is Direction.INCOMING
        and not message.is_unsent
        and message.message_type is not MessageType.REACTION
        and bool((message.text or "").strip())
    )


def people(conversation: ConversationOut) -> str:
    """Who is in it: the handle of a one-to-one chat, the first names of a group."""
    names = [p.display_name or p.handle for p in conversation.participants]
    if not conversation.is_group:
        handle = conversation.participants[0].handle if conversation.participants else ""
        return "" if handle == conversation.display_name else handle
    shown = ", ".join(names[:3])
    return f"{shown} and {len(names) - 3} more" if len(names) > 3 else shown


def initials(name: str) -> str:
    """Up to two letters for an avatar (`#` for a phone number)."""
    words = [w for w in name.replace(",", " ").split() if w[:1].isalpha()]
    return "".join(w[0] for w in words[:2]).upper() or "#"


def sender_label(message: MessageOut) -> str:
    return message.sender_name or message.sender_id or "Unknown sender"


def layout(
    messages: Sequence[MessageOut],
    *,
    is_group: bool,
    clock: Clock,
    suggestions: dict[uuid.UUID, list[ResponseView]],
    newest: bool,
) -> list[Break | Bubble]:
    """The rows of one page (messages oldest first); `newest` for the thread's last page."""
    rows: list[Break | Bubble] = []
    run: Bubble | None = None  # the bubble the next message may continue
    last: MessageOut | None = None
    last_day = ""
    for message in messages:
        day = clock.day_key(message.sent_at)
        if last is None or day != last_day:
            rows.append(Break(clock.stamp(message.sent_at), day))
            run = None
        elif message.sent_at - last.sent_at >= TIME_BREAK:
            rows.append(Break(clock.time(message.sent_at)))
            run = None
        last, last_day = message, day
        outgoing = message.direction is Direction.OUTGOING
        same_run = (
            run is not None
            and run.outgoing == outgoing
            and run.message.sender_id == message.sender_id
            and message.sent_at - run.message.sent_at < RUN_GAP
        )
        if run is not None and same_run:
            run.run_end = False
        who = "You" if outgoing else sender_label(message)
        if message.is_unsent:
            variant = "unsent"
        elif message.message_type is MessageType.REACTION:
            variant = "reaction"
        else:
            variant = "bubble"
        run = Bubble(
            message=message,
            clock=clock,
            mid=str(message.id),
            outgoing=outgoing,
            who=who,
            variant=variant,
            sender=who if is_group and not outgoing and not same_run else None,
            suggestable=can_suggest(message),
            suggestions=suggestions.get(message.id, []),
        )
        rows.append(run)
    if newest:
        replies = [r for r in rows if isinstance(r, Bubble) and r.suggestable]
        if replies:
            replies[-1].latest = True
    return rows
