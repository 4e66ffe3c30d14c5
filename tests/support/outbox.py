"""Outbox test helpers: a conversation waiting on the owner, a ready suggestion, a sender."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from convassist.server.models import (
    Conversation,
    GeneratedResponse,
    OutboxMessage,
    ResponseStatus,
    TrainingSample,
)
from tests.conftest import register_device
from tests.support.chats import incoming_message

AT = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


async def waiting_message(
    app: Any,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    *,
    sender: str = "+15550001111",
    text: str = "Dinner tonight?",
) -> tuple[str, str]:
    """Sync one incoming message and mark its conversation waiting; (conversation, message)."""
    message_id = await incoming_message(
        device_client, owner_client, sender=sender, guid=f"in-{uuid.uuid4()}", text=text, at=AT
    )
    async with app.state.sessionmaker() as session:
        conversation = (
            await session.execute(
                select(Conversation).where(Conversation.imessage_id == f"iMessage;-;{sender}")
            )
        ).scalar_one()
        conversation.awaiting_reply_since = AT
        await session.commit()
    return str(conversation.id), message_id


async def suggestion(
    app: Any,
    message_id: str,
    texts: list[str],
    confidences: list[float | None] | None = None,
    *,
    auto: bool = True,
) -> str:
    """A completed suggestion for `message_id` with these candidates; its id. A message has
    one live automatic suggestion at most: others are the owner's (`auto=False`)."""
    confidences = confidences or [0.8] * len(texts)
    async with app.state.sessionmaker() as session:
        row = GeneratedResponse(
            message_id=uuid.UUID(message_id),
            prompt="them: Dinner tonight?\nme:",
            response=texts[0],
            candidates=[
                {"text": t, "confidence": c} for t, c in zip(texts, confidences, strict=True)
            ],
            status=ResponseStatus.COMPLETED,
            auto=auto,
        )
        session.add(row)
        await session.commit()
        return str(row.id)


async def sender(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    *,
    allowed: bool = True,
    name: str = "Sender Mac",
) -> tuple[str, httpx.AsyncClient]:
    """A registered device (allowed to send unless told otherwise) and a client for it."""
    device_id, token = await register_device(client, owner_client, name=name)
    if allowed:
        resp = await owner_client.patch(f"/api/devices/{device_id}", json={"maySend": True})
        assert resp.status_code == 200, resp.text
        assert resp.json()["maySend"] is True
    device = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
    return device_id, device


async def samples(app: Any) -> list[TrainingSample]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(TrainingSample))).scalars())


async def entry(app: Any, outbox_id: str) -> OutboxMessage:
    async with app.state.sessionmaker() as session:
        row = await session.get(OutboxMessage, uuid.UUID(outbox_id))
        assert row is not None
        return row
