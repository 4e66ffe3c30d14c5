"""What a chat.db `message` row means: its time stamps, kind, text, edits and unsends.

Reactions (tapbacks, `associated_message_type` 2000-2007 added, 3000-3007 removed) are emitted,
typed `message_type="reaction"` with `reaction` (love, like, dislike, laugh, emphasize,
question, emoji, sticker), `reaction_removed` and the target's guid in `associated_guid`: the
server stores them but keeps them out of prompts. Other types: a sticker (an attachment with
`is_sticker`, or `associated_message_type` 1000) is "sticker"; a `balloon_bundle_id` other than
the link-preview provider is "app"; attachments and audio messages are "attachment"; group
events and other `item_type` rows are "other"; everything else is "text".

Text: `message.text`, else the decoded `attributedBody`. Attachment placeholders (U+FFFC, U+FFFD)
are removed: the parts around them are stripped and joined with newlines, and a body with nothing
else becomes None. Edits: the current text is in the row; `edited_at` is `date_edited` (or the
newest edit in `message_summary_info`). Unsends: a message whose every part is listed as retracted
(`rp` in `message_summary_info`, or `date_retracted` with no text left) has `is_unsent=True` and
text None; a partly unsent message keeps the remaining text.
"""

from __future__ import annotations

import plistlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from convassist.agent.typedstream import decode_attributed_body

__all__ = [
    "APPLE_EPOCH",
    "ChatMessage",
    "SummaryInfo",
    "apple_time",
    "parse_summary_info",
    "to_message",
]

APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
_NANOSECOND_THRESHOLD = 100_000_000_000  # larger magnitudes are nanoseconds, not seconds
_UNIX_OFFSET_2001 = 978_307_200  # seconds from 1970-01-01 to 2001-01-01 (UTC)
_URL_BALLOON = "com.apple.messages.URLBalloonProvider"
_PLACEHOLDERS = ("\ufffc", "\ufffd")
# Keys of `message_summary_info` as bplist 2-character ASCII strings: edits, retracted parts.
_SHORT_KEY_MARKER = b"\x52"
_EDITS_KEY = b"\x52ec"
_RETRACTED_KEY = b"\x52rp"
_REACTIONS = ("love", "like", "dislike", "laugh", "emphasize", "question", "emoji", "sticker")
_STICKER_ON_MESSAGE = 1000

Direction = Literal["incoming", "outgoing"]
MessageKind = Literal["text", "attachment", "sticker", "app", "reaction", "other"]


