"""Suggestions ready before the owner looks: the background `Suggester`.

Sync's router hands it a conversation whose newest message now waits on the owner's reply
(`notify`, once the sync's transaction has committed); notify only records the id, so a sync
is never slowed and never fails because of suggestions. The Suggester, an asyncio task the
app starts like the reconciler, queues an `auto` suggestion with `CANDIDATES` candidates for
that message through the one generation path (`responses.service.generate`, async: the ML
service works in the background and the reconciler stores its result).

A sweep at start-up and every `SWEEP_SECONDS` picks up what a restart or an unreachable ML
service left: conversations waiting (within the max age) whose waiting message has no
suggestion, or only failed ones (at most `MAX_ATTEMPTS` tries per message).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convassist.core.db import session_scope
from convassist.core.errors import AppError
from convassist.core.logging import get_logger
from convassist.core.suggestions import CANDIDATES
from convassist.server.conversations.consent import allowed
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Conversation,
    Direction,
    GeneratedResponse,
    Message,
    MessageType,
    ResponseStatus,
    utcnow,
)
from convassist.server.responses import service as responses
from convassist.server.responses.schemas import GenerateRequest
from convassist.server.suggest.gate import SuggestPolicy, check

log = get_logger(__name__)

SWEEP_SECONDS = 60.0
MAX_ATTEMPTS = 3
SWEEP_LIMIT = 500
"""Most conversations one sweep looks at (the most recently waiting first)."""


class Suggester:
    """Queues automatic suggestions in the background (`start` / `notify` / `stop`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        ml: MLClient,
        policy: SuggestPolicy,
        *,
        sweep_interval: float = SWEEP_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.ml = ml
        self.policy = policy
        self.sweep_interval = sweep_interval
        self._queue: dict[uuid.UUID, None] = {}  # an ordered set
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.policy.auto:
            self._task = asyncio.create_task(self._run(), name="suggester")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def notify(self, conversation_id: uuid.UUID) -> None:
        """A sync made this conversation wait on the owner (its transaction has committed)."""
        if self.policy.auto:
            self._queue[conversation_id] = None
            self._wake.set()

    async def _run(self) -> None:
        next_sweep = 0.0
        while True:
            self._wake.clear()
            try:
                if time.monotonic() >= next_sweep:
                    await self.sweep()
                    next_sweep = time.monotonic() + self.sweep_interval
                await self.drain()
            except Exception as exc:  # a database hiccup must not end the loop
                # Only the type: a database error's text may carry a prompt's parameters.
                log.warning("suggester_failed", error_type=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                timeout = max(next_sweep - time.monotonic(), 0.0)
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def drain(self) -> list[uuid.UUID]:
        """Suggest for every notified conversation; the suggestions queued."""
        queued: list[uuid.UUID] = []
        while self._queue:
            conversation_id = next(iter(self._queue))
            del self._queue[conversation_id]
            if (response_id := await self.suggest(conversation_id)) is not None:
                queued.append(response_id)
        return queued

    async def sweep(self) -> list[uuid.UUID]:
        """Suggest for every waiting conversation that lacks a suggestion (after a restart,
        or an ML service that was down); the suggestions queued."""
        async with self.sessionmaker() as session:
            waiting = list(
                (
                    await session.execute(
                        select(Conversation.id)
                        .where(Conversation.awaiting_reply_since >= self._cutoff())
                        .order_by(Conversation.awaiting_reply_since.desc())
                        .limit(SWEEP_LIMIT)
                    )
                ).scalars()
            )
        queued = [r for c in waiting if (r := await self.suggest(c)) is not None]
        if queued:
            log.info("suggestions_swept", waiting=len(waiting), queued=len(queued))
        return queued

    async def suggest(self, conversation_id: uuid.UUID) -> uuid.UUID | None:
        """Queue an automatic suggestion for the conversation's waiting message, unless it
        has one (or failed `MAX_ATTEMPTS` times); the suggestion's id."""
        if not self.policy.auto:
            return None
        try:
            async with session_scope(self.sessionmaker) as session:
                message_id = await self._due(session, conversation_id)
                if message_id is None:
                    return None
                request = GenerateRequest(
                    message_id=message_id, candidates=CANDIDATES, run_async=True
                )
                view = await responses.generate(session, self.ml, request, auto=True)
                return view.row.id
        except AppError as exc:  # stored as `failed`; the sweep tries again
            log.warning("auto_suggest_failed", conversation_id=str(conversation_id), error=exc.code)
            return None
        except IntegrityError:  # another server queued it first (one live auto per message)
            log.info("auto_suggest_taken", conversation_id=str(conversation_id))
            return None

    def _cutoff(self) -> datetime:
        return utcnow() - self.policy.max_age

    async def _due(self, session: AsyncSession, conversation_id: uuid.UUID) -> uuid.UUID | None:
        """The waiting message, if it still waits, is recent, needs a suggestion, and the
        owner allows suggestions in the conversation (`conversations/consent.py`)."""
        rows = (
            await session.execute(
                select(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(
                    Conversation.id == conversation_id,
                    Conversation.awaiting_reply_since >= self._cutoff(),
                    allowed("suggestions"),
                    Message.conversation_id == conversation_id,
                    Message.sent_at == Conversation.awaiting_reply_since,
                    Message.direction == Direction.INCOMING,
                    Message.message_type != MessageType.REACTION,
                )
                .order_by(Message.id.desc())
            )
        ).scalars()
        # Sync's gate chose it (groups included); among messages of the same second, the
        # newest that passes the gate's message rules is the one.
        message = next(
            (
                m
                for m in rows
                if check(m, is_group=False, owner_participates=True, policy=self.policy) is None
            ),
            None,
        )
        if message is None:
            return None
        statuses = list(
            (
                await session.execute(
                    select(GeneratedResponse.status).where(
                        GeneratedResponse.message_id == message.id
                    )
                )
            ).scalars()
        )
        failed = sum(1 for status in statuses if status is ResponseStatus.FAILED)
        if len(statuses) > failed or failed >= MAX_ATTEMPTS:
            return None
        return message.id
