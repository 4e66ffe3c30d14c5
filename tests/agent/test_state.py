"""The agent's state database: registration, per-chat.db cursors, counts, errors, the lock."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from convassist.agent.chatdb import ChatCursor
from convassist.agent.state import (
    STATE_FILE,
    Counts,
    DeviceRegistration,
    StateDB,
    SyncBusy,
    sync_lock,
)


def registration(server: str = "https://ca.example.com") -> DeviceRegistration:
    return DeviceRegistration(
        server_url=server,
        device_id="8b0c0000-0000-0000-0000-000000000001",
        device_name="Test Mac",
        token_store="file",
        token_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        registered_at=datetime.now(UTC),
    )


def test_new_state_is_private_and_empty(tmp_path: Path) -> None:
    state_dir = tmp_path / "agent"
    assert StateDB.open_existing(state_dir) is None
    assert not state_dir.exists()
    with StateDB.open(state_dir) as state:
        assert state.registration() is None
        assert state.cursor(tmp_path / "chat.db") is None
        assert state.totals() == Counts()
        assert state.last_sync_at() is None and state.last_error() is None
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / STATE_FILE).stat().st_mode) == 0o600


def test_registration_round_trip(tmp_path: Path) -> None:
    saved = registration()
    with StateDB.open(tmp_path) as state:
        state.save_registration(saved)
    with StateDB.open(tmp_path) as state:
        assert state.registration() == saved


def test_cursor_and_counts_move_together(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    with StateDB.open(tmp_path) as state:
        state.commit_batch(db, ChatCursor(10, 5, 3), Counts(sent=10, inserted=9, unchanged=1))
        state.commit_batch(db, ChatCursor(20, 5, 3), Counts(sent=10, inserted=10))
        assert state.cursor(db) == ChatCursor(20, 5, 3)
        assert state.totals() == Counts(sent=20, inserted=19, unchanged=1)
        # Cursors are per chat.db: another database starts from nothing.
        assert state.cursor(tmp_path / "sms.db") is None


def test_a_failed_write_leaves_the_previous_state(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    with StateDB.open(tmp_path) as state:
        state.commit_batch(db, ChatCursor(10, 0, 0), Counts(sent=10, inserted=10))
        blocker = sqlite3.connect(tmp_path / STATE_FILE, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        state._conn.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(Exception, match="Cannot write the agent state"):
            state.commit_batch(db, ChatCursor(20, 0, 0), Counts(sent=10, inserted=10))
        blocker.rollback()
        blocker.close()
        assert state.cursor(db) == ChatCursor(10, 0, 0)
        assert state.totals() == Counts(sent=10, inserted=10)


def test_success_clears_the_last_error(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as state:
        state.record_error("Server down")
        error = state.last_error()
        assert error is not None and error[1] == "Server down"
        assert datetime.now(UTC) - error[0] < timedelta(minutes=1)
        state.record_success(Counts(sent=3, inserted=3), contacts=2, duration_s=1.5)
        assert state.last_error() is None
        assert state.last_sync_at() is not None
        assert state.last_run() == {
            **{name: 0 for name in Counts.__dataclass_fields__},
            "sent": 3,
            "inserted": 3,
            "contacts": 2,
            "duration_s": 1.5,
        }


def test_another_server_starts_from_scratch_the_same_server_keeps_the_cursor(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chat.db"
    with StateDB.open(tmp_path) as state:
        state.save_registration(registration())
        state.commit_batch(db, ChatCursor(10, 0, 0), Counts(sent=10))
        state.save_contacts_digest("abc")
        state.save_registration(registration())  # registered again with the same server
        assert state.cursor(db) == ChatCursor(10, 0, 0)
        assert state.contacts_digest() == "abc"
        state.save_registration(registration("https://other.example.com"))
        assert state.cursor(db) is None
        assert state.totals() == Counts()
        assert state.contacts_digest() is None


def test_restart_forgets_one_cursor_and_the_contacts_digest(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as state:
        state.commit_batch(tmp_path / "a.db", ChatCursor(1, 0, 0), Counts())
        state.commit_batch(tmp_path / "b.db", ChatCursor(2, 0, 0), Counts())
        state.save_contacts_digest("abc")
        state.restart(tmp_path / "a.db")
        assert state.cursor(tmp_path / "a.db") is None
        assert state.cursor(tmp_path / "b.db") == ChatCursor(2, 0, 0)
        assert state.contacts_digest() is None


def _hold_lock(
    state_dir: str,
    ready: multiprocessing.synchronize.Event,
    done: multiprocessing.synchronize.Event,
) -> None:
    with sync_lock(Path(state_dir)):
        ready.set()
        done.wait(30)


def test_only_one_process_syncs_at_a_time(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with (
            pytest.raises(SyncBusy, match=rf"already syncing \(pid {holder.pid}\)"),
            sync_lock(tmp_path),
        ):
            pass
    finally:
        done.set()
        holder.join(30)
    with sync_lock(tmp_path):  # free again
        assert (tmp_path / "sync.lock").read_text() == str(os.getpid())
