"""Read-only access to the Messages database (`~/Library/Messages/chat.db`).

Opening: `mode=ro` URI plus `PRAGMA query_only`, never `immutable` (that would ignore rows still
in the write-ahead log). The connection is in autocommit mode: each page is one SELECT whose read
transaction ends when the page has been fetched (`chats()` wraps its two SELECTs in one short
BEGIN…COMMIT), so nothing stays open between polls and Messages can always checkpoint.

Schema: `PRAGMA table_info` is read once at open; a column missing on an older or newer macOS is
selected as NULL, so the same code reads every schema that has `message(ROWID, guid, date,
is_from_me)`.

Cursor: new rows are found by `message.ROWID` (AUTOINCREMENT, so it only grows). Edits and
unsends change old rows in place; they are found by their `date_edited` / `date_retracted`
stamp. `ChatCursor` holds both: the highest ROWID delivered and the (stamp, ROWID) of the last
change delivered. Stamps are compared as stored (raw integers); there is no index on those
columns, so `changed_since` scans `message` (about 40 ms per 100,000 rows when nothing changed).

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
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from convassist.agent.errors import (
    ChatDBCorrupt,
    ChatDBError,
    ChatDBLocked,
    ChatDBNotFound,
    ChatDBPermissionDenied,
)
from convassist.agent.typedstream import decode_attributed_body
from convassist.core.logging import get_logger

__all__ = [
    "APPLE_EPOCH",
    "ChatCursor",
    "ChatDB",
    "ChatInfo",
    "ChatMessage",
    "SummaryInfo",
    "apple_time",
    "default_chat_db_path",
    "parse_summary_info",
]

log = get_logger(__name__)

APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)
_NANOSECOND_THRESHOLD = 100_000_000_000  # larger magnitudes are nanoseconds, not seconds
_UNIX_OFFSET_2001 = 978_307_200  # seconds from 1970-01-01 to 2001-01-01 (UTC)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_GROUP_STYLE = 43
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


def default_chat_db_path() -> Path:
    """Where Messages keeps its database for the current user."""
    return Path.home() / "Library" / "Messages" / "chat.db"


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
class ChatInfo:
    """One `chat` row with its participants' handle ids."""

    rowid: int
    guid: str
    chat_identifier: str | None
    display_name: str | None
    service: str | None
    is_group: bool
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """How far the sync got: new rows after `rowid`, changes after (`edit_stamp`, `edit_rowid`).

    Persist the three integers; start from `ChatCursor()` for a full sync.
    """

    rowid: int = 0
    edit_stamp: int = 0
    edit_rowid: int = 0

    def after_messages(self, batch: Sequence[ChatMessage]) -> ChatCursor:
        """The cursor once a `read_messages` page has been delivered."""
        if not batch:
            return self
        return replace(self, rowid=max(self.rowid, max(m.rowid for m in batch)))

    def after_changes(self, batch: Sequence[ChatMessage]) -> ChatCursor:
        """The cursor once a `changed_since` page (ordered by stamp, ROWID) has been delivered."""
        if not batch:
            return self
        last = batch[-1]
        return replace(self, edit_stamp=last.change_stamp, edit_rowid=last.rowid)


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


@dataclass(frozen=True, slots=True)
class _Schema:
    """Columns present per table (lower-case names)."""

    tables: dict[str, frozenset[str]]

    def has(self, table: str, *columns: str) -> bool:
        present = self.tables.get(table)
        return present is not None and all(c.lower() in present for c in columns)


_REQUIRED_MESSAGE_COLUMNS = ("ROWID", "guid", "date", "is_from_me")
_TABLES = (
    "message",
    "handle",
    "chat",
    "chat_message_join",
    "chat_handle_join",
    "attachment",
    "message_attachment_join",
)


def _sqlite_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(path.as_posix(), safe='/')}?mode=ro"


