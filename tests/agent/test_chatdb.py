"""The chat.db reader on the real fixture chat.db and on generated databases (real schema)."""

from __future__ import annotations

import plistlib
import random
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from convassist.agent.chatdb import ChatCursor, ChatDB
from convassist.agent.chatdb_decode import (
    APPLE_EPOCH,
    ChatMessage,
    apple_time,
    parse_summary_info,
)
from convassist.server.sync.schemas import SyncMessage
from tests.agent.chatdb_factory import (
    NS,
    GeneratedChatDB,
    make_attributed_body,
    register_apple_functions,
    summary_info,
)


def read_all(db: ChatDB, page: int = 500) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    cursor = ChatCursor()
    while batch := db.read_messages(cursor.rowid, page):
        messages.extend(batch)
        cursor = cursor.after_messages(batch)
    return messages


def ns_time(value: int) -> datetime:
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(microseconds=value // 1000)


# -- dates and summaries ----------------------------------------------------------------------


def test_apple_time_units() -> None:
    assert apple_time(0) is None
    assert apple_time(None) is None
    assert apple_time(760569924490443648) == datetime(2025, 2, 6, 21, 25, 24, 490443, tzinfo=UTC)
    assert apple_time(760569924) == datetime(2025, 2, 6, 21, 25, 24, tzinfo=UTC)
    assert apple_time(690513474.2725511) == APPLE_EPOCH + timedelta(seconds=690513474.2725511)
    assert apple_time(-86400) == datetime(2000, 12, 31, tzinfo=UTC)
    assert apple_time(760569924490443648).tzinfo is UTC  # type: ignore[union-attr]


def test_apple_time_nanoseconds_are_exact_to_the_microsecond() -> None:
    rng = random.Random(3)
    values = [rng.randint(-900_000_000 * NS, 3_100_000_000 * NS) for _ in range(50_000)]
    values += [NS * 760_000_000 + 999_999_999, 100_000_000_000, -100_000_000_000]
    for value in values:
        assert apple_time(value) == APPLE_EPOCH + timedelta(microseconds=value // 1000), value


def test_apple_time_out_of_range_is_none() -> None:
    assert apple_time(10**30) is None
    assert apple_time(-(10**30)) is None


@pytest.mark.parametrize(
    ("name", "parts", "edited", "retracted", "fully"),
    [
        ("Deleted.plist", {0}, set(), {0}, True),
        ("Edited.plist", {0}, {0}, set(), False),
        ("EditedAndDeleted.plist", {0, 1, 2}, {2}, set(), False),
        ("EditedAndUnsent.plist", {0, 1, 2, 3}, {2}, {3}, False),
        ("EditedToLink.plist", {0, 1}, {1}, set(), False),
        ("EditedToLinkAndBack.plist", {0}, {0}, set(), False),
        ("EditedWithFormatting.plist", {0}, {0}, set(), False),
        ("MultiPartOneDeleted.plist", {0, 1, 2, 3}, set(), {3}, False),
    ],
)
def test_summary_info_fixtures(
    fixture_dir: Path,
    name: str,
    parts: set[int],
    edited: set[int],
    retracted: set[int],
    fully: bool,
) -> None:
    info = parse_summary_info((fixture_dir / "edited_message" / name).read_bytes())
    assert info.parts == parts
    assert info.edited_parts == edited
    assert info.retracted_parts == retracted
    assert info.fully_retracted is fully
    assert (info.last_edit is not None) == bool(edited)


def test_summary_info_last_edit_is_the_newest(fixture_dir: Path) -> None:
    info = parse_summary_info((fixture_dir / "edited_message" / "Edited.plist").read_bytes())
    assert info.last_edit == apple_time(690513494.0120859)


@pytest.mark.parametrize("blob", [None, b"", b"bplist00garbage", plistlib.dumps([1, 2])])
def test_summary_info_garbage_is_empty(blob: bytes | None) -> None:
    info = parse_summary_info(blob)
    assert not info.parts and not info.retracted_parts and info.last_edit is None


# -- the real fixture chat.db ---------------------------------------------------------------------


def test_fixture_chatdb_messages(fixture_dir: Path) -> None:
    with ChatDB.open(fixture_dir / "test.db") as db:  # read-only file in a read-only directory
        messages = {m.rowid: m for m in db.read_messages(0, 100)}
        assert db.max_rowid() == 452567
        assert db.chats() == {}
        assert db.handles() == []
        assert db.changed_since(ChatCursor()) == []
        assert db.head() == ChatCursor(rowid=452567)
    assert sorted(messages) == [123445, 452567]
    eat = messages[452567]
    assert eat.imessage_guid == "0355C6E1-D0C8-4212-AA87-DD8AE4FD1203"
    assert eat.text == "I\u2019m going to try to eat as quick as possible and then come over"
    assert eat.message_type == "sticker"  # its one attachment is a sticker
    link = messages[123445]
    assert link.imessage_guid == "FAKEGUID-D0C8-4212-AA87-DD8AE4FD1203"
    assert link.text == (
        "https://www.ghacks.net/2020/01/23/lastpass-no-longer-listed-on-the-chrome-web-store/"
    )
    for message in messages.values():
        assert message.sent_at == ns_time(760569924490443648)
        assert message.direction == "incoming"
        assert message.service == "iMessage"
        assert message.sender_id is None  # handle 1 is not in the (empty) handle table
        assert message.chat_guid is None
        assert message.edited_at is None and not message.is_unsent


def test_fixture_copy_with_chat_and_handle(fixture_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    shutil.copyfile(fixture_dir / "test.db", path)
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    conn.execute("INSERT INTO handle (ROWID, id, service) VALUES (1, '+15558675309', 'iMessage')")
    conn.execute(
        "INSERT INTO chat (ROWID, guid, style, chat_identifier, service_name) "
        "VALUES (1, 'iMessage;-;+15558675309', 45, '+15558675309', 'iMessage')"
    )
    conn.execute("INSERT INTO chat_handle_join VALUES (1, 1)")
    conn.execute("INSERT INTO chat_message_join VALUES (1, 452567, 760569924490443648)")
    conn.execute("INSERT INTO chat_message_join VALUES (1, 123445, 760569924490443648)")
    # Deleting a row fires Apple's triggers, which call app-registered functions.
    conn.execute("DELETE FROM message_attachment_join")
    conn.execute("DELETE FROM attachment WHERE ROWID = 3")
    conn.commit()
    conn.close()
    with ChatDB.open(path) as db:
        messages = db.read_messages(0, 10)
        chats = db.chats()
    assert {m.sender_id for m in messages} == {"+15558675309"}
    assert {m.chat_guid for m in messages} == {"iMessage;-;+15558675309"}
    assert chats[1].participants == ("+15558675309",)
    assert chats[1].is_group is False


# -- generated chat.db ------------------------------------------------------------------------


def test_generated_messages_match(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        messages = read_all(db, page=333)
        assert db.max_rowid() == len(generated_db.messages)
    assert len(messages) == len(generated_db.messages)
    assert [m.rowid for m in messages] == sorted(m.rowid for m in messages)
    kinds: set[str] = set()
    for message in messages:
        expected = generated_db.messages[message.imessage_guid]
        assert message.chat_guid == expected.chat_guid
        assert message.direction == expected.direction
        assert message.sender_id == expected.sender
        assert message.message_type == expected.kind, message.imessage_guid
        assert message.text == expected.text, message.imessage_guid
        assert message.sent_at == ns_time(expected.sent_at_ns)
        assert message.is_unsent is expected.is_unsent
        expected_edit = ns_time(expected.edited_at_ns) if expected.edited_at_ns else None
        assert message.edited_at == expected_edit
        assert message.reply_to_guid == expected.reply_to
        assert message.reaction == expected.reaction
        assert message.reaction_removed is expected.reaction_removed
        assert message.associated_guid == expected.associated_guid
        assert message.service in {"iMessage", "SMS", "RCS"}
        kinds.add(message.message_type)
    assert kinds == {"text", "attachment", "sticker", "app", "reaction", "other"}


def test_generated_messages_fit_the_server_sync_payload(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        messages = read_all(db, page=1000)
    for message in messages:
        payload = SyncMessage(**message.sync_fields())
        assert payload.imessage_guid == message.imessage_guid
        assert payload.sent_at.tzinfo is not None


def test_generated_chats(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        chats = db.chats()
        handles = db.handles()
    assert {c.guid for c in chats.values()} == set(generated_db.chats)
    for chat in chats.values():
        is_group, name, participants = generated_db.chats[chat.guid]
        assert chat.is_group is is_group
        assert chat.display_name == name
        assert chat.participants == participants
        assert chat.service == chat.guid.split(";")[0]
    assert sorted(handles) == sorted(generated_db.handles)


def test_pages_and_cursor(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        everything = db.read_messages(0, 10_000)
        paged = read_all(db, page=7)
        assert db.read_messages(everything[-1].rowid, 10) == []
    assert [m.imessage_guid for m in paged] == [m.imessage_guid for m in everything]
    assert ChatCursor().after_messages(everything).rowid == everything[-1].rowid
    assert ChatCursor(rowid=5).after_messages([]) == ChatCursor(rowid=5)


def test_changed_since_finds_every_edit_and_unsend(generated_db: GeneratedChatDB) -> None:
    changed = {guid for guid, e in generated_db.messages.items() if e.edited_at_ns or e.is_unsent}
    assert changed
    with ChatDB.open(generated_db.path) as db:
        seen: list[ChatMessage] = []
        cursor = ChatCursor()
        while batch := db.changed_since(cursor, limit=5):
            seen.extend(batch)
            cursor = cursor.after_changes(batch)
        assert db.changed_since(cursor) == []
        assert db.changed_since(db.head()) == []
    assert [m.imessage_guid for m in seen] == list(dict.fromkeys(m.imessage_guid for m in seen))
    assert {m.imessage_guid for m in seen} == changed
    stamps = [(m.change_stamp, m.rowid) for m in seen]
    assert stamps == sorted(stamps)


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    return conn


def test_edit_and_unsend_of_old_rows_are_seen(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        read_all(db)
        cursor = db.head()
        assert db.changed_since(cursor) == []
        by_rowid = {m.rowid: m for m in db.read_messages(0, 30)}
        edit_row = next(r for r, m in by_rowid.items() if m.message_type == "text" and m.text)
        unsend_row = next(
            r for r, m in by_rowid.items() if r != edit_row and m.message_type == "text" and m.text
        )
        edit_stamp = cursor.edit_stamp + 10 * NS
        writer = _writer(generated_db.path)
        writer.execute(
            "UPDATE message SET text = NULL, attributedBody = ?, date_edited = ?, "
            "message_summary_info = ? WHERE ROWID = ?",
            (
                make_attributed_body("edited words"),
                edit_stamp,
                summary_info(edits=[(1.0, "old"), (edit_stamp / NS, "edited words")]),
                edit_row,
            ),
        )
        writer.execute(
            "UPDATE message SET text = NULL, attributedBody = NULL, date_edited = ?, "
            "date_retracted = ?, message_summary_info = ? WHERE ROWID = ?",
            (edit_stamp + NS, edit_stamp + NS, summary_info(retracted=[0]), unsend_row),
        )
        writer.commit()
        writer.close()
        changes = db.changed_since(cursor)
        assert [m.rowid for m in changes] == [edit_row, unsend_row]
        edited, unsent = changes
        assert edited.text == "edited words"
        assert edited.edited_at == ns_time(edit_stamp)
        assert not edited.is_unsent
        assert unsent.is_unsent and unsent.text is None
        cursor = cursor.after_changes(changes)
        assert cursor.edit_stamp == edit_stamp + NS and cursor.edit_rowid == unsend_row
        assert db.changed_since(cursor) == []


def test_reader_sees_rows_still_in_the_wal(generated_db: GeneratedChatDB) -> None:
    """Why `immutable=1` is forbidden: it ignores the write-ahead log."""
    path = generated_db.path
    writer = _writer(path)
    assert writer.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    before = len(generated_db.messages)
    writer.executemany(
        "INSERT INTO message (ROWID, guid, text, service, date, is_from_me) "
        "VALUES (?, ?, ?, 'iMessage', ?, 0)",
        [(before + i, f"WAL-{i}", f"in the wal {i}", (800_000_000 + i) * NS) for i in (1, 2, 3)],
    )
    writer.commit()  # committed to the WAL, not checkpointed; the writer stays open
    assert Path(f"{path}-wal").stat().st_size > 0
    try:
        with ChatDB.open(path) as db:
            new = db.read_messages(before, 10)
            assert [m.imessage_guid for m in new] == ["WAL-1", "WAL-2", "WAL-3"]
            assert new[0].text == "in the wal 1"
            assert db.max_rowid() == before + 3
        immutable = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        assert immutable.execute("SELECT MAX(ROWID) FROM message").fetchone() == (before,)
        immutable.close()
    finally:
        writer.close()


def test_no_read_transaction_is_held_between_polls(generated_db: GeneratedChatDB) -> None:
    path = generated_db.path
    writer = _writer(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    try:
        with ChatDB.open(path) as db:
            writer.execute("UPDATE message SET is_read = 1 WHERE ROWID < 50")
            writer.commit()
            db.read_messages(0, 10)  # a partial read: more rows remain
            db.chats()
            db.head()
            db.changed_since(ChatCursor(), limit=3)
            assert not db._conn.in_transaction
            busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0  # nothing pins an old snapshot: the WAL could be reset
            # For contrast, a reader that keeps its transaction open blocks the checkpoint.
            holder = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            holder.execute("BEGIN")
            holder.execute("SELECT COUNT(*) FROM message").fetchall()
            writer.execute("UPDATE message SET is_read = 0 WHERE ROWID < 50")
            writer.commit()
            busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 1
            holder.close()
    finally:
        writer.close()


def test_connection_is_read_only(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path) as db:
        with pytest.raises(sqlite3.OperationalError):
            db._conn.execute("DELETE FROM handle")
        assert db._conn.execute("PRAGMA query_only").fetchone() == (1,)


def test_newer_schema_with_unknown_columns(generated_db: GeneratedChatDB) -> None:
    conn = _writer(generated_db.path)
    conn.execute("ALTER TABLE message ADD COLUMN macos_27_feature INTEGER DEFAULT 7")
    conn.execute("ALTER TABLE chat ADD COLUMN another_thing TEXT")
    conn.commit()
    conn.close()
    with ChatDB.open(generated_db.path) as db:
        assert len(read_all(db)) == len(generated_db.messages)


OLD_SCHEMA = """
CREATE TABLE message (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
  text TEXT, handle_id INTEGER DEFAULT 0, service TEXT, date INTEGER, is_from_me INTEGER DEFAULT 0,
  cache_has_attachments INTEGER DEFAULT 0);
CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL);
CREATE TABLE chat (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
  style INTEGER, chat_identifier TEXT, service_name TEXT, display_name TEXT);
CREATE TABLE chat_message_join (chat_id INTEGER, message_id INTEGER);
CREATE TABLE chat_handle_join (chat_id INTEGER, handle_id INTEGER);
INSERT INTO handle VALUES (1, 'friend@example.com');
INSERT INTO chat VALUES (1, 'iMessage;-;friend@example.com', 45, 'friend@example.com',
  'iMessage', NULL);
INSERT INTO chat_handle_join VALUES (1, 1);
INSERT INTO message VALUES (1, 'OLD-1', 'hello from 2015', 1, 'iMessage', 450000000, 0, 0);
INSERT INTO message VALUES (2, 'OLD-2', 'hi back', 1, 'iMessage', 450000060, 1, 0);
INSERT INTO chat_message_join VALUES (1, 1), (1, 2);
"""


def test_old_schema_with_seconds_dates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    with ChatDB.open(path) as db:
        messages = db.read_messages(0, 10)
        assert db.changed_since(ChatCursor()) == []
        assert db.head() == ChatCursor(rowid=2)
        chats = db.chats()
    first, second = messages
    assert first.sent_at == APPLE_EPOCH + timedelta(seconds=450000000)
    assert (first.text, first.direction, first.sender_id) == (
        "hello from 2015",
        "incoming",
        "friend@example.com",
    )
    assert (second.direction, second.sender_id) == ("outgoing", None)
    assert {m.chat_guid for m in messages} == {"iMessage;-;friend@example.com"}
    assert first.message_type == "text" and first.edited_at is None
    assert chats[1].participants == ("friend@example.com",)


def test_special_characters_in_the_path(generated_db: GeneratedChatDB, tmp_path: Path) -> None:
    odd = tmp_path / "Messages #1 ?copy% & more" / "chat.db"
    odd.parent.mkdir()
    shutil.copyfile(generated_db.path, odd)
    with ChatDB.open(odd) as db:
        assert db.max_rowid() == len(generated_db.messages)


def test_message_text_is_never_logged(generated_db: GeneratedChatDB) -> None:
    with capture_logs() as logs, ChatDB.open(generated_db.path) as db:
        read_all(db)
        db.chats()
        db.changed_since(ChatCursor())
    assert logs
    rendered = repr(logs)
    texts = {e.text for e in generated_db.messages.values() if e.text and len(e.text) > 8}
    assert texts
    assert not [text for text in texts if text in rendered]
