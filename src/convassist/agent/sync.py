"""The sync engine: chat.db → `POST /api/sync/contacts` and `POST /api/sync/messages`.

One run:

1. asks the server for its limits (`GET /api/sync/status`; this also checks the token);
2. upserts contacts (names of the chat.db handles from the AddressBook) when they changed
   since the last run (a digest is kept in the state);
3. reads new messages (ROWID > cursor) in windows of 50,000 rows, groups each window by
   chat and posts one batch per chat (at most `batch` messages; the conversation id is the
   chat guid, with its name, group flag, service and participants);
4. does the same for rows edited or unsent after the cursor's change stamp.

The cursor moves only over messages the server has confirmed: after each confirmed batch it is
set just before the first unconfirmed message of the window (messages are in cursor order), and
saved with the batch's counts in one transaction. Interrupted anywhere, the next run resends at
most the unconfirmed part of one window; the server deduplicates by guid, so nothing is lost
and nothing is stored twice.

Messages in no chat (e.g. Recently Deleted) are skipped and counted. Reactions (tapbacks) are
sent like any message, in their chat, typed `reaction`, with the text Messages stores (such as
`Loved “…”`); the server keeps them out of prompts. Fields are fitted to the server's limits
before sending (a guid too long to store is skipped and counted), so a 422 means a real
protocol mismatch and stops the run. A 413 splits the batch in two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from convassist.agent.chatdb import ChatCursor, ChatDB, ChatInfo
from convassist.agent.chatdb_decode import ChatMessage
from convassist.agent.client import AgentClient, MessagesResult, ServerError
from convassist.agent.contacts import AddressBookContact, ContactBook
from convassist.agent.state import Counts, StateDB
from convassist.core.logging import get_logger

__all__ = ["Progress", "SyncEngine", "SyncReport", "contact_payload", "message_payload"]

log = get_logger(__name__)

# Rows read and grouped at once: large enough for full batches when messages are spread over
# hundreds of chats (a first sync of 100,000 messages in 400 chats takes a quarter of the time
# it takes with 10,000-row windows), small enough to stay around 25 MB.
WINDOW_ROWS = 50_000
PROGRESS_MIN_MESSAGES = 2000  # a backlog at least this long shows a progress bar
MAX_GUID = 128
MAX_HANDLE = 320
MAX_SERVICE = 32
MAX_NAME = 300
MAX_PARTICIPANTS = 100

Phase = Literal["new", "changes"]


class Progress(Protocol):
    """Where a long sync reports how far it got: `start` with the messages to read, then
    `advance` by each one sent or skipped (new messages only; edits are not counted)."""

    def start(self, total: int) -> None: ...
    def advance(self, messages: int) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncReport:
    counts: Counts
    contacts: int
    batches: int
    duration_s: float
    interrupted: bool
    first_sync: bool


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _fit(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def message_payload(message: ChatMessage) -> dict[str, Any]:
    """One `SyncMessage` in the API's camelCase JSON."""
    sender = message.sender_id
    return {
        "imessageGuid": message.imessage_guid,
        "senderId": sender.strip() if sender and 0 < len(sender.strip()) <= MAX_HANDLE else None,
        "direction": message.direction,
        "messageType": message.message_type,
        "text": message.text,
        "sentAt": message.sent_at.isoformat(),
        "editedAt": _iso(message.edited_at),
        "isUnsent": message.is_unsent,
        "replyToGuid": message.reply_to_guid
        if message.reply_to_guid and len(message.reply_to_guid) <= MAX_GUID
        else None,
        "service": _fit(message.service, MAX_SERVICE),
    }


def conversation_payload(
    chat_guid: str, chat: ChatInfo | None, book: ContactBook | None
) -> dict[str, Any]:
    """The conversation fields of a `SyncMessagesRequest` (everything but `messages`)."""
    if chat is None:
        return {"conversationId": chat_guid[:MAX_NAME], "isGroup": False, "participants": []}
    title = book.chat_title(chat) if book is not None else chat.display_name
    participants = [h.strip() for h in chat.participants if 0 < len(h.strip()) <= MAX_HANDLE]
    return {
        "conversationId": chat_guid[:MAX_NAME],
        "displayName": _fit(title, MAX_NAME),
        "isGroup": chat.is_group,
        "service": _fit(chat.service, MAX_SERVICE),
        "participants": list(dict.fromkeys(participants))[:MAX_PARTICIPANTS],
    }


