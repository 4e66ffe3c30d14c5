"""Read-only access to the Messages database (`~/Library/Messages/chat.db`).

Opening: `mode=ro` URI plus `PRAGMA query_only`, never `immutable` (that would ignore rows still
in the write-ahead log). The connection is in autocommit mode: each page is one SELECT whose read
transaction ends when the page has been fetched (`chats()` wraps its two SELECTs in one short
BEGIN…COMMIT), so nothing stays open between polls and Messages can always checkpoint.

Schema: read once at open (`chatdb_schema`); rows are decoded by `chatdb_decode`.

Cursor: new rows are found by `message.ROWID` (AUTOINCREMENT, so it only grows). Edits and
unsends change old rows in place; they are found by their `date_edited` / `date_retracted`
stamp. `ChatCursor` holds both: the highest ROWID delivered and the (stamp, ROWID) of the last
change delivered. Stamps are compared as stored (raw integers); there is no index on those
columns, so `changed_since` scans `message` (about 40 ms per 100,000 rows when nothing changed).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

from convassist.agent.chatdb_decode import ChatMessage, to_message
from convassist.agent.chatdb_schema import Schema, probe_schema
from convassist.agent.errors import (
    ChatDBCorrupt,
    ChatDBError,
    ChatDBLocked,
    ChatDBNotFound,
    ChatDBPermissionDenied,
)
from convassist.core.logging import get_logger

__all__ = ["ChatCursor", "ChatDB", "ChatInfo", "default_chat_db_path"]

log = get_logger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_GROUP_STYLE = 43


def default_chat_db_path() -> Path:
    """Where Messages keeps its database for the current user."""
    return Path.home() / "Library" / "Messages" / "chat.db"


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


def _sqlite_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(path.as_posix(), safe='/')}?mode=ro"


class ChatDB:
    """A read-only chat.db reader. Use `ChatDB.open(path)`, ideally as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path, schema: Schema) -> None:
        self._conn = conn
        self.path = path
        self._schema = schema
        self.message_sql = schema.message_sql()
        self._changes_sql = schema.changes_sql()

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
                schema = probe_schema(conn, db_path)
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
        stamp = self._schema.stamp_expression()
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
        messages = [to_message(row) for row in rows]
        log.debug("chatdb.read", after_rowid=after_rowid, count=len(messages))
        return messages

    def changed_since(self, cursor: ChatCursor, limit: int = 1000) -> list[ChatMessage]:
        """Messages edited or unsent after the cursor's change position, oldest change first."""
        if self._changes_sql is None:
            return []
        stamp, rowid = cursor.edit_stamp, cursor.edit_rowid
        rows = self._fetch(self._changes_sql, (stamp, stamp, rowid, limit))
        messages = [to_message(row) for row in rows]
        log.debug("chatdb.changes", since=stamp, count=len(messages))
        return messages

    def recent_outgoing(self, chat_guid: str, limit: int = 50) -> list[ChatMessage]:
        """The newest `limit` messages sent from this Mac in the chat `chat_guid`, newest first."""
        sql = self._schema.outgoing_sql()
        return [to_message(row) for row in self._fetch(sql, (chat_guid, limit))] if sql else []

    def chats(self) -> dict[int, ChatInfo]:
        """Every chat by ROWID, with participants; one short read transaction."""
        if not self._schema.has("chat", "ROWID", "guid"):
            return {}
        chat_cols = ", ".join(
            self._schema.col("chat", name)
            for name in ("chat_identifier", "display_name", "service_name")
        )
        style = self._schema.col("chat", "style")
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
