"""GET /api/inbox and POST /api/inbox/{id}/dismiss, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from convassist.server.inbox.service import LAST_MESSAGES
from convassist.server.models import (
    Conversation,
    Device,
    GeneratedResponse,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
)
from convassist.server.pagination import encode_cursor
from tests.conftest import OWNER_PASSWORD
from tests.support import chats
from tests.support.inbox import add_suggestion, message_id, set_waiting
from tests.support.statements import sent_statements

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ALICE, BOB = "+15550001111", "+15550002222"

message = partial(chats.message, start=T0)


async def _chat(device_client: httpx.AsyncClient, n: int, *, lines: int = 6) -> str:
    """A 1:1 chat whose messages alternate, ending with an incoming one at minute n*10+lines."""
    handle = f"+1555100{n:04d}"
    messages = [
        message(f"c{n}-{i}", n * 10 + i, f"line {i} of {n}", sender=handle if i % 2 else None)
        for i in range(1, lines + 1)
    ]
    return await chats.sync(device_client, f"iMessage;-;{handle}", messages, participants=[handle])


async def _wait(app: Any, conversation_id: str, minutes: float | None) -> None:
    """Set the conversation waiting since T0 + minutes (None: not waiting)."""
    await set_waiting(
        app, conversation_id, None if minutes is None else T0 + timedelta(minutes=minutes)
    )


async def _suggest(
    app: Any,
    message: uuid.UUID,
    *,
    texts: list[str],
    status: ResponseStatus = ResponseStatus.COMPLETED,
    minutes: float = 0,
    retired: bool = False,
    job: str | None = None,
    auto: bool = True,
) -> uuid.UUID:
    return await add_suggestion(
        app,
        message,
        texts=texts,
        status=status,
        created_at=T0 + timedelta(minutes=minutes),
        retired_at=T0 if retired else None,
        job=job,
        auto=auto,
    )


async def test_lists_waiting_conversations_newest_first_with_last_messages(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    ids = [await _chat(device_client, n) for n in range(4)]
    for n, conversation_id in enumerate(ids):
        # Chat 2 is not waiting; the others wait since their last incoming message.
        await _wait(app, conversation_id, None if n == 2 else n * 10 + 5)
    body = (await owner_client.get("/api/inbox")).json()
    assert [item["conversation"]["id"] for item in body["items"]] == [ids[3], ids[1], ids[0]]
    assert body["nextCursor"] is None
    first = body["items"][0]
    assert first["awaitingReplySince"].startswith("2026-05-01T12:35:00")
    assert first["conversation"]["displayName"] == "+15551000003"
    assert first["conversation"]["awaitingReplySince"] == first["awaitingReplySince"]
    texts = [m["text"] for m in first["messages"]]
    assert texts == [f"line {i} of 3" for i in range(7 - LAST_MESSAGES, 7)]
    # The waiting message is the newest incoming one at (or before) awaitingReplySince.
    assert first["waitingMessageId"] == str(await message_id(app, "c3-5"))
    assert first["suggestion"] is None
    # The conversations list carries the marker too.
    listed = (await owner_client.get("/api/conversations")).json()["items"]
    marked = {c["id"]: c["awaitingReplySince"] is not None for c in listed}
    assert marked == {ids[0]: True, ids[1]: True, ids[2]: False, ids[3]: True}


async def test_short_conversations_show_all_their_messages_with_sender_names(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await device_client.post(
        "/api/sync/contacts", json={"contacts": [{"appleId": ALICE, "displayName": "Alice L"}]}
    )
    conversation_id = await chats.sync(
        device_client,
        "iMessage;+;group",
        [message("g1", 1, "dinner?", sender=ALICE), message("g2", 2, "8pm", sender=BOB)],
        participants=[ALICE, BOB],
        group=True,
        name="Dinner",
    )
    await _wait(app, conversation_id, 2)
    item = (await owner_client.get("/api/inbox")).json()["items"][0]
    assert item["conversation"]["displayName"] == "Dinner"
    assert [(m["text"], m["senderName"]) for m in item["messages"]] == [
        ("dinner?", "Alice L"),
        ("8pm", None),
    ]


async def test_pages_by_cursor_without_gaps_on_equal_times(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    ids = [await _chat(device_client, n, lines=1) for n in range(7)]
    for n, conversation_id in enumerate(ids):
        await _wait(app, conversation_id, 100 if n < 4 else n)  # four tie at minute 100
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = (await owner_client.get("/api/inbox", params=params)).json()
        seen += [item["conversation"]["id"] for item in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(ids)
    assert seen[4:] == [ids[6], ids[5], ids[4]]
    bad = await owner_client.get("/api/inbox", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_cursor"


async def test_shows_the_newest_suggestion_that_is_not_retired(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation_id = await _chat(device_client, 1)
    await _wait(app, conversation_id, 15)
    waiting = await message_id(app, "c1-5")
    older = await message_id(app, "c1-3")
    # One live automatic suggestion a message: the others are ones the owner asked for.
    await _suggest(app, waiting, texts=["old one"], minutes=1, auto=False)
    kept = await _suggest(app, waiting, texts=["sure!", "can't today"], minutes=2)
    await _suggest(app, waiting, texts=["retired"], minutes=3, retired=True, auto=False)
    await _suggest(app, older, texts=["for an older message"], minutes=4)
    suggestion = (await owner_client.get("/api/inbox")).json()["items"][0]["suggestion"]
    assert suggestion["id"] == str(kept)
    assert suggestion["status"] == "completed"
    assert suggestion["auto"] is True
    assert [(c["text"], c["confidence"]) for c in suggestion["candidates"]] == [
        ("sure!", 0.9),
        ("can't today", 0.8),
    ]
    # All of them retired: no suggestion.
    async with app.state.sessionmaker() as session:
        await session.execute(sa.update(GeneratedResponse).values(retired_at=T0))
        await session.commit()
    assert (await owner_client.get("/api/inbox")).json()["items"][0]["suggestion"] is None


async def test_a_generating_suggestion_shows_as_generating_when_the_ml_service_is_away(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation_id = await _chat(device_client, 1)
    await _wait(app, conversation_id, 15)
    await _suggest(
        app,
        await message_id(app, "c1-5"),
        texts=[],
        status=ResponseStatus.GENERATING,
        job="job-1",
    )
    suggestion = (await owner_client.get("/api/inbox")).json()["items"][0]["suggestion"]
    assert suggestion["status"] == "generating"
    assert suggestion["candidates"] == []


async def test_the_first_page_lists_replies_sent_lately_until_a_sync_confirms_them(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation_id = await _chat(device_client, 1)
    await _wait(app, conversation_id, 15)
    queued = await owner_client.post(
        "/api/outbox", json={"conversationId": conversation_id, "text": "on my way"}
    )
    assert queued.status_code == 201, queued.text
    now = datetime.now(UTC)
    async with app.state.sessionmaker() as session:
        mac = Device(name="Robin's Mac", hardware_id="HW-1", platform="macOS", os_version="15")
        session.add(mac)
        await session.flush()
        for age, text, status in (
            (5, "claimed", OutboxStatus.SENDING),
            (6, "confirmed", OutboxStatus.CONFIRMED),
            (45, "long ago", OutboxStatus.FAILED),
        ):
            session.add(
                OutboxMessage(
                    conversation_id=uuid.UUID(conversation_id),
                    text=text,
                    status=status,
                    device_id=mac.id,
                    created_at=now - timedelta(minutes=age),
                    expires_at=now - timedelta(minutes=age - 10),
                )
            )
        await session.commit()
    body = (await owner_client.get("/api/inbox")).json()
    assert body["items"] == []  # queuing a reply ends the wait
    sending = body["sending"]
    assert [(s["text"], s["status"], s["deviceName"]) for s in sending] == [
        ("on my way", "queued", None),
        ("claimed", "sending", "Robin's Mac"),
    ]
    assert sending[0]["conversation"]["displayName"] == "+15551000001"
    assert sending[0]["id"] == queued.json()["id"]
    await _wait(app, conversation_id, 15)
    later = await owner_client.get("/api/inbox", params={"limit": 1, "cursor": _cursor()})
    assert later.json()["sending"] == []


def _cursor() -> str:
    return encode_cursor(T0 + timedelta(days=1), uuid.uuid4())


async def test_dismiss_empties_the_row_and_retires_its_suggestions(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation_id = await _chat(device_client, 1)
    other = await _chat(device_client, 2)
    await _wait(app, conversation_id, 15)
    await _wait(app, other, 25)
    ready = await _suggest(app, await message_id(app, "c1-5"), texts=["ok"])
    busy = await _suggest(
        app, await message_id(app, "c1-3"), texts=[], status=ResponseStatus.GENERATING
    )
    untouched = await _suggest(app, await message_id(app, "c2-5"), texts=["fine"])
    # A message newer than the one the owner saw is not dismissed unseen.
    stale = (T0 + timedelta(minutes=14)).isoformat()
    newer = await owner_client.post(f"/api/inbox/{conversation_id}/dismiss", params={"seen": stale})
    assert newer.status_code == 409
    assert newer.json()["error"] == "newer_message"
    assert len((await owner_client.get("/api/inbox")).json()["items"]) == 2
    seen = (T0 + timedelta(minutes=15)).isoformat()
    resp = await owner_client.post(f"/api/inbox/{conversation_id}/dismiss", params={"seen": seen})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "conversationId": conversation_id,
        "wasWaiting": True,
        "retiredSuggestions": 2,
    }
    items = (await owner_client.get("/api/inbox")).json()["items"]
    assert [item["conversation"]["id"] for item in items] == [other]
    async with app.state.sessionmaker() as session:
        rows = {r.id: r for r in (await session.execute(sa.select(GeneratedResponse))).scalars()}
    assert rows[ready].status is ResponseStatus.REJECTED
    assert rows[ready].rejection_reason == "no_reply_needed"
    assert rows[ready].retired_at is not None
    assert rows[busy].status is ResponseStatus.GENERATING
    assert rows[busy].retired_at is not None
    assert rows[untouched].retired_at is None
    assert rows[untouched].status is ResponseStatus.COMPLETED
    again = await owner_client.post(f"/api/inbox/{conversation_id}/dismiss")
    assert again.json()["wasWaiting"] is False
    assert again.json()["retiredSuggestions"] == 0
    missing = await owner_client.post(f"/api/inbox/{uuid.uuid4()}/dismiss")
    assert missing.status_code == 404
    assert missing.json()["error"] == "conversation_not_found"


async def test_needs_the_owner_and_csrf_for_cookie_dismissals(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation_id = await _chat(device_client, 1)
    await _wait(app, conversation_id, 15)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await _anonymous_then_cookie_session(client, owner_client, device_client, conversation_id)


async def _anonymous_then_cookie_session(
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    conversation_id: str,
) -> None:
    assert (await client.get("/api/inbox")).status_code == 401
    assert (await client.post(f"/api/inbox/{conversation_id}/dismiss")).status_code == 401
    assert (await device_client.get("/api/inbox")).status_code == 401
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    csrf = login.json()["csrfToken"]
    assert (await client.get("/api/inbox")).status_code == 200
    refused = await client.post(f"/api/inbox/{conversation_id}/dismiss")
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    forged = await client.post(
        f"/api/inbox/{conversation_id}/dismiss", headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status_code == 403
    assert len((await owner_client.get("/api/inbox")).json()["items"]) == 1
    ok = await client.post(f"/api/inbox/{conversation_id}/dismiss", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert (await owner_client.get("/api/inbox")).json()["items"] == []


async def test_a_page_costs_the_same_queries_for_1_or_50_conversations(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    async def page_statements() -> int:
        with sent_statements(app) as statements:
            resp = await owner_client.get("/api/inbox", params={"limit": 50})
        assert resp.status_code == 200
        return len(statements)

    first = await _chat(device_client, 0)
    await _wait(app, first, 5)
    await _suggest(app, await message_id(app, "c0-5"), texts=["ok"])
    one = await page_statements()
    for n in range(1, 50):
        conversation_id = await _chat(device_client, n)
        async with app.state.sessionmaker() as session:
            await session.execute(
                sa.update(Conversation)
                .where(Conversation.id == uuid.UUID(conversation_id))
                .values(awaiting_reply_since=T0 + timedelta(minutes=n * 10 + 5))
            )
            await session.commit()
        await _suggest(app, await message_id(app, f"c{n}-5"), texts=["ok", "no"])
    fifty = await page_statements()
    assert len((await owner_client.get("/api/inbox", params={"limit": 50})).json()["items"]) == 50
    assert fifty == one
    assert one <= 10
