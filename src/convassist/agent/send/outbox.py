"""The outbox loop of `agent run`: fetch what the owner chose, send it once, report it.

Each round first reports outcomes the server does not have yet, then claims entries with a
long poll (`GET /api/sync/outbox?wait=`) and handles each one:

1. **journal, then send**: the entry is recorded as `attempted` (its chat and a hash of its
   text, never the text) before the sender is called, and as `sent` or `failed` when it
   returns; only then is the outcome reported (`POST /api/sync/outbox/{id}/result`);
2. **a re-offer or a restart after an attempt** (the agent died, or the network dropped,
   between sending and reporting) never sends blindly: chat.db is checked for an outgoing
   message in that chat with that text, sent at or after the attempt (less `MATCH_MARGIN`).
   Found: it was sent, and is reported `sent` with its GUID. Not found: the send did not
   happen, and it is sent now if still in time. chat.db unreadable: nothing is sent;
3. **never late**: nothing is sent once `expiresInSeconds` (counted on the monotonic clock
   from the fetch) have passed; the entry is reported `failed` (expired) instead.

Without send permission the server answers 403 `send_not_allowed`: the loop logs it once and
asks again every `NOT_ALLOWED_DELAY` seconds. After a send, `on_sent` asks the sync loop for a
sync soon, so that the server sees the message in chat.db and confirms the entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from convassist.agent.client import AgentClient, ServerError
from convassist.agent.errors import AgentError, ChatDBError
from convassist.agent.runner import client_for, load_session, open_chat_db
from convassist.agent.send.applescript import AppleScriptSender
from convassist.agent.send.base import OutboxItem, Sender, SendFailed, text_hash
from convassist.agent.send.dryrun import DryRunSender
from convassist.agent.settings import AgentSettings
from convassist.agent.state import JournalEntry, StateDB
from convassist.core.logging import get_logger

__all__ = ["EXPIRED", "Outbox", "make_sender"]

log = get_logger(__name__)

NOT_ALLOWED_DELAY = 60.0
ERROR_DELAY = 30.0
MAX_POLL_AFTER = 60.0
MATCH_MARGIN = timedelta(seconds=5)
ABANDON_AFTER = timedelta(hours=1)  # an attempt the server no longer offers (long expired)
EXPIRED = "expired before it could be sent"
INTERRUPTED = "interrupted while sending, and not found in Messages"
FINAL_ANSWERS = frozenset({404, 409, 410, 422})  # the server keeps its own outcome


def make_sender(settings: AgentSettings) -> Sender:
    """The configured sender (`CONVASSIST_AGENT_SENDER`)."""
    if settings.sender == "dry-run":
        return DryRunSender(settings.resolved_sent_log)
    return AppleScriptSender()


class Outbox:
    """The send loop; `run` until `stop` is set, `check` for a single round."""

    def __init__(
        self,
        settings: AgentSettings,
        db_path: Path,
        sender: Sender,
        *,
        stop: asyncio.Event,
        on_sent: Callable[[], None] = lambda: None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.db_path = db_path
        self.sender = sender
        self.stop = stop
        self.on_sent = on_sent
        self.transport = transport
        self._refused = False
        self._problem: str | None = None  # the last failure logged (each kind logged once)

    async def run(self) -> None:
        """Rounds until `stop`; a round in progress (a long poll) is cancelled by it. A send
        cut short that way is only `attempted` in the journal: chat.db decides it later."""
        log.info("agent.outbox.started", sender=self.sender.name)
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                current = asyncio.ensure_future(self.check())
                await asyncio.wait({current, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not current.done():
                    current.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await current
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), timeout=current.result())
        finally:
            stopping.cancel()
        log.info("agent.outbox.stopped")

    async def check(self) -> float:
        """One round; returns the seconds to wait before the next."""
        try:
            delay = await self._round()
        except ServerError as exc:
            if exc.status == 403 and exc.code == "send_not_allowed":
                if not self._refused:
                    log.info("agent.outbox.not_allowed", retry_s=NOT_ALLOWED_DELAY)
                self._refused = True
                return NOT_ALLOWED_DELAY
            self._failed(f"{exc.status} {exc.code}", status=exc.status, code=exc.code)
        except AgentError as exc:
            self._failed(type(exc).__name__, error=type(exc).__name__)
        else:
            self._problem = None
            return delay
        return ERROR_DELAY

    def _failed(self, problem: str, **fields: object) -> None:
        if problem != self._problem:
            log.warning("agent.outbox.failed", retry_s=ERROR_DELAY, **fields)
        self._problem = problem

    async def _round(self) -> float:
        state = StateDB.open_existing(self.settings.resolved_state_dir)
        if state is None:
            return NOT_ALLOWED_DELAY  # not registered yet: the sync loop says so
        with state:
            registration, token = load_session(self.settings, state)
            async with client_for(
                self.settings, registration.server_url, token, self.transport
            ) as client:
                await self._flush(client, state)
                started = time.monotonic()
                batch = await client.fetch_outbox(self.settings.outbox_wait)
                if self._refused:
                    log.info("agent.outbox.allowed")
                    self._refused = False
                decided = [
                    await self._handle(client, state, item, started + item.expires_in_seconds)
                    for item in batch.items
                ]
        if not all(decided):
            return ERROR_DELAY  # chat.db must answer first: the server offers it again then
        if batch.items:
            return 0.0  # the server hands out one entry at a time: ask for the next at once
        waited = time.monotonic() - started
        return max(0.0, min(batch.poll_after_seconds, MAX_POLL_AFTER) - waited)

    async def _flush(self, client: AgentClient, state: StateDB) -> None:
        """Report outcomes the server does not have; settle attempts chat.db can answer."""
        for entry in state.unreported():
            if entry.state == "attempted":
                settled = self._settle_attempt(state, entry)
                if settled is None:
                    if datetime.now(UTC) - entry.attempted_at < ABANDON_AFTER:
                        continue  # the server offers it again; it is decided then
                    digest = entry.text_hash
                    state.record_outcome(
                        entry.entry_id, entry.chat_guid, digest, "failed", error=INTERRUPTED
                    )
                    settled = state.journal(entry.entry_id)
                entry = settled or entry
            await self._report(client, state, entry)

    async def _handle(
        self, client: AgentClient, state: StateDB, item: OutboxItem, deadline: float
    ) -> bool:
        """Send (or settle) and report one entry; False when it could not be decided now."""
        entry = state.journal(item.id)
        if entry is not None and entry.state == "attempted":
            try:
                entry = self._settle_attempt(state, entry, strict=True)
            except ChatDBError as exc:  # cannot tell whether it was sent: never send blindly
                log.warning("agent.outbox.unverifiable", entry=item.id, error=type(exc).__name__)
                return False
        if entry is None or entry.state == "attempted":
            entry = await self._send(state, item, deadline)
        if entry is None:
            return False
        await self._report(client, state, entry)
        return True

    def _settle_attempt(
        self, state: StateDB, entry: JournalEntry, *, strict: bool = False
    ) -> JournalEntry | None:
        """An attempt found in chat.db becomes `sent` with its GUID; else the entry as it was
        (`strict`) or None. An unreadable chat.db raises (`strict`) or gives None."""
        try:
            guid = self._find_in_messages(entry)
        except ChatDBError:
            if strict:
                raise
            return None
        if guid is None:
            return entry if strict else None
        log.info("agent.outbox.found_in_messages", entry=entry.entry_id)
        state.record_outcome(
            entry.entry_id, entry.chat_guid, entry.text_hash, "sent", message_guid=guid
        )
        return state.journal(entry.entry_id)

    def _find_in_messages(self, entry: JournalEntry) -> str | None:
        since = entry.attempted_at - MATCH_MARGIN
        with open_chat_db(self.db_path) as db:
            for message in db.recent_outgoing(entry.chat_guid):
                if message.sent_at >= since and text_hash(message.text or "") == entry.text_hash:
                    return message.imessage_guid
        return None

    async def _send(self, state: StateDB, item: OutboxItem, deadline: float) -> JournalEntry | None:
        digest = text_hash(item.text)
        if time.monotonic() >= deadline:
            log.info("agent.outbox.expired", entry=item.id)
            state.record_outcome(item.id, item.chat_guid, digest, "failed", error=EXPIRED)
            return state.journal(item.id)
        state.record_attempt(item.id, item.chat_guid, digest)
        try:
            await self.sender.send(item)
        except SendFailed as exc:
            log.warning("agent.outbox.send_failed", entry=item.id, reason=exc.reason)
            if exc.uncertain:
                return None  # left `attempted`: chat.db decides on the next round
            state.record_outcome(item.id, item.chat_guid, digest, "failed", error=exc.reason)
        else:
            log.info("agent.outbox.sent", entry=item.id, sender=self.sender.name)
            state.record_outcome(item.id, item.chat_guid, digest, "sent")
            self.on_sent()
        return state.journal(item.id)

    async def _report(self, client: AgentClient, state: StateDB, entry: JournalEntry) -> None:
        try:
            status = await client.report_outbox_result(
                entry.entry_id, entry.state, entry.error, entry.message_guid
            )
        except ServerError as exc:
            if exc.status not in FINAL_ANSWERS:
                raise
            log.warning("agent.outbox.report_refused", entry=entry.entry_id, status=exc.status)
        else:
            log.info("agent.outbox.reported", entry=entry.entry_id, status=status)
        state.record_reported(entry.entry_id)
