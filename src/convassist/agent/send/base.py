"""What a sender is: one outbox entry in, sent or `SendFailed` out."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from convassist.agent.errors import AgentError

__all__ = ["OutboxBatch", "OutboxItem", "SendFailed", "Sender", "text_hash"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An entry the server handed this device (`GET /api/sync/outbox`)."""

    id: str
    chat_guid: str
    is_group: bool
    text: str
    expires_in_seconds: float
    attempt: int = 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutboxItem:
        return cls(
            id=str(data["id"]),
            chat_guid=str(data["chatGuid"]),
            is_group=bool(data.get("isGroup")),
            text=str(data["text"]),
            expires_in_seconds=float(data["expiresInSeconds"]),
            attempt=int(data.get("attempt") or 1),
        )


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    items: list[OutboxItem]
    poll_after_seconds: float


class SendFailed(AgentError):
    """Messages did not send the entry; `reason` says why (never the message text).

    `uncertain`: the sender cannot tell whether Messages sent it (e.g. it timed out); the
    outbox loop then leaves the entry to the chat.db check instead of reporting a failure.
    """

    def __init__(self, reason: str, *, uncertain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.uncertain = uncertain


class Sender(Protocol):
    """Sends one message into its chat (individual or group); raises `SendFailed`."""

    name: str

    async def send(self, item: OutboxItem) -> None: ...


def text_hash(text: str) -> str:
    """The journal's fingerprint of a text (the journal never stores the text itself)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()
