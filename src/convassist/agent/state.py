"""The agent's own small SQLite database: registration, sync cursors, counts, last error,
and the send journal (`outbox_journal`: what the outbox loop attempted, sent and reported).

`<state dir>/agent.sqlite3` (directory 0700, file 0600), in WAL mode so `agent status` can read
while a sync writes. Every change is one transaction, so a crash leaves the previous state.
The cursor is kept per chat.db path (ROWIDs of two different databases are unrelated) and is
moved only by `commit_batch`, which the sync engine calls after the server confirmed a batch,
together with that batch's counts.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from convassist.agent.chatdb import ChatCursor
from convassist.agent.errors import AgentError

__all__ = [
    "Counts",
    "DeviceRegistration",
    "JournalEntry",
    "StateDB",
    "StateError",
    "SyncBusy",
    "sync_lock",
]

STATE_FILE = "agent.sqlite3"
LOCK_FILE = "sync.lock"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cursors (db_path TEXT PRIMARY KEY, rowid INTEGER NOT NULL, "
    "edit_stamp INTEGER NOT NULL, edit_rowid INTEGER NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox_journal (entry_id TEXT PRIMARY KEY, "
    "chat_guid TEXT NOT NULL, text_hash TEXT NOT NULL, state TEXT NOT NULL, "
    "attempted_at TEXT NOT NULL, message_guid TEXT, error TEXT, reported_at TEXT)",
)
_JOURNAL_COLUMNS = (
    "entry_id, chat_guid, text_hash, state, attempted_at, message_guid, error, reported_at"
)
JOURNAL_KEEP_DAYS = 30


class StateError(AgentError):
    """The state database cannot be used."""

    exit_code = 74  # EX_IOERR


class SyncBusy(AgentError):
    """Another agent process is syncing with the same state directory."""

    exit_code = 75  # EX_TEMPFAIL


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    server_url: str
    device_id: str
    device_name: str
    token_store: str
    token_expires_at: datetime | None
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class Counts:
    """Messages handled: sent to the server, and what it did with them."""

    sent: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # stored under another conversation (server side)
    not_sent: int = 0  # in no chat in chat.db (or a guid too long to store): skipped

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One outbox entry this device handled: `state` is attempted (the sender was called and
    did not return), sent or failed; `reported_at` is set once the server has the outcome."""

    entry_id: str
    chat_guid: str
    text_hash: str
    state: str
    attempted_at: datetime
    message_guid: str | None
    error: str | None
    reported_at: datetime | None


