"""The suggestion gate: whether an incoming message deserves reply suggestions, and why not.

Pure and fast (a few regular expressions, no I/O): sync runs it on the newest messages of
every batch, and `bench/trigger_share.py` on whole corpora. Like Smart Reply's triggering
model it leaves out what nobody answers with a sentence: reactions (also the text tapbacks
older phones and SMS send), attachments without a caption, one-time codes, short-code and
alphanumeric senders, and group chats the owner does not write in (configurable).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from convassist.core.settings import ServerSettings
from convassist.server.models import Direction, MessageType

GroupPolicy = Literal["never", "participating", "always"]


class Skip(enum.StrEnum):
    """Why a message gets no suggestions."""

    OUTGOING = "outgoing"
    UNSENT = "unsent"
    REACTION = "reaction"
    ATTACHMENT = "attachment"
    EMPTY = "empty"
    EVENT = "chat_event"
    TAPBACK = "tapback"
    CODE = "verification_code"
    SHORT_CODE = "short_code_sender"
    GROUP = "group"
    GROUP_NOT_PARTICIPATING = "group_not_participating"


class GateMessage(Protocol):
    """What the gate reads of a message (a `Message` row, a `SyncMessage`, a bench tuple)."""

    @property
    def direction(self) -> Direction: ...
    @property
    def message_type(self) -> MessageType: ...
    @property
    def text(self) -> str | None: ...
    @property
    def sender_id(self) -> str | None: ...
    @property
    def is_unsent(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SuggestPolicy:
    """The gate's switches (`CONVASSIST_AUTO_SUGGEST`, `_SUGGEST_GROUPS`, `_MAX_AGE_HOURS`)."""

    auto: bool = True
    groups: GroupPolicy = "participating"
    max_age: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> SuggestPolicy:
        return cls(
            auto=settings.auto_suggest,
            groups=settings.suggest_groups,
            max_age=timedelta(hours=settings.suggest_max_age_hours),
        )

    def fresh(self, sent_at: datetime, now: datetime) -> bool:
        """Whether a message is recent enough to wait on a reply (history is not)."""
        return sent_at >= now - self.max_age


# Tapbacks as text: iOS to SMS/older devices, Google Messages, and "Reacted 👍 to".
_QUOTED = "[\"'\u201c\u201d\u201e\u00ab\u2018].*[\"'\u201c\u201d\u00bb\u2019]"
_OBJECT = r"an? (?:image|photo|picture|video|movie|gif|sticker|attachment|audio message|message)"
_TAPBACK = re.compile(
    r"^\s*(?:"
    r"(?:liked|loved|disliked|laughed at|emphasi[sz]ed|questioned)"
    r"|removed an? (?:like|heart|dislike|laugh|exclamation|question mark|emphasis|question)"
    r"(?: mark)? from"
    r"|reacted (?:with a sticker|.{1,16}?) to"
    r")\s+(?:" + _QUOTED + "|" + _OBJECT + r")\s*$",
    re.IGNORECASE | re.DOTALL,
)
# Digits not inside a longer number, a decimal, a time or a date (2,500 / 19:30 / 12/2026).
_CODE_DIGITS = re.compile(r"(?<!\d)(?<!\d[.,:/])(?:\d{4,8}|\d{3}[- ]\d{3})(?!\d)(?![.,:/]\d)")
_CODE_WORDS = re.compile(
    r"\b(?:code|codes|verification|verify|otp|passcode|one[- ]time|2fa|pin|"
    r"do not share|don'?t share|never share|authenticat\w*|"
    r"código|verificación|verificação|no (?:lo )?compartas|não compartilhe|"
    r"bestätigungscode|sicherheitscode|"
    r"vérification|ne le partagez|ne partagez|"
    r"codice|verifica)\b",
    re.IGNORECASE,
)
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_tapback(text: str) -> bool:
    """'Liked “…”', 'Laughed at an image', 'Reacted 😂 to “…”' and the like."""
    return _TAPBACK.match(text) is not None


def is_verification_code(text: str) -> bool:
    """A one-time code: 4-8 digits (or 123-456) next to a word like code, OTP, passcode."""
    return _CODE_DIGITS.search(text) is not None and _CODE_WORDS.search(text) is not None


def is_person_handle(handle: str) -> bool:
    """An email address or a phone number (7 to 15 digits); not a short code or sender name."""
    if _EMAIL.match(handle):
        return True
    digits = _PHONE_PUNCTUATION.sub("", handle).removeprefix("+")
    return digits.isdigit() and 7 <= len(digits) <= 15


def check(
    message: GateMessage,
    *,
    is_group: bool,
    owner_participates: bool,
    policy: SuggestPolicy,
) -> Skip | None:
    """None when the message deserves suggestions, else the first rule it fails."""
    if message.direction is not Direction.INCOMING:
        return Skip.OUTGOING
    if message.is_unsent:
        return Skip.UNSENT
    kind = message.message_type
    if kind is MessageType.REACTION:
        return Skip.REACTION
    text = (message.text or "").strip()
    if kind in (MessageType.STICKER, MessageType.APP) or (
        kind is MessageType.ATTACHMENT and not text
    ):
        return Skip.ATTACHMENT
    if kind is MessageType.OTHER:
        return Skip.EVENT
    if not text:
        return Skip.EMPTY
    if message.sender_id is not None and not is_person_handle(message.sender_id):
        return Skip.SHORT_CODE
    if is_tapback(text):
        return Skip.TAPBACK
    if is_verification_code(text):
        return Skip.CODE
    if is_group:
        if policy.groups == "never":
            return Skip.GROUP
        if policy.groups == "participating" and not owner_participates:
            return Skip.GROUP_NOT_PARTICIPATING
    return None