class ChatDB:
    """A read-only chat.db reader. Use `ChatDB.open(path)`, ideally as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, schema: _Schema) -> None:
        self._conn = conn
        self.path = path
        self._schema = schema
        self.message_sql = self._build_message_sql()
        self._changes_sql = self._build_changes_sql()

    @classmethod
    def open(cls, path: Path | str | None = None, *, timeout: float = 5.0) -> ChatDB:
        """Open chat.db read-only; raise a `ChatDBError` subclass with a clear message."""
        db_path = Path(path).expanduser() if path is not None else default_chat_db_path()
        db_path = db_path.absolute()
        try:
            with db_path.open("rb") as handle:
                header = handle.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            raise ChatDBNotFound(db_path) from None
        except PermissionError as exc:
            raise ChatDBPermissionDenied(db_path, exc.strerror or "") from None
        except IsADirectoryError:
            raise ChatDBCorrupt(db_path, "it is a directory") from None
        except OSError as exc:
            raise ChatDBError(f"Could not read {db_path}: {exc.strerror or exc}") from None
        if header != _SQLITE_MAGIC:
            raise ChatDBCorrupt(db_path, "file is not an SQLite database")
        conn: sqlite3.Connection | None = None
        try:
            with _translate_errors(db_path):
                conn = sqlite3.connect(
                    _sqlite_uri(db_path), uri=True, timeout=timeout, isolation_level=None
                )
                conn.execute("PRAGMA query_only = 1")
                schema = _probe_schema(conn, db_path)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        log.info(
            "chatdb.opened",
            message_columns=len(schema.tables["message"]),
            tables=sorted(schema.tables),
        )
        return cls(conn, db_path, schema)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def max_rowid(self) -> int:
        """The highest message ROWID (0 for an empty table)."""
        rows = self._fetch("SELECT COALESCE(MAX(ROWID), 0) FROM message", ())
        return int(rows[0][0])

    def count_messages(self, after_rowid: int, up_to_rowid: int) -> int:
        """How many messages have `after_rowid` < ROWID <= `up_to_rowid` (ROWIDs have gaps)."""
        sql = "SELECT COUNT(*) FROM message WHERE ROWID > ? AND ROWID <= ?"
        return int(self._fetch(sql, (after_rowid, up_to_rowid))[0][0])

    def head(self) -> ChatCursor:
        """A cursor at the current end: the newest ROWID and the newest edit/unsend.

        Start a full sync from `ChatCursor(edit_stamp=h.edit_stamp, edit_rowid=h.edit_rowid)`
        (taken before reading) so edits already included in the first read are not sent twice.
        """
        stamp = self._stamp_expression()
        with _translate_errors(self.path), self._read_transaction():
            (rowid,) = self._conn.execute("SELECT COALESCE(MAX(ROWID), 0) FROM message").fetchall()[
                0
            ]
            newest = (
                self._conn.execute(
                    f"SELECT {stamp}, m.ROWID FROM message m WHERE {stamp} > 0 "  # noqa: S608
                    f"ORDER BY {stamp} DESC, m.ROWID DESC LIMIT 1"
                ).fetchall()
                if stamp is not None
                else []
            )
        edit_stamp, edit_rowid = newest[0] if newest else (0, 0)
        return ChatCursor(rowid=int(rowid), edit_stamp=int(edit_stamp), edit_rowid=int(edit_rowid))

    def read_messages(self, after_rowid: int, limit: int = 1000) -> list[ChatMessage]:
        """Up to `limit` messages with ROWID > `after_rowid`, oldest ROWID first."""
        rows = self._fetch(self.message_sql, (after_rowid, limit))
        messages = [_to_message(row) for row in rows]
        log.debug("chatdb.read", after_rowid=after_rowid, count=len(messages))
        return messages

    def changed_since(self, cursor: ChatCursor, limit: int = 1000) -> list[ChatMessage]:
        """Messages edited or unsent after the cursor's change position, oldest change first."""
        if self._changes_sql is None:
            return []
        stamp, rowid = cursor.edit_stamp, cursor.edit_rowid
        rows = self._fetch(self._changes_sql, (stamp, stamp, rowid, limit))
        messages = [_to_message(row) for row in rows]
        log.debug("chatdb.changes", since=stamp, count=len(messages))
        return messages

    def chats(self) -> dict[int, ChatInfo]:
        """Every chat by ROWID, with participants; one short read transaction."""
        if not self._schema.has("chat", "ROWID", "guid"):
            return {}
        chat_cols = ", ".join(
            self._col("chat", name) for name in ("chat_identifier", "display_name", "service_name")
        )
        style = self._col("chat", "style")
        with _translate_errors(self.path), self._read_transaction():
            chat_rows = self._conn.execute(
                f"SELECT ROWID, guid, {chat_cols}, {style} FROM chat ORDER BY ROWID"  # noqa: S608
            ).fetchall()
            members: dict[int, list[str]] = {}
            if self._schema.has("chat_handle_join", "chat_id", "handle_id") and self._schema.has(
                "handle", "ROWID", "id"
            ):
                for chat_id, handle_id in self._conn.execute(
                    "SELECT j.chat_id, h.id FROM chat_handle_join j "
                    "JOIN handle h ON h.ROWID = j.handle_id ORDER BY j.chat_id, h.id"
                ):
                    if handle_id:
                        members.setdefault(chat_id, []).append(handle_id)
        chats: dict[int, ChatInfo] = {}
        for rowid, guid, identifier, display_name, service, chat_style in chat_rows:
            participants = tuple(dict.fromkeys(members.get(rowid, ())))
            chats[rowid] = ChatInfo(
                rowid=rowid,
                guid=guid,
                chat_identifier=identifier or None,
                display_name=display_name or None,
                service=service or None,
                is_group=chat_style == _GROUP_STYLE or len(participants) > 1,
                participants=participants,
            )
        log.debug("chatdb.chats", count=len(chats))
        return chats

    def handles(self) -> list[str]:
        """Every distinct handle id (phone number or email) known to Messages."""
        if not self._schema.has("handle", "id"):
            return []
        rows = self._fetch("SELECT DISTINCT id FROM handle WHERE id IS NOT NULL ORDER BY id", ())
        return [str(row[0]) for row in rows if row[0]]

    # -- internals -------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[object]) -> list[Any]:
        """Run one SELECT to completion (its implicit read transaction ends with it)."""
        with _translate_errors(self.path):
            cursor = self._conn.execute(sql, params)
            try:
                return cursor.fetchall()
            finally:
                cursor.close()

    @contextmanager
    def _read_transaction(self) -> Iterator[None]:
        """One short read transaction (a consistent snapshot) around several SELECTs."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _col(self, table: str, column: str, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return f"{prefix}{column}" if self._schema.has(table, column) else "NULL"

    def _select_columns(self) -> str:
        s = self._schema
        m = [
            self._col("message", c, "m")
            for c in (
                "ROWID",
                "guid",
                "text",
                "attributedBody",
                "service",
                "date",
                "is_from_me",
                "item_type",
                "associated_message_type",
                "associated_message_guid",
                "balloon_bundle_id",
                "is_audio_message",
                "thread_originator_guid",
                "date_edited",
                "date_retracted",
                "message_summary_info",
            )
        ]
        handle = (
            "h.id" if s.has("handle", "ROWID", "id") and s.has("message", "handle_id") else "NULL"
        )
        chat_guid = (
            "(SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id "
            "WHERE j.message_id = m.ROWID ORDER BY j.chat_id LIMIT 1)"
            if s.has("chat_message_join", "chat_id", "message_id") and s.has("chat", "guid")
            else "NULL"
        )
        has_join = s.has("message_attachment_join", "message_id", "attachment_id")
        attachments = (
            "m.cache_has_attachments"
            if s.has("message", "cache_has_attachments")
            else "EXISTS(SELECT 1 FROM message_attachment_join j WHERE j.message_id = m.ROWID)"
            if has_join
            else "NULL"
        )
        sticker = (
            f"CASE WHEN {attachments} THEN (SELECT MAX(a.is_sticker) FROM "  # noqa: S608
            "message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id "
            "WHERE j.message_id = m.ROWID) END"
            if has_join and s.has("attachment", "ROWID", "is_sticker")
            else "NULL"
        )
        return ", ".join([*m, handle, chat_guid, attachments, sticker])

    def _from_clause(self) -> str:
        if self._schema.has("handle", "ROWID", "id") and self._schema.has("message", "handle_id"):
            return "FROM message m LEFT JOIN handle h ON h.ROWID = m.handle_id"
        return "FROM message m"

    def _build_message_sql(self) -> str:
        return (
            f"SELECT {self._select_columns()} {self._from_clause()} "
            "WHERE m.ROWID > ? ORDER BY m.ROWID LIMIT ?"
        )

    def _stamp_expression(self) -> str | None:
        """SQL for a row's change stamp, max(date_edited, date_retracted); None if neither."""
        stamps = [c for c in ("date_edited", "date_retracted") if self._schema.has("message", c)]
        if not stamps:
            return None
        parts = [f"COALESCE(m.{c}, 0)" for c in stamps]
        return f"MAX({parts[0]}, {parts[1]})" if len(parts) == 2 else parts[0]

    def _build_changes_sql(self) -> str | None:
        stamp = self._stamp_expression()
        if stamp is None:
            return None
        return (
            f"SELECT {self._select_columns()} {self._from_clause()} "
            f"WHERE {stamp} > 0 AND ({stamp} > ? OR ({stamp} = ? AND m.ROWID > ?)) "
            f"ORDER BY {stamp}, m.ROWID LIMIT ?"
        )


