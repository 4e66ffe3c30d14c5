"""Message and contact sync (seed flow 2) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from convassist.core.security import issue_token
from convassist.server.app import create_app
from convassist.server.models import (
    Contact,
    Conversation,
    ConversationParticipant,
    Device,
    Message,
)
from tests.conftest import register_device

pytestmark = pytest.mark.asyncio

CHAT = "iMessage;-;+15550001111"
ALICE = "+15550001111"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET_TEXT = "my-secret-message-text-7f3a"


def msg(n: int, *, text: str | None = None, **extra: Any) -> dict[str, Any]:
    """A message payload; odd numbers are incoming from Alice, even ones outgoing."""
    incoming = n % 2 == 1
    body: dict[str, Any] = {
        "imessageGuid": f"GUID-{n:05d}",
        "senderId": ALICE if incoming else None,
        "direction": "incoming" if incoming else "outgoing",
        "text": text if text is not None else f"message {n}",
        "sentAt": (T0 + timedelta(minutes=n)).isoformat(),
    }
    body.update(extra)
    return body


def batch(messages: list[dict[str, Any]], chat: str = CHAT, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversationId": chat,
        "displayName": None,
        "isGroup": False,
        "participants": [ALICE],
        "messages": messages,
    }
    body.update(extra)
    return body


async def snapshot(app: Any) -> dict[str, Any]:
    """Every stored row that sync may touch, to prove a failed request changed nothing."""
    async with app.state.sessionmaker() as session:
        tables = {}
        for model in (Message, Conversation, ConversationParticipant, Contact):
            rows = (await session.execute(sa.select(model.__table__))).all()
            tables[model.__tablename__] = sorted(tuple(map(str, row)) for row in rows)
        devices = await session.execute(
            sa.select(Device.id, Device.last_sync_at, Device.messages_synced)
        )
        tables["devices"] = sorted(tuple(map(str, row)) for row in devices)
        return tables


async def conversation_row(app: Any, chat: str = CHAT) -> Conversation:
    async with app.state.sessionmaker() as session:
        conversation = (
            await session.execute(sa.select(Conversation).where(Conversation.imessage_id == chat))
        ).scalar_one()
        return conversation


async def actual_counts(app: Any) -> list[tuple[str, int, int, datetime | None, datetime | None]]:
    """Per conversation: (chat, stored count, real count, stored last, real last)."""
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            sa.select(
                Conversation.imessage_id,
                Conversation.message_count,
                sa.select(sa.func.count(Message.id))
                .where(Message.conversation_id == Conversation.id)
                .scalar_subquery(),
                Conversation.last_message_at,
                sa.select(sa.func.max(Message.sent_at))
                .where(Message.conversation_id == Conversation.id)
                .scalar_subquery(),
            ).order_by(Conversation.imessage_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def check_counts(counts: list[tuple[Any, ...]]) -> None:
    for chat, stored, real, stored_last, real_last in counts:
        assert stored == real, chat
        # SQLite hands back the subquery's max() as text; compare instants.
        if isinstance(real_last, str):
            real_last = datetime.fromisoformat(real_last).replace(tzinfo=UTC)
        assert stored_last == real_last, chat


async def device_row(app: Any, device_id: str) -> Device:
    async with app.state.sessionmaker() as session:
        device = await session.get(Device, uuid.UUID(device_id))
        assert device is not None
        return device


@pytest.fixture
async def device(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """(device id, a client with its bearer token)."""
    device_id, token = await register_device(client, owner_client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield device_id, c


# --- messages: the happy paths ----------------------------------------------------------


async def test_batch_is_stored_and_resending_it_stores_nothing_new(
    app: Any, device: tuple[str, httpx.AsyncClient]
) -> None:
    device_id, dc = device
    payload = batch([msg(1), msg(2), msg(3)])
    first = await dc.post("/api/sync/messages", json=payload)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["inserted"] == 3
    assert (body["updated"], body["unchanged"], body["skipped"]) == (0, 0, 0)
    assert body["messageCount"] == 3
    assert datetime.fromisoformat(body["lastMessageAt"]) == T0 + timedelta(minutes=3)
    conversation = await conversation_row(app)
    assert body["conversationId"] == str(conversation.id)

    before = await snapshot(app)
    again = await dc.post("/api/sync/messages", json=payload)
    assert again.status_code == 200
    assert again.json()["inserted"] == 0
    assert again.json()["unchanged"] == 3
    assert again.json()["messageCount"] == 3
    after = await snapshot(app)
    assert after["messages"] == before["messages"]
    assert after["conversation_participants"] == before["conversation_participants"]

    stored = await device_row(app, device_id)
    assert stored.messages_synced == 3
    assert stored.last_sync_at is not None
    check_counts(await actual_counts(app))

    async with app.state.sessionmaker() as session:
        rows = (await session.execute(sa.select(Message).order_by(Message.sent_at))).scalars()
        messages = list(rows)
    assert [m.imessage_guid for m in messages] == ["GUID-00001", "GUID-00002", "GUID-00003"]
    assert messages[0].sender_id == ALICE and messages[0].direction == "incoming"
    assert messages[1].sender_id is None and messages[1].direction == "outgoing"
    assert messages[0].message_type == "text" and messages[0].is_unsent is False
    assert all(m.device_id == uuid.UUID(device_id) for m in messages)
    assert messages[2].sent_at == T0 + timedelta(minutes=3)


async def test_edited_and_unsent_messages_update_in_place(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(1), msg(2)]))
    edited_at = (T0 + timedelta(minutes=5)).isoformat()
    resp = await device_client.post(
        "/api/sync/messages",
        json=batch([msg(1, text="message 1 (edited)", editedAt=edited_at), msg(2)]),
    )
    assert resp.status_code == 200
    assert (resp.json()["inserted"], resp.json()["updated"], resp.json()["unchanged"]) == (0, 1, 1)

    unsent = await device_client.post(
        "/api/sync/messages", json=batch([msg(2, isUnsent=True, text="")])
    )
    assert unsent.json()["updated"] == 1
    assert unsent.json()["messageCount"] == 2

    async with app.state.sessionmaker() as session:
        rows = {m.imessage_guid: m for m in (await session.execute(sa.select(Message))).scalars()}
    assert len(rows) == 2
    assert rows["GUID-00001"].text == "message 1 (edited)"
    assert rows["GUID-00001"].edited_at == T0 + timedelta(minutes=5)
    assert rows["GUID-00002"].is_unsent is True and rows["GUID-00002"].text == ""
    assert rows["GUID-00001"].updated_at >= rows["GUID-00001"].created_at
    check_counts(await actual_counts(app))


async def test_same_instant_in_another_timezone_is_unchanged(
    device_client: httpx.AsyncClient,
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(1)]))
    shifted = (T0 + timedelta(minutes=1)).astimezone(
        datetime.fromisoformat("2024-01-01T00:00:00+05:30").tzinfo
    )
    resp = await device_client.post(
        "/api/sync/messages", json=batch([msg(1, sentAt=shifted.isoformat())])
    )
    assert resp.json()["unchanged"] == 1


async def test_incremental_batches_keep_conversation_counters_right(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(10), msg(11)]))
    # A later batch with older history and an overlap: last_message_at stays the newest.
    resp = await device_client.post(
        "/api/sync/messages", json=batch([msg(1), msg(2), msg(11), msg(12)])
    )
    body = resp.json()
    assert (body["inserted"], body["unchanged"]) == (3, 1)
    assert body["messageCount"] == 5
    assert datetime.fromisoformat(body["lastMessageAt"]) == T0 + timedelta(minutes=12)
    check_counts(await actual_counts(app))


async def test_empty_batch_creates_the_conversation_and_stamps_the_device(
    app: Any, device: tuple[str, httpx.AsyncClient]
) -> None:
    device_id, dc = device
    resp = await dc.post(
        "/api/sync/messages",
        json=batch([], displayName="Book club", isGroup=True, service="iMessage"),
    )
    assert resp.status_code == 200
    assert resp.json()["messageCount"] == 0 and resp.json()["lastMessageAt"] is None
    conversation = await conversation_row(app)
    assert (conversation.display_name, conversation.is_group, conversation.service) == (
        "Book club",
        True,
        "iMessage",
    )
    assert (await device_row(app, device_id)).last_sync_at is not None


async def test_conversation_metadata_follows_the_phone_and_participants_accumulate(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    bob, carol = "+15550002222", "Carol@Example.com"
    first = batch([msg(1)], displayName="Trip", isGroup=True, participants=[ALICE, bob])
    await device_client.post("/api/sync/messages", json=first)
    second = batch(
        [msg(3, senderId=carol)], displayName="Trip 2025", isGroup=True, participants=[bob]
    )
    await device_client.post("/api/sync/messages", json=second)
    conversation = await conversation_row(app)
    assert conversation.display_name == "Trip 2025"
    async with app.state.sessionmaker() as session:
        handles = (
            await session.execute(
                sa.select(ConversationParticipant.handle).order_by(ConversationParticipant.handle)
            )
        ).scalars()
        handles_list = list(handles)
        sender = (
            await session.execute(
                sa.select(Message.sender_id).where(Message.imessage_guid == "GUID-00003")
            )
        ).scalar_one()
    # Senders join the participants; emails are stored lowercase; nobody is removed.
    assert handles_list == sorted([ALICE, bob, "carol@example.com"])
    assert sender == "carol@example.com"
    # A blank name means "no name" (chat.db stores "" for unnamed chats).
    await device_client.post("/api/sync/messages", json=batch([], displayName="  "))
    assert (await conversation_row(app)).display_name is None


async def test_guid_stored_under_another_conversation_stays_there(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(1)]))
    other = "iMessage;-;+15559999999"
    resp = await device_client.post(
        "/api/sync/messages", json=batch([msg(1, text="moved?"), msg(2)], chat=other)
    )
    body = resp.json()
    assert (body["inserted"], body["skipped"], body["messageCount"]) == (1, 1, 1)
    async with app.state.sessionmaker() as session:
        moved = (
            await session.execute(sa.select(Message).where(Message.imessage_guid == "GUID-00001"))
        ).scalar_one()
    assert moved.conversation_id == (await conversation_row(app)).id
    assert moved.text == "message 1"
    check_counts(await actual_counts(app))


async def test_all_message_fields_round_trip(app: Any, device_client: httpx.AsyncClient) -> None:
    full = msg(
        1,
        messageType="attachment",
        editedAt=None,
        isUnsent=False,
        replyToGuid="GUID-00000",
        service="SMS",
    )
    full["text"] = None
    await device_client.post("/api/sync/messages", json=batch([full, msg(2, text="a\x00b")]))
    async with app.state.sessionmaker() as session:
        rows = {m.imessage_guid: m for m in (await session.execute(sa.select(Message))).scalars()}
    first = rows["GUID-00001"]
    assert (first.message_type, first.text, first.reply_to_guid, first.service) == (
        "attachment",
        None,
        "GUID-00000",
        "SMS",
    )
    assert rows["GUID-00002"].text == "ab"  # NUL characters cannot be stored; they are dropped


async def test_a_full_batch_at_the_limit_is_accepted(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    limit = app.state.settings.sync_max_batch
    payload = batch([msg(n) for n in range(limit)])
    resp = await device_client.post("/api/sync/messages", json=payload)
    assert resp.status_code == 200, resp.text
    assert resp.json()["inserted"] == limit
    assert resp.json()["messageCount"] == limit
    resp = await device_client.post("/api/sync/messages", json=payload)
    assert resp.json()["unchanged"] == limit


# --- concurrency ----------------------------------------------------------------------------


async def test_two_devices_syncing_overlapping_batches_at_once_create_no_duplicates(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    """Two agents post overlapping batches of the same chats concurrently, several rounds."""
    tokens = [(await register_device(client, owner_client, name=f"Mac {i}"))[1] for i in range(2)]
    device_ids = [
        (await client.get("/api/sync/status", headers={"Authorization": f"Bearer {t}"})).json()[
            "deviceId"
        ]
        for t in tokens
    ]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        )
        for token in tokens
    ]
    chats = ["iMessage;-;chat-a", "iMessage;+;chat-b"]
    results: list[dict[str, Any]] = []
    try:
        for round_ in range(4):
            base = round_ * 150
            posts = []
            for i, c in enumerate(clients):
                for chat in chats:
                    # Device 0 sends [base, base+200), device 1 sends [base+100, base+300):
                    # a 100-message overlap, and both continue where the other left off.
                    start = base + 100 * i
                    messages = [msg(n) for n in range(start, start + 200)]
                    # Guids are global: give each chat its own.
                    for m in messages:
                        m["imessageGuid"] = f"{chat}/{m['imessageGuid']}"
                    posts.append(c.post("/api/sync/messages", json=batch(messages, chat=chat)))
            responses = await asyncio.gather(*posts)
            for resp in responses:
                assert resp.status_code == 200, resp.text
                results.append(resp.json())
    finally:
        for c in clients:
            await c.aclose()

    distinct = len(chats) * (3 * 150 + 300)  # rounds overlap by 50 + device overlap
    async with app.state.sessionmaker() as session:
        stored = (await session.execute(sa.select(sa.func.count(Message.id)))).scalar_one()
        unique = (
            await session.execute(sa.select(sa.func.count(sa.distinct(Message.imessage_guid))))
        ).scalar_one()
        conversations = (
            await session.execute(sa.select(sa.func.count(Conversation.id)))
        ).scalar_one()
    assert stored == unique == distinct
    assert conversations == len(chats)
    assert sum(r["inserted"] for r in results) == distinct
    assert sum(r["inserted"] + r["unchanged"] for r in results) == 4 * 2 * len(chats) * 200
    check_counts(await actual_counts(app))
    synced = [(await device_row(app, d)).messages_synced for d in device_ids]
    assert sum(synced) == distinct


async def test_the_same_guids_posted_to_two_conversations_at_once_are_stored_once(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    """A guid can only live in one conversation: racing batches of two chats agree on it."""
    tokens = [(await register_device(client, owner_client))[1] for _ in range(2)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        )
        for token in tokens
    ]
    results: list[dict[str, Any]] = []
    try:
        for round_ in range(5):
            shared = [msg(round_ * 100 + n) for n in range(50)]
            posts = [
                c.post(
                    "/api/sync/messages",
                    json=batch(
                        [*shared, *(msg(10_000 * (i + 1) + round_ * 100 + n) for n in range(20))],
                        chat=f"chat-{i}",
                    ),
                )
                for i, c in enumerate(clients)
            ]
            for resp in await asyncio.gather(*posts):
                assert resp.status_code == 200, resp.text
                results.append(resp.json())
    finally:
        for c in clients:
            await c.aclose()
    async with app.state.sessionmaker() as session:
        stored = (await session.execute(sa.select(sa.func.count(Message.id)))).scalar_one()
    assert stored == 5 * (50 + 2 * 20)
    assert sum(r["inserted"] for r in results) == stored
    assert sum(r["skipped"] for r in results) == 5 * 50
    assert all(r["updated"] == 0 and r["unchanged"] == 0 for r in results)
    check_counts(await actual_counts(app))


# --- bad input -------------------------------------------------------------------------------


def _raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


BAD_REQUESTS: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("malformed json", b'{"conversationId": "x", "messages": [', {}, 400, "invalid_json"),
    ("empty body", b"", {}, 400, "invalid_json"),
    (
        "invalid utf-8",
        b'{"conversationId": "x", "messages": [], "displayName": "\xff\xfe"}',
        {},
        400,
        "invalid_json",
    ),
    ("not an object", b"[1, 2]", {}, 422, "validation_error"),
    ("missing messages", _raw({"conversationId": CHAT}), {}, 422, "validation_error"),
    (
        "missing conversation id",
        _raw({"messages": [msg(1)]}),
        {},
        422,
        "validation_error",
    ),
    (
        "messages not a list",
        _raw(batch([])).replace(b'"messages": []', b'"messages": "lots"'),
        {},
        422,
        "validation_error",
    ),
    (
        "wrong type for text",
        _raw(batch([msg(1, text=None) | {"text": 42}])),
        {},
        422,
        "validation_error",
    ),
    ("wrong type for isGroup", _raw(batch([], isGroup="maybe")), {}, 422, "validation_error"),
    ("unknown direction", _raw(batch([msg(1, direction="sideways")])), {}, 422, "validation_error"),
    (
        "unknown message type",
        _raw(batch([msg(1, messageType="hologram")])),
        {},
        422,
        "validation_error",
    ),
    (
        "naive datetime",
        _raw(batch([msg(1, sentAt="2024-05-01T12:00:00")])),
        {},
        422,
        "validation_error",
    ),
    ("not a datetime", _raw(batch([msg(1, sentAt="yesterday")])), {}, 422, "validation_error"),
    (
        "missing sentAt",
        _raw(batch([{k: v for k, v in msg(1).items() if k != "sentAt"}])),
        {},
        422,
        "validation_error",
    ),
    ("empty guid", _raw(batch([msg(1, imessageGuid="")])), {}, 422, "validation_error"),
    (
        "guid too long",
        _raw(batch([msg(1, imessageGuid="G" * 129)])),
        {},
        422,
        "validation_error",
    ),
    (
        "text too long",
        _raw(batch([msg(1, text="x" * 100_001)])),
        {},
        422,
        "validation_error",
    ),
    ("NUL in guid", _raw(batch([msg(1, imessageGuid="a\x00b")])), {}, 422, "validation_error"),
    ("unknown field", _raw(batch([msg(1, colour="red")])), {}, 422, "validation_error"),
    (
        "duplicate guid in batch",
        _raw(batch([msg(1), msg(1, text="again")])),
        {},
        422,
        "validation_error",
    ),
    (
        "too many participants",
        _raw(batch([], participants=[f"+1555{n:07d}" for n in range(101)])),
        {},
        422,
        "validation_error",
    ),
    ("blank participant", _raw(batch([], participants=["  "])), {}, 422, "validation_error"),
    (
        "not json content type",
        _raw(batch([msg(1)])),
        {"content-type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "error"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_input_is_refused_and_changes_nothing(
    app: Any,
    device_client: httpx.AsyncClient,
    raw: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    seeded = await device_client.post("/api/sync/messages", json=batch([msg(1), msg(2)]))
    assert seeded.status_code == 200
    before = await snapshot(app)
    resp = await device_client.post(
        "/api/sync/messages",
        content=raw,
        headers={"content-type": "application/json", **headers},
    )
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == error
    assert body["detail"]
    if b"\xff" in raw:
        assert "UTF-8" in body["detail"]
    if status == 422:
        assert body["errors"] and all(e["location"].startswith("body") for e in body["errors"])
    assert await snapshot(app) == before


async def test_validation_errors_name_the_field_but_never_echo_text(
    device_client: httpx.AsyncClient,
) -> None:
    resp = await device_client.post(
        "/api/sync/messages",
        json=batch([msg(1), msg(2, text=SECRET_TEXT, direction="sideways")]),
    )
    assert resp.status_code == 422
    assert "body.messages.1.direction" in resp.json()["detail"]
    assert SECRET_TEXT not in resp.text


async def test_batch_over_the_limit_is_refused_with_413(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(1)]))
    before = await snapshot(app)
    limit = app.state.settings.sync_max_batch
    resp = await device_client.post(
        "/api/sync/messages", json=batch([msg(n) for n in range(limit + 1)])
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "batch_too_large"
    assert resp.json()["limit"] == limit
    assert str(limit) in resp.json()["detail"]
    assert await snapshot(app) == before


async def test_body_over_the_size_limit_is_refused_with_413(
    app: Any, settings: Any, device_client: httpx.AsyncClient
) -> None:
    await device_client.post("/api/sync/messages", json=batch([msg(1)]))
    before = await snapshot(app)
    small = create_app(settings.model_copy(update={"max_body_bytes": 2000}))
    token = device_client.headers["authorization"]
    payload = _raw(batch([msg(n) for n in range(50)]))
    assert len(payload) > 2000
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=small),
            base_url="http://testserver",
            headers={"Authorization": token, "content-type": "application/json"},
        ) as c:
            declared = await c.post("/api/sync/messages", content=payload)

            async def stream() -> AsyncIterator[bytes]:
                for start in range(0, len(payload), 500):
                    yield payload[start : start + 500]

            streamed = await c.post("/api/sync/messages", content=stream())
            small_ok = await c.post("/api/sync/messages", json=batch([msg(2)]))
    finally:
        await small.state.engine.dispose()
    for resp in (declared, streamed):
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"] == "payload_too_large"
        assert "2000" in resp.json()["detail"]
    assert small_ok.status_code == 200
    after = await snapshot(app)
    assert len(after["messages"]) == len(before["messages"]) + 1


# --- authentication ---------------------------------------------------------------------------

SYNC_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/sync/messages", batch([msg(1)])),
    ("POST", "/api/sync/contacts", {"contacts": [{"appleId": ALICE, "displayName": "Alice"}]}),
    ("GET", "/api/sync/status", None),
]


@pytest.mark.parametrize(("method", "path", "payload"), SYNC_CALLS)
async def test_sync_needs_a_valid_device_token(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
) -> None:
    device_id, token = await register_device(client, owner_client)
    secret = app.state.jwt_secret
    expired, _ = issue_token(
        secret,
        subject=device_id,
        kind="device",
        generation=2,
        lifetime=timedelta(days=1),
        now=datetime.now(UTC) - timedelta(days=2),
    )
    owner_token = owner_client.headers["authorization"]
    before = await snapshot(app)
    cases = {
        "no token": {},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "wrong scheme": {"Authorization": f"Basic {token}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "owner token": {"Authorization": owner_token},
    }
    for name, headers in cases.items():
        resp = await client.request(method, path, json=payload, headers=headers)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["error"] in {
            "not_authenticated",
            "invalid_token",
            "token_expired",
        }, name
    assert (await client.request(method, path, json=payload, headers=_bearer(token))).is_success

    after_ok = await snapshot(app)
    revoked = await owner_client.post(f"/api/devices/{device_id}/deactivate")
    assert revoked.status_code == 200
    resp = await client.request(method, path, json=payload, headers=_bearer(token))
    assert resp.status_code == 401
    assert resp.json()["error"] == "device_revoked"
    assert (await snapshot(app))["messages"] == after_ok["messages"]
    if method == "POST" and path.endswith("messages"):
        assert after_ok["messages"] != before["messages"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- contacts ---------------------------------------------------------------------------------


async def test_contacts_upsert_by_handle(app: Any, device_client: httpx.AsyncClient) -> None:
    contacts = [
        {"appleId": ALICE, "displayName": "Alice", "phoneNumber": ALICE},
        {"appleId": "Bob@Example.COM", "displayName": "Bob", "email": "bob@example.com"},
    ]
    first = await device_client.post("/api/sync/contacts", json={"contacts": contacts})
    assert first.status_code == 200, first.text
    assert first.json() == {"inserted": 2, "updated": 0, "unchanged": 0}

    contacts[0] = {**contacts[0], "displayName": "Alice Liddell", "avatarHash": "abc"}
    contacts.append({"appleId": "+15550003333"})
    second = await device_client.post("/api/sync/contacts", json={"contacts": contacts})
    assert second.json() == {"inserted": 1, "updated": 1, "unchanged": 1}
    third = await device_client.post("/api/sync/contacts", json={"contacts": contacts})
    assert third.json() == {"inserted": 0, "updated": 0, "unchanged": 3}

    async with app.state.sessionmaker() as session:
        stored = {c.apple_id: c for c in (await session.execute(sa.select(Contact))).scalars()}
    assert set(stored) == {ALICE, "bob@example.com", "+15550003333"}
    assert stored[ALICE].display_name == "Alice Liddell"
    assert stored[ALICE].avatar_hash == "abc"
    assert stored["+15550003333"].display_name is None
    assert stored["bob@example.com"].email == "bob@example.com"


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({"contacts": [{"displayName": "No handle"}]}, 422, "validation_error"),
        ({"contacts": [{"appleId": ALICE}, {"appleId": ALICE}]}, 422, "validation_error"),
        ({"contacts": [{"appleId": ALICE, "displayName": 5}]}, 422, "validation_error"),
        ({"contacts": [{"appleId": ALICE, "nickname": "Al"}]}, 422, "validation_error"),
        ({"contacts": "all of them"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"contacts": [{"appleId": f"+1{n:010d}"} for n in range(5001)]}, 413, "batch_too_large"),
    ],
    ids=[
        "missing handle",
        "duplicate",
        "wrong type",
        "unknown field",
        "not a list",
        "empty",
        "5001",
    ],
)
async def test_bad_contacts_are_refused_and_change_nothing(
    app: Any, device_client: httpx.AsyncClient, payload: Any, status: int, error: str
) -> None:
    await device_client.post("/api/sync/contacts", json={"contacts": [{"appleId": ALICE}]})
    before = await snapshot(app)
    resp = await device_client.post("/api/sync/contacts", json=payload)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error
    assert await snapshot(app) == before


async def test_contact_batch_edge_cases(device_client: httpx.AsyncClient) -> None:
    bad_json = await device_client.post(
        "/api/sync/contacts", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "invalid_json"
    full = [{"appleId": f"+1{n:010d}", "displayName": f"Person {n}"} for n in range(5000)]
    resp = await device_client.post("/api/sync/contacts", json={"contacts": full})
    assert resp.status_code == 200
    assert resp.json()["inserted"] == 5000


# --- status -----------------------------------------------------------------------------------


async def test_status_reports_what_the_server_holds(
    app: Any, device: tuple[str, httpx.AsyncClient], device_client: httpx.AsyncClient
) -> None:
    device_id, dc = device
    empty = await dc.get("/api/sync/status")
    assert empty.status_code == 200
    body = empty.json()
    assert body["deviceId"] == device_id
    assert body["lastSyncAt"] is None
    assert (body["conversationCount"], body["messageCount"], body["contactCount"]) == (0, 0, 0)
    assert body["latestMessageAt"] is None
    assert body["maxBatch"] == app.state.settings.sync_max_batch
    assert body["maxContacts"] == 5000
    assert body["maxBodyBytes"] == app.state.settings.max_body_bytes
    assert body["conversation"] is None

    await dc.post("/api/sync/messages", json=batch([msg(1), msg(2), msg(3)]))
    # Another device's messages count for the server, not for this device.
    await device_client.post("/api/sync/messages", json=batch([msg(3), msg(4)], chat="other"))
    await dc.post("/api/sync/contacts", json={"contacts": [{"appleId": ALICE}]})

    status = (await dc.get("/api/sync/status", params={"conversationId": CHAT})).json()
    assert status["lastSyncAt"] is not None
    assert status["messagesSyncedByDevice"] == 3
    assert (status["conversationCount"], status["messageCount"], status["contactCount"]) == (
        2,
        4,
        1,
    )
    assert datetime.fromisoformat(status["latestMessageAt"]) == T0 + timedelta(minutes=4)
    assert status["conversation"] == {
        "conversationId": CHAT,
        "id": str((await conversation_row(app)).id),
        "messageCount": 3,
        "lastMessageAt": status["conversation"]["lastMessageAt"],
        "lastMessageGuid": "GUID-00003",
    }
    assert datetime.fromisoformat(status["conversation"]["lastMessageAt"]) == T0 + timedelta(
        minutes=3
    )
    unknown = (await dc.get("/api/sync/status", params={"conversationId": "nope"})).json()
    assert unknown["conversation"] is None


# --- logging ----------------------------------------------------------------------------------


async def test_sync_never_logs_message_text(
    device_client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    payload = batch([msg(1, text=SECRET_TEXT)], displayName="Name")
    assert (await device_client.post("/api/sync/messages", json=payload)).status_code == 200
    await device_client.post(
        "/api/sync/messages", json=batch([msg(1, text=SECRET_TEXT + " edited")])
    )
    await device_client.post(
        "/api/sync/messages", json=batch([msg(1, text=SECRET_TEXT, direction="bad")])
    )
    await device_client.post(
        "/api/sync/contacts", json={"contacts": [{"appleId": ALICE, "displayName": SECRET_TEXT}]}
    )
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "messages_synced" in logged
    assert SECRET_TEXT not in logged


async def test_openapi_documents_the_sync_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    body = spec["paths"]["/api/sync/messages"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"conversationId", "messages"}
    message = schema["properties"]["messages"]["items"]
    assert "$ref" not in json.dumps(schema)
    assert {"imessageGuid", "direction", "sentAt"} <= set(message["required"])
    contacts = spec["paths"]["/api/sync/contacts"]["post"]["requestBody"]
    assert "contacts" in contacts["content"]["application/json"]["schema"]["properties"]