def contact_payload(contact: AddressBookContact) -> dict[str, Any]:
    return {
        "appleId": contact.apple_id,
        "displayName": _fit(contact.display_name, MAX_NAME),
        "phoneNumber": _fit(contact.phone_number, 64),
        "email": contact.email if contact.email and len(contact.email) <= MAX_HANDLE else None,
    }


@dataclass(slots=True)
class _Batch:
    chat_guid: str
    indexes: list[int]  # positions in the window, ascending


class SyncEngine:
    """Runs one sync of a chat.db into the server; see the module docstring."""

    def __init__(
        self,
        client: AgentClient,
        state: StateDB,
        *,
        db_path: Path,
        batch_size: int = 500,
        concurrency: int = 2,
        contacts: ContactBook | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.state = state
        self.db_path = db_path
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.book = contacts
        self.progress = progress
        self.should_stop = should_stop
        self._chats: dict[str, ChatInfo] = {}
        self._batches = 0
        self._bar: Progress | None = None
        self._head_rowid = 0

    async def run(self, db: ChatDB) -> SyncReport:
        started = time.monotonic()
        limits = await self.client.status()
        self.batch_size = max(1, min(self.batch_size, limits.max_batch))
        contacts = await self._sync_contacts(db, limits.max_contacts)

        head = db.head()
        saved = self.state.cursor(self.db_path)
        first = saved is None
        cursor = saved or ChatCursor(edit_stamp=head.edit_stamp, edit_rowid=head.edit_rowid)
        self._chats = {chat.guid: chat for chat in db.chats().values()}
        log.info(
            "agent.sync.start",
            first_sync=first,
            from_rowid=cursor.rowid,
            head_rowid=head.rowid,
            batch=self.batch_size,
        )
        self._head_rowid = head.rowid
        backlog = db.count_messages(cursor.rowid, head.rowid) if self.progress is not None else 0
        self._bar = self.progress if backlog >= PROGRESS_MIN_MESSAGES else None
        if self._bar is not None:
            self._bar.start(backlog)
        counts = Counts()
        interrupted = False
        try:
            phases: tuple[Phase, ...] = ("new", "changes")
            for phase in phases:
                while not interrupted:
                    if self.should_stop():
                        interrupted = True
                        break
                    if phase == "new":
                        page = db.read_messages(cursor.rowid, WINDOW_ROWS)
                    else:
                        page = db.changed_since(cursor, WINDOW_ROWS)
                    if not page:
                        break
                    cursor, done, page_counts = await self._deliver(db, page, cursor, phase)
                    counts += page_counts
                    interrupted = done < len(page)
        finally:
            if self._bar is not None:
                self._bar.stop()
        duration = time.monotonic() - started
        log.info(
            "agent.sync.done" if not interrupted else "agent.sync.interrupted",
            sent=counts.sent,
            inserted=counts.inserted,
            updated=counts.updated,
            unchanged=counts.unchanged,
            skipped=counts.skipped,
            not_sent=counts.not_sent,
            batches=self._batches,
            cursor_rowid=cursor.rowid,
            seconds=round(duration, 3),
        )
        return SyncReport(counts, contacts, self._batches, duration, interrupted, first)

    # -- contacts ------------------------------------------------------------------------

    async def _sync_contacts(self, db: ChatDB, max_contacts: int) -> int:
        """Send the handles' names when they differ from what was last confirmed."""
        if self.book is None or len(self.book) == 0:
            return 0
        entries = sorted(
            (contact_payload(c) for c in self.book.contacts_for(db.handles())),
            key=lambda c: str(c["appleId"]),
        )
        digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
        if not entries or digest == self.state.contacts_digest():
            return 0
        for start in range(0, len(entries), max_contacts):
            await self.client.sync_contacts(entries[start : start + max_contacts])
        self.state.save_contacts_digest(digest)
        log.info("agent.sync.contacts", count=len(entries))
        return len(entries)

    # -- messages ------------------------------------------------------------------------

    async def _deliver(
        self, db: ChatDB, page: list[ChatMessage], base: ChatCursor, phase: Phase
    ) -> tuple[ChatCursor, int, Counts]:
        """Send one window; returns (cursor, messages confirmed in order, counts)."""
        confirmed = bytearray(len(page))  # 1 = confirmed by the server, or not to be sent
        not_sent: list[int] = []  # in no chat (or an over-long guid): skipped, counted
        batches: list[_Batch] = []
        open_batch: dict[str, _Batch] = {}
        for index, message in enumerate(page):
            guid = message.chat_guid
            if guid is None or len(message.imessage_guid) > MAX_GUID:
                confirmed[index] = 1
                not_sent.append(index)
                continue
            batch = open_batch.get(guid)
            if batch is None or len(batch.indexes) >= self.batch_size:
                batch = open_batch[guid] = _Batch(guid, [])
                batches.append(batch)
            batch.indexes.append(index)
        if any(b.chat_guid not in self._chats for b in batches):
            self._chats = {chat.guid: chat for chat in db.chats().values()}

        prefix = 0
        cursor = base
        total = Counts()
        pending = list(reversed(batches))
        running: dict[asyncio.Task[MessagesResult], _Batch] = {}

        def advance() -> ChatCursor:
            nonlocal prefix
            while prefix < len(page) and confirmed[prefix]:
                prefix += 1
            done = page[:prefix]
            return base.after_messages(done) if phase == "new" else base.after_changes(done)

        failure: BaseException | None = None
        try:
            while pending or running:
                while (
                    failure is None
                    and pending
                    and len(running) < self.concurrency
                    and not self.should_stop()
                ):
                    batch = pending.pop()
                    running[asyncio.create_task(self._send(batch, page))] = batch
                if not running:
                    break  # stopping (asked to, or after a failure): nothing left in flight
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=lambda t: running[t].indexes[0]):
                    batch = running.pop(task)
                    if (error := task.exception()) is not None:
                        failure = failure or error  # let the batches in flight finish first
                        continue
                    result = task.result()
                    for index in batch.indexes:
                        confirmed[index] = 1
                    counts = Counts(
                        sent=len(batch.indexes),
                        inserted=result.inserted,
                        updated=result.updated,
                        unchanged=result.unchanged,
                        skipped=result.skipped,
                    )
                    cursor = advance()
                    self.state.commit_batch(self.db_path, cursor, counts)
                    total += counts
                    if phase == "new":
                        self._advance(page, batch.indexes)
        finally:
            for task in running:  # only when this coroutine itself is cancelled
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if failure is not None:
            raise failure
        cursor = advance()
        if prefix == len(page) and (not_sent or not batches):
            # Messages not sent (in no chat) are counted once, when their window is complete.
            self.state.commit_batch(self.db_path, cursor, Counts(not_sent=len(not_sent)))
            total += Counts(not_sent=len(not_sent))
            if phase == "new":
                self._advance(page, not_sent)
        return cursor, prefix, total

    def _advance(self, page: Sequence[ChatMessage], indexes: Sequence[int]) -> None:
        """Move the progress bar by the messages of the backlog (up to the head) among these."""
        if self._bar is not None:
            done = sum(1 for i in indexes if page[i].rowid <= self._head_rowid)
            if done:
                self._bar.advance(done)

    async def _send(self, batch: _Batch, page: Sequence[ChatMessage]) -> MessagesResult:
        payload = conversation_payload(batch.chat_guid, self._chats.get(batch.chat_guid), self.book)
        messages = [message_payload(page[i]) for i in batch.indexes]
        started = time.monotonic()
        result = await self._post(payload, messages)
        self._batches += 1
        log.debug(
            "agent.sync.batch",
            first_rowid=page[batch.indexes[0]].rowid,
            count=len(messages),
            inserted=result.inserted,
            updated=result.updated,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return result

    async def _post(
        self, conversation: dict[str, Any], messages: list[dict[str, Any]]
    ) -> MessagesResult:
        """Post a batch; a 413 (too large for the server) splits it in two."""
        try:
            return await self.client.sync_messages({**conversation, "messages": messages})
        except ServerError as exc:
            if exc.status != 413 or len(messages) < 2:
                raise
        half = len(messages) // 2
        first = await self._post(conversation, messages[:half])
        second = await self._post(conversation, messages[half:])
        return MessagesResult(
            inserted=first.inserted + second.inserted,
            updated=first.updated + second.updated,
            unchanged=first.unchanged + second.unchanged,
            skipped=first.skipped + second.skipped,
        )
