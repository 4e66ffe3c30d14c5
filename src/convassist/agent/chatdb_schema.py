"""Which chat.db columns exist, probed once at open, and the SELECTs built from them.

`PRAGMA table_info` is read once; a column missing on an older or newer macOS is selected as
NULL, so the same SQL reads every schema that has `message(ROWID, guid, date, is_from_me)`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from convassist.agent.errors import ChatDBCorrupt

__all__ = ["Schema", "probe_schema"]

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


@dataclass(frozen=True, slots=True)
class Schema:
    """Columns present per table (lower-case names)."""

    tables: dict[str, frozenset[str]]

    def has(self, table: str, *columns: str) -> bool:
        present = self.tables.get(table)
        return present is not None and all(c.lower() in present for c in columns)

    def col(self, table: str, column: str, alias: str = "") -> str:
        """`alias.column` if the column exists, else `NULL`."""
        prefix = f"{alias}." if alias else ""
        return f"{prefix}{column}" if self.has(table, column) else "NULL"

    def _select_columns(self) -> str:
        m = [
            self.col("message", c, "m")
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
            "h.id"
            if self.has("handle", "ROWID", "id") and self.has("message", "handle_id")
            else "NULL"
        )
        chat_guid = (
            "(SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id "
            "WHERE j.message_id = m.ROWID ORDER BY j.chat_id LIMIT 1)"
            if self.has("chat_message_join", "chat_id", "message_id") and self.has("chat", "guid")
            else "NULL"
        )
        has_join = self.has("message_attachment_join", "message_id", "attachment_id")
        attachments = (
            "m.cache_has_attachments"
            if self.has("message", "cache_has_attachments")
            else "EXISTS(SELECT 1 FROM message_attachment_join j WHERE j.message_id = m.ROWID)"
            if has_join
            else "NULL"
        )
        sticker = (
            f"CASE WHEN {attachments} THEN (SELECT MAX(a.is_sticker) FROM "  # noqa: S608
            "message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id "
            "WHERE j.message_id = m.ROWID) END"
            if has_join and self.has("attachment", "ROWID", "is_sticker")
            else "NULL"
        )
        return ", ".join([*m, handle, chat_guid, attachments, sticker])

    def _from_clause(self) -> str:
        if self.has("handle", "ROWID", "id") and self.has("message", "handle_id"):
            return "FROM message m LEFT JOIN handle h ON h.ROWID = m.handle_id"
        return "FROM message m"

    def message_sql(self) -> str:
        """New messages: parameters (after ROWID, limit); rows as `to_message` reads them."""
        return (
            f"SELECT {self._select_columns()} {self._from_clause()} "
            "WHERE m.ROWID > ? ORDER BY m.ROWID LIMIT ?"
        )

    def outgoing_sql(self) -> str | None:
        """The newest outgoing messages of one chat: (chat guid, limit); None without chats."""
        if not self.has("chat_message_join", "chat_id", "message_id") or not self.has(
            "chat", "guid"
        ):
            return None
        return (
            f"SELECT {self._select_columns()} {self._from_clause()} "  # noqa: S608
            "WHERE m.is_from_me = 1 AND m.ROWID IN (SELECT j.message_id FROM chat_message_join j "
            "JOIN chat c ON c.ROWID = j.chat_id WHERE c.guid = ?) ORDER BY m.ROWID DESC LIMIT ?"
        )

    def stamp_expression(self) -> str | None:
        """SQL for a row's change stamp, max(date_edited, date_retracted); None if neither."""
        stamps = [c for c in ("date_edited", "date_retracted") if self.has("message", c)]
        if not stamps:
            return None
        parts = [f"COALESCE(m.{c}, 0)" for c in stamps]
        return f"MAX({parts[0]}, {parts[1]})" if len(parts) == 2 else parts[0]

    def changes_sql(self) -> str | None:
        """Changed messages: (stamp, stamp, ROWID, limit); None without a stamp column."""
        stamp = self.stamp_expression()
        if stamp is None:
            return None
        return (
            f"SELECT {self._select_columns()} {self._from_clause()} "
            f"WHERE {stamp} > 0 AND ({stamp} > ? OR ({stamp} = ? AND m.ROWID > ?)) "
            f"ORDER BY {stamp}, m.ROWID LIMIT ?"
        )


def probe_schema(conn: sqlite3.Connection, path: Path) -> Schema:
    """Read the columns of the known tables; `ChatDBCorrupt` if `message` is unusable."""
    tables: dict[str, frozenset[str]] = {}
    for table in _TABLES:
        columns = frozenset(
            str(row[1]).lower() for row in conn.execute(f"PRAGMA table_info({table})")
        )
        if columns:
            tables[table] = columns
    schema = Schema(tables)
    if "message" not in tables:
        raise ChatDBCorrupt(path, "it has no message table (not a Messages chat.db)")
    missing = [c for c in _REQUIRED_MESSAGE_COLUMNS if not schema.has("message", c)]
    if missing:
        raise ChatDBCorrupt(path, f"its message table lacks {', '.join(missing)}")
    return schema
