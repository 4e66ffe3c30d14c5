"""Building sync payloads and syncing them through the device API, for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def message(
    guid: str,
    minute: float,
    text: str | None,
    *,
    start: datetime,
    sender: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A sync message `minute` minutes after `start`; incoming when it has a sender."""
    return {
        "imessageGuid": guid,
        "senderId": sender,
        "direction": "incoming" if sender else "outgoing",
        "text": text,
        "sentAt": (start + timedelta(minutes=minute)).isoformat(),
        **extra,
    }


async def sync(
    device_client: httpx.AsyncClient,
    chat: str,
    messages: list[dict[str, Any]],
    *,
    participants: list[str],
    name: str | None = None,
    group: bool = False,
) -> str:
    """Sync one conversation through the device API; returns its server id."""
    resp = await device_client.post(
        "/api/sync/messages",
        json={
            "conversationId": chat,
            "displayName": name,
            "isGroup": group,
            "participants": participants,
            "messages": messages,
        },
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["conversationId"])


async def incoming_message(
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    *,
    sender: str,
    guid: str,
    text: str,
    at: datetime = datetime(2026, 11, 20, 18, 0, tzinfo=UTC),
) -> str:
    """Sync one incoming message from `sender`, in its own chat; the message's server id."""
    conversation = await sync(
        device_client,
        f"iMessage;-;{sender}",
        [message(guid, 0, text, start=at, sender=sender)],
        participants=[sender],
    )
    page = (await owner_client.get(f"/api/conversations/{conversation}/messages")).json()
    return str(page["items"][-1]["id"])
