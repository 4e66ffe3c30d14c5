"""chat.db missing, unreadable, locked or corrupt: a clear error, a non-zero exit code."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from convassist.agent.chatdb import ChatDB
from convassist.agent.errors import (
    AgentError,
    ChatDBCorrupt,
    ChatDBError,
    ChatDBLocked,
    ChatDBNotFound,
    ChatDBPermissionDenied,
)
from tests.agent.chatdb_factory import GeneratedChatDB


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "chat.db"
    with pytest.raises(ChatDBNotFound) as caught:
        ChatDB.open(path)
    assert str(path) in caught.value.message
    assert caught.value.exit_code == 66


def test_permission_denied_names_full_disk_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.db"
    path.write_bytes(b"SQLite format 3\x00")

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(1, "Operation not permitted", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ChatDBPermissionDenied) as caught:
        ChatDB.open(path)
    message = caught.value.message
    assert "Full Disk Access" in message
    assert sys.executable in message
    assert "Terminal" in message
    assert str(path) in message
    assert caught.value.exit_code == 77


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_mode(generated_db: GeneratedChatDB) -> None:
    generated_db.path.chmod(0)
    try:
        with pytest.raises(ChatDBPermissionDenied):
            ChatDB.open(generated_db.path)
    finally:
        generated_db.path.chmod(0o600)


def test_locked_at_open(generated_db: GeneratedChatDB) -> None:
    locker = sqlite3.connect(generated_db.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ChatDBLocked) as caught:
            ChatDB.open(generated_db.path, timeout=0.05)
        assert "locked" in caught.value.message
        assert caught.value.exit_code == 75
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_locked_while_reading(generated_db: GeneratedChatDB) -> None:
    with ChatDB.open(generated_db.path, timeout=0.05) as db:
        locker = sqlite3.connect(generated_db.path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(ChatDBLocked):
                db.read_messages(0, 10)
            with pytest.raises(ChatDBLocked):
                db.chats()
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert len(db.read_messages(0, 10)) == 10  # usable again once the lock is gone
        assert not db._conn.in_transaction


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not an SQLite database"),
        (b"hello, this is a text file, not a database at all", "not an SQLite database"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "not a database"),
    ],
)
def test_not_a_database(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "chat.db"
    path.write_bytes(content)
    with pytest.raises(ChatDBCorrupt) as caught:
        ChatDB.open(path)
    assert reason in caught.value.message
    assert caught.value.exit_code == 65


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ChatDBError):
        ChatDB.open(tmp_path)


def test_sqlite_without_message_table(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    with pytest.raises(ChatDBCorrupt) as caught:
        ChatDB.open(path)
    assert "no message table" in caught.value.message


def test_message_table_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE message (ROWID INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    with pytest.raises(ChatDBCorrupt) as caught:
        ChatDB.open(path)
    assert "guid" in caught.value.message


def test_corrupt_pages(generated_db: GeneratedChatDB) -> None:
    data = bytearray(generated_db.path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[100:page_size] = b"\xa5" * (page_size - 100)  # the schema page
    generated_db.path.write_bytes(bytes(data))
    with pytest.raises(ChatDBCorrupt) as caught:
        ChatDB.open(generated_db.path)
    assert "malformed" in caught.value.message


def test_corrupt_data_page_while_reading(generated_db: GeneratedChatDB) -> None:
    data = bytearray(generated_db.path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(len(data) // page_size // 2, len(data) // page_size):
        data[page * page_size : page * page_size + 64] = b"\xa5" * 64
    generated_db.path.write_bytes(bytes(data))
    with pytest.raises(ChatDBError), ChatDB.open(generated_db.path) as db:
        db.read_messages(0, 100_000)


def test_every_error_is_an_agent_error_with_a_non_zero_exit() -> None:
    for cls in (ChatDBNotFound, ChatDBPermissionDenied, ChatDBLocked, ChatDBCorrupt):
        assert issubclass(cls, ChatDBError) and issubclass(cls, AgentError)
        assert cls.exit_code != 0