def _journal_entry(row: tuple[Any, ...]) -> JournalEntry:
    entry_id, chat_guid, digest, state, attempted, guid, error, reported = row
    return JournalEntry(
        entry_id, chat_guid, digest, state, _time(attempted) or _now(), guid, error, _time(reported)
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class StateDB:
    """Typed access to `agent.sqlite3`; open with `StateDB.open(state_dir)`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> StateDB:
        """Open (creating if needed) the state database in `state_dir`."""
        path = state_dir / STATE_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"Cannot use the agent state database {path}: {exc}") from exc
        return cls(conn, path)

    @classmethod
    def open_existing(cls, state_dir: Path) -> StateDB | None:
        """The state database if one exists (never creates files)."""
        return cls.open(state_dir) if (state_dir / STATE_FILE).exists() else None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- key/value ----------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"Cannot write the agent state {self.path}: {exc}") from exc

    def _get(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    @staticmethod
    def _put(conn: sqlite3.Connection, **values: Any) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, json.dumps(value, default=str)) for key, value in values.items()],
        )

    # -- registration --------------------------------------------------------------------

    def registration(self) -> DeviceRegistration | None:
        data = self._get("registration")
        if not isinstance(data, dict):
            return None
        return DeviceRegistration(
            server_url=data["server_url"],
            device_id=data["device_id"],
            device_name=data["device_name"],
            token_store=data["token_store"],
            token_expires_at=_time(data.get("token_expires_at")),
            registered_at=_time(data["registered_at"]) or _now(),
        )

    def save_registration(self, registration: DeviceRegistration) -> None:
        """Record a new registration; a different server starts from a fresh cursor."""
        previous = self.registration()
        with self._transaction() as conn:
            if previous is None or previous.server_url != registration.server_url:
                conn.execute("DELETE FROM cursors")
                conn.execute("DELETE FROM meta")
                conn.execute("DELETE FROM outbox_journal")
            self._put(conn, registration=asdict(registration))

    def forget(self) -> None:
        """Remove the registration, cursors, counts, errors and the send journal."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM cursors")
            conn.execute("DELETE FROM meta")
            conn.execute("DELETE FROM outbox_journal")

    # -- cursor and counts ---------------------------------------------------------------

    def cursor(self, db_path: Path) -> ChatCursor | None:
        row = self._conn.execute(
            "SELECT rowid, edit_stamp, edit_rowid FROM cursors WHERE db_path = ?", (str(db_path),)
        ).fetchone()
        return ChatCursor(*row) if row else None

    def restart(self, db_path: Path) -> None:
        """Forget the cursor of `db_path` and the contacts digest: the next sync sends all."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM cursors WHERE db_path = ?", (str(db_path),))
            conn.execute("DELETE FROM meta WHERE key = 'contacts_digest'")

    def commit_batch(self, db_path: Path, cursor: ChatCursor, counts: Counts) -> None:
        """After the server confirmed a batch: move the cursor and add the counts, atomically."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO cursors (db_path, rowid, edit_stamp, edit_rowid, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (db_path) DO UPDATE SET rowid = excluded.rowid,"
                " edit_stamp = excluded.edit_stamp, edit_rowid = excluded.edit_rowid, "
                "updated_at = excluded.updated_at",
                (
                    str(db_path),
                    cursor.rowid,
                    cursor.edit_stamp,
                    cursor.edit_rowid,
                    _now().isoformat(),
                ),
            )
            if counts != Counts():
                self._put(conn, totals=asdict(self.totals() + counts))

    def totals(self) -> Counts:
        data = self._get("totals")
        return Counts(**data) if isinstance(data, dict) else Counts()

    # -- outcomes ------------------------------------------------------------------------

    def record_success(self, counts: Counts, contacts: int, duration_s: float) -> None:
        with self._transaction() as conn:
            self._put(
                conn,
                last_sync_at=_now().isoformat(),
                last_run={**asdict(counts), "contacts": contacts, "duration_s": duration_s},
                last_error=None,
            )

    def record_error(self, message: str) -> None:
        """Remember the last failure for `agent status` (the cursor is not touched)."""
        with self._transaction() as conn:
            self._put(conn, last_error={"at": _now().isoformat(), "message": message})

    def last_sync_at(self) -> datetime | None:
        return _time(self._get("last_sync_at"))

    def last_run(self) -> dict[str, Any] | None:
        value = self._get("last_run")
        return value if isinstance(value, dict) else None

    def last_error(self) -> tuple[datetime, str] | None:
        value = self._get("last_error")
        if not isinstance(value, dict):
            return None
        return _time(value.get("at")) or _now(), str(value.get("message") or "")

    def contacts_digest(self) -> str | None:
        value = self._get("contacts_digest")
        return str(value) if value else None

    def save_contacts_digest(self, digest: str) -> None:
        with self._transaction() as conn:
            self._put(conn, contacts_digest=digest)

    # -- send journal ---------------------------------------------------------------------

    def journal(self, entry_id: str) -> JournalEntry | None:
        row = self._conn.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM outbox_journal WHERE entry_id = ?",  # noqa: S608
            (entry_id,),
        ).fetchone()
        return _journal_entry(row) if row else None

    def record_attempt(self, entry_id: str, chat_guid: str, digest: str) -> None:
        """Before the sender is called: the entry is `attempted` from now (durably)."""
        cutoff = (_now() - timedelta(days=JOURNAL_KEEP_DAYS)).isoformat()
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM outbox_journal WHERE reported_at IS NOT NULL AND attempted_at < ?",
                (cutoff,),
            )
            conn.execute(
                "INSERT INTO outbox_journal (entry_id, chat_guid, text_hash, state, attempted_at)"
                " VALUES (?, ?, ?, 'attempted', ?) ON CONFLICT (entry_id) DO UPDATE SET "
                "state = 'attempted', attempted_at = excluded.attempted_at, message_guid = NULL, "
                "error = NULL, reported_at = NULL",
                (entry_id, chat_guid, digest, _now().isoformat()),
            )

    def record_outcome(
        self,
        entry_id: str,
        chat_guid: str,
        digest: str,
        state: str,
        *,
        message_guid: str | None = None,
        error: str | None = None,
    ) -> None:
        """The entry was `sent` or `failed` (recorded even if it was never attempted)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO outbox_journal (entry_id, chat_guid, text_hash, state, attempted_at,"
                " message_guid, error) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id) DO "
                "UPDATE SET state = excluded.state, message_guid = excluded.message_guid, "
                "error = excluded.error, reported_at = NULL",
                (entry_id, chat_guid, digest, state, _now().isoformat(), message_guid, error),
            )

    def record_reported(self, entry_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outbox_journal SET reported_at = ? WHERE entry_id = ?",
                (_now().isoformat(), entry_id),
            )

    def unreported(self) -> list[JournalEntry]:
        """Entries whose outcome the server does not have yet, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM outbox_journal "  # noqa: S608
            "WHERE reported_at IS NULL ORDER BY attempted_at"
        ).fetchall()
        return [_journal_entry(row) for row in rows]

    def recent_sends(self, limit: int = 5) -> list[JournalEntry]:
        rows = self._conn.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM outbox_journal "  # noqa: S608
            "ORDER BY attempted_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_journal_entry(row) for row in rows]


@contextmanager
def sync_lock(state_dir: Path) -> Iterator[None]:
    """Hold `<state dir>/sync.lock` so two agent processes never sync at the same time."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise SyncBusy(
                "Another agent process is already syncing"
                + (f" (pid {holder})" if holder else "")
                + "; this one did nothing. Try again when it has finished."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