def _probe_schema(conn: sqlite3.Connection, path: Path) -> _Schema:
    tables: dict[str, frozenset[str]] = {}
    for table in _TABLES:
        columns = frozenset(
            str(row[1]).lower() for row in conn.execute(f"PRAGMA table_info({table})")
        )
        if columns:
            tables[table] = columns
    schema = _Schema(tables)
    if "message" not in tables:
        raise ChatDBCorrupt(path, "it has no message table (not a Messages chat.db)")
    missing = [c for c in _REQUIRED_MESSAGE_COLUMNS if not schema.has("message", c)]
    if missing:
        raise ChatDBCorrupt(path, f"its message table lacks {', '.join(missing)}")
    return schema


@contextmanager
def _translate_errors(path: Path) -> Iterator[None]:
    """Turn sqlite3 errors into `ChatDBError`s that say what to do."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise ChatDBLocked(path) from exc
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise ChatDBCorrupt(path, str(exc)) from exc
        if code in (sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_CANTOPEN):
            raise ChatDBPermissionDenied(path, str(exc)) from exc
        raise ChatDBError(f"Could not read {path}: {exc}") from exc


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


def _to_message(row: Iterable[Any]) -> ChatMessage:
    """Map one row of `ChatDB.message_sql` to a `ChatMessage` (the per-row hot path)."""
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