def apple_time(value: float | None) -> datetime | None:
    """An aware UTC datetime from a chat.db date (ns or s since 2001-01-01); 0/NULL → None."""
    if not value:
        return None
    try:
        if -_NANOSECOND_THRESHOLD < value < _NANOSECOND_THRESHOLD:
            return APPLE_EPOCH + timedelta(seconds=value)
        # Nanoseconds. Whole microseconds / 1e6 + offset is off by < 0.5 µs in float, and
        # fromtimestamp rounds to the nearest microsecond: exact, and twice as fast as timedelta.
        return datetime.fromtimestamp((value // 1000) / 1e6 + _UNIX_OFFSET_2001, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # a value no datetime can hold


@dataclass(slots=True)
class ChatMessage:
    """One `message` row, shaped like the server's sync payload (`sync_fields`)."""

    rowid: int
    imessage_guid: str
    chat_guid: str | None
    sender_id: str | None
    direction: Direction
    message_type: MessageKind
    text: str | None
    sent_at: datetime
    edited_at: datetime | None
    is_unsent: bool
    reply_to_guid: str | None
    service: str | None
    reaction: str | None = None
    reaction_removed: bool = False
    associated_guid: str | None = None
    change_stamp: int = 0  # raw max(date_edited, date_retracted); 0 if never changed

    def sync_fields(self) -> dict[str, Any]:
        """The fields of the server's `SyncMessage`, by their Python names."""
        return {
            "imessage_guid": self.imessage_guid,
            "sender_id": self.sender_id,
            "direction": self.direction,
            "message_type": self.message_type,
            "text": self.text,
            "sent_at": self.sent_at,
            "edited_at": self.edited_at,
            "is_unsent": self.is_unsent,
            "reply_to_guid": self.reply_to_guid,
            "service": self.service,
        }


@dataclass(frozen=True, slots=True)
class SummaryInfo:
    """What `message_summary_info` says about edits and unsends (part indexes)."""

    parts: frozenset[int] = field(default_factory=frozenset)
    edited_parts: frozenset[int] = field(default_factory=frozenset)
    retracted_parts: frozenset[int] = field(default_factory=frozenset)
    last_edit: datetime | None = None

    @property
    def fully_retracted(self) -> bool:
        """Every part was unsent (a message without a part table counts as one part)."""
        if not self.retracted_parts:
            return False
        return not self.parts or self.parts <= self.retracted_parts


def parse_summary_info(blob: bytes | None) -> SummaryInfo:
    """Parse a `message_summary_info` bplist; unreadable or empty input gives an empty summary."""
    if not blob:
        return SummaryInfo()
    try:
        data = plistlib.loads(blob)
    except (plistlib.InvalidFileException, ValueError, TypeError, OverflowError):
        return SummaryInfo()
    if not isinstance(data, dict):
        return SummaryInfo()
    parts = _int_keys(data.get("otr"))
    edits = data.get("ec")
    edited = _int_keys(edits)
    stamps = [
        entry["d"]
        for history in (edits.values() if isinstance(edits, dict) else ())
        if isinstance(history, list)
        for entry in history
        if isinstance(entry, dict) and isinstance(entry.get("d"), int | float)
    ]
    retracted = data.get("rp")
    return SummaryInfo(
        parts=parts,
        edited_parts=edited,
        retracted_parts=frozenset(
            int(i) for i in retracted if isinstance(i, int) or (isinstance(i, str) and i.isdigit())
        )
        if isinstance(retracted, list)
        else frozenset(),
        last_edit=apple_time(max(stamps)) if stamps else None,
    )


def _int_keys(value: object) -> frozenset[int]:
    if not isinstance(value, dict):
        return frozenset()
    return frozenset(int(k) for k in value if isinstance(k, str) and k.isdigit())


def _clean_text(text: str) -> str | None:
    """Remove attachment/app placeholders; the parts around them are stripped, one per line."""
    for placeholder in _PLACEHOLDERS:
        text = text.replace(placeholder, "\ufffc")
    pieces = [piece.strip() for piece in text.split("\ufffc")]
    joined = "\n".join(piece for piece in pieces if piece)
    return joined or None


def _target_guid(value: str | None) -> str | None:
    """The guid a reaction points at: `p:0/GUID` and `bp:GUID` lose their prefixes."""
    if not value:
        return None
    if value.startswith("bp:"):
        return value[3:]
    if value.startswith("p:"):
        return value.partition("/")[2] or None
    return value


def to_message(row: Iterable[Any]) -> ChatMessage:
    """Map one row of `Schema.message_sql()` to a `ChatMessage` (the per-row hot path)."""
    (
        rowid,
        guid,
        text,
        body,
        service,
        date,
        from_me,
        item_type,
        assoc_type,
        assoc_guid,
        balloon,
        is_audio,
        thread_guid,
        date_edited,
        date_retracted,
        summary,
        handle,
        chat_guid,
        has_attachments,
        has_sticker,
    ) = row
    if not text:
        text = decode_attributed_body(body) if body else None
    elif text.isspace():
        text = None
    if text is not None and ("\ufffc" in text or "\ufffd" in text):
        text = _clean_text(text)

    edited_at = apple_time(date_edited) if date_edited else None
    is_unsent = False
    # The bplist is parsed only when it can change the answer: retracted parts, or edit dates
    # on a row without `date_edited`. Both keys are 2-character strings (marker byte 0x52);
    # the usual `{amc, ust}` summary has none, so one byte search settles most rows.
    if date_retracted or (
        summary
        and _SHORT_KEY_MARKER in summary
        and (_RETRACTED_KEY in summary or (not date_edited and _EDITS_KEY in summary))
    ):
        info = parse_summary_info(summary)
        if info.retracted_parts:
            is_unsent = info.fully_retracted if info.parts else text is None
        elif date_retracted:
            is_unsent = text is None and not has_attachments
        if edited_at is None:
            edited_at = info.last_edit
        if is_unsent:
            text = None

    reaction: str | None = None
    removed = False
    associated: str | None = None
    kind: MessageKind
    if assoc_type and (assoc_type == _STICKER_ON_MESSAGE or 2000 <= assoc_type < 4000):
        kind, reaction, removed, associated = _associated_kind(assoc_type, assoc_guid)
    elif item_type:
        kind = "other"
    elif has_sticker:
        kind = "sticker"
    elif balloon and balloon != _URL_BALLOON:
        kind = "app"
    elif has_attachments or is_audio:
        kind = "attachment"
    else:
        kind = "text"

    return ChatMessage(  # positional, in field order: this runs for every row
        rowid,
        guid,
        chat_guid,
        None if from_me else (handle or None),
        "outgoing" if from_me else "incoming",
        kind,
        text,
        apple_time(date) or APPLE_EPOCH,
        edited_at,
        is_unsent,
        thread_guid or None,
        service or None,
        reaction,
        removed,
        associated,
        max(date_edited or 0, date_retracted or 0) if date_edited or date_retracted else 0,
    )


def _associated_kind(
    assoc_type: int, assoc_guid: str | None
) -> tuple[MessageKind, str | None, bool, str | None]:
    """(kind, reaction, removed, target guid) for a tapback or a sticker on a message."""
    if 2000 <= assoc_type < 4000:
        index = assoc_type % 1000
        reaction = _REACTIONS[index] if index < len(_REACTIONS) else f"unknown-{assoc_type}"
        return "reaction", reaction, assoc_type >= 3000, _target_guid(assoc_guid)
    return "sticker", None, False, _target_guid(assoc_guid)
