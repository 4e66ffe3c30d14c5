"""Browsing conversations and messages, and the context builder, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from convassist.core.errors import NotFound
from convassist.server.conversations import service
from convassist.server.models import Conversation, Message
from tests.support import chats

pytestmark = pytest.mark.asyncio

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALICE, BOB, CAROL = "+15550001111", "+15550002222", "carol@example.com"


message = partial(chats.message, start=T0)
sync = chats.sync


async def message_id(app: Any, guid: str) -> str:
    async with app.state.sessionmaker() as session:
        found = await session.execute(sa.select(Message.id).where(Message.imessage_guid == guid))
        return str(found.scalar_one())


@pytest.fixture
async def world(device_client: httpx.AsyncClient) -> dict[str, str]:
    """Alice (1:1), a named group, an unnamed group, Bob (no contact card) and an empty chat."""
    await device_client.post(
        "/api/sync/contacts",
        json={
            "contacts": [
                {"appleId": ALICE, "displayName": "Alice Liddell"},
                {"appleId": CAROL, "displayName": "Carol Ødegård"},
            ]
        },
    )
    ids = {}
    ids["alice"] = await sync(
        device_client,
        "iMessage;-;" + ALICE,
        [
            message("A1", 1, "Hey, how's it going?", sender=ALICE),
            message("A2", 2, "Pretty good, just working\non some code"),
            message("A3", 3, "Loved “Pretty good”", sender=ALICE, messageType="reaction"),
            message("A4", 4, None, sender=ALICE, messageType="attachment"),
            message("A5", 5, "oops", isUnsent=True),
            message("A6", 6, "Nice! What are you building?", sender=ALICE),
            message("A7", 7, "A sync server"),
        ],
        participants=[ALICE],
    )
    ids["group"] = await sync(
        device_client,
        "iMessage;+;chat-trip",
        [
            message("G1", 10, "dinner at 8?", sender=ALICE),
            message("G2", 11, "I'm in", sender=BOB),
            message("G3", 12, "me too", sender=CAROL),
            message("G4", 13, "great"),
        ],
        participants=[ALICE, BOB, CAROL],
        name="Trip 100%",
        group=True,
    )
    ids["unnamed"] = await sync(
        device_client,
        "iMessage;+;chat-unnamed",
        [message("U1", 8, "hello all", sender=BOB)],
        participants=[ALICE, BOB],
        group=True,
    )
    ids["bob"] = await sync(
        device_client,
        "SMS;-;" + BOB,
        [message("B1", 9, "it's Bob", sender=BOB)],
        participants=[BOB],
    )
    ids["empty"] = await sync(device_client, "iMessage;-;nobody", [], participants=[])
    return ids


# --- list and detail --------------------------------------------------------------------------


async def test_list_is_newest_first_with_resolved_names(
    owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    resp = await owner_client.get("/api/conversations")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["nextCursor"] is None
    items = body["items"]
    # Newest activity first; the conversation without messages comes last.
    assert [i["id"] for i in items] == [
        world["group"],
        world["bob"],
        world["unnamed"],
        world["alice"],
        world["empty"],
    ]
    by_id = {i["id"]: i for i in items}
    assert by_id[world["group"]]["displayName"] == "Trip 100%"
    assert by_id[world["alice"]]["displayName"] == "Alice Liddell"
    assert by_id[world["bob"]]["displayName"] == BOB
    assert by_id[world["unnamed"]]["displayName"] == f"Alice Liddell, {BOB}"
    assert by_id[world["empty"]]["displayName"] == "iMessage;-;nobody"
    group = by_id[world["group"]]
    assert group["isGroup"] is True
    assert group["messageCount"] == 4
    assert datetime.fromisoformat(group["lastMessageAt"]) == T0 + timedelta(minutes=13)
    assert group["imessageId"] == "iMessage;+;chat-trip"
    assert [(p["handle"], p["displayName"]) for p in group["participants"]] == [
        (ALICE, "Alice Liddell"),
        (BOB, None),
        (CAROL, "Carol Ødegård"),
    ]
    assert [p["contactId"] is None for p in group["participants"]] == [False, True, False]
    assert by_id[world["empty"]]["lastMessageAt"] is None
    assert by_id[world["alice"]]["messageCount"] == 7


async def test_cursor_pagination_walks_every_conversation_once(
    owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    full = [i["id"] for i in (await owner_client.get("/api/conversations")).json()["items"]]
    for limit in (1, 2, 3):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = (await owner_client.get("/api/conversations", params=params)).json()
            assert len(page["items"]) <= limit
            seen += [i["id"] for i in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == full


async def test_ties_on_last_message_at_are_broken_by_id(
    owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    ids = [
        await sync(device_client, f"chat-{n}", [message(f"T{n}", 1, "same time")], participants=[])
        for n in range(5)
    ]
    for _ in range(2):
        await sync(device_client, f"empty-{_}", [], participants=[])
    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await owner_client.get("/api/conversations", params=params)).json()
        pages += [i["id"] for i in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert pages[:5] == sorted(ids, reverse=True)
    assert len(pages) == len(set(pages)) == 7


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("trip", ["group"]),
        ("TRIP", ["group"]),
        ("alice", ["group", "unnamed", "alice"]),  # a contact name of a participant
        ("LIDDELL", ["group", "unnamed", "alice"]),
        ("2222", ["group", "bob", "unnamed"]),  # a participant's handle
        ("CAROL@", ["group"]),
        ("100%", ["group"]),  # LIKE wildcards are literal
        ("%", ["group"]),
        ("_", []),
        ("Ødegård", ["group"]),
        ("nobody-here", []),
        ("   ", ["group", "bob", "unnamed", "alice", "empty"]),
    ],
)
async def test_search(
    owner_client: httpx.AsyncClient, world: dict[str, str], q: str, expected: list[str]
) -> None:
    resp = await owner_client.get("/api/conversations", params={"q": q})
    assert resp.status_code == 200
    assert [i["id"] for i in resp.json()["items"]] == [world[name] for name in expected]


async def test_search_pages_too(owner_client: httpx.AsyncClient, world: dict[str, str]) -> None:
    first = (await owner_client.get("/api/conversations", params={"q": "alice", "limit": 2})).json()
    assert [i["id"] for i in first["items"]] == [world["group"], world["unnamed"]]
    rest = (
        await owner_client.get(
            "/api/conversations", params={"q": "alice", "limit": 2, "cursor": first["nextCursor"]}
        )
    ).json()
    assert [i["id"] for i in rest["items"]] == [world["alice"]]
    assert rest["nextCursor"] is None


async def test_detail(owner_client: httpx.AsyncClient, world: dict[str, str]) -> None:
    resp = await owner_client.get(f"/api/conversations/{world['unnamed']}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"] == world["unnamed"]
    assert body["displayName"] == f"Alice Liddell, {BOB}"
    assert body["messageCount"] == 1
    listed = (await owner_client.get("/api/conversations")).json()["items"]
    assert body == next(i for i in listed if i["id"] == world["unnamed"])


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/api/conversations/{unknown}", {}, 404, "conversation_not_found"),
        ("/api/conversations/not-a-uuid", {}, 422, "validation_error"),
        ("/api/conversations/{unknown}/messages", {}, 404, "conversation_not_found"),
        ("/api/conversations/not-a-uuid/messages", {}, 422, "validation_error"),
        ("/api/conversations", {"limit": 0}, 422, "validation_error"),
        ("/api/conversations", {"limit": 201}, 422, "validation_error"),
        ("/api/conversations", {"limit": "ten"}, 422, "validation_error"),
        ("/api/conversations", {"cursor": "garbage!"}, 400, "invalid_cursor"),
        ("/api/conversations", {"cursor": "bm90IGpzb24"}, 400, "invalid_cursor"),
        ("/api/conversations", {"q": "x" * 201}, 422, "validation_error"),
        ("/api/conversations/{alice}/messages", {"before": "e30"}, 400, "invalid_cursor"),
        ("/api/conversations/{alice}/messages", {"limit": 201}, 422, "validation_error"),
    ],
)
async def test_browse_errors(
    owner_client: httpx.AsyncClient,
    world: dict[str, str],
    path: str,
    params: dict[str, Any],
    status: int,
    error: str,
) -> None:
    url = path.format(unknown=uuid.uuid4(), alice=world["alice"])
    resp = await owner_client.get(url, params=params)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error


def _cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "payload",
    [
        '{"t": null}',
        '{"t": 5, "id": "x"}',
        '{"t": "2024-05-01T12:00:00", "id": "00000000-0000-0000-0000-000000000000"}',
        '{"t": null, "id": 7}',
        "[1]",
    ],
)
async def test_tampered_cursors_are_refused(
    owner_client: httpx.AsyncClient, world: dict[str, str], payload: str
) -> None:
    resp = await owner_client.get("/api/conversations", params={"cursor": _cursor(payload)})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_cursor"


# --- messages ---------------------------------------------------------------------------------


async def test_messages_page_backwards_in_time(
    owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    url = f"/api/conversations/{world['alice']}/messages"
    newest = (await owner_client.get(url, params={"limit": 3})).json()
    assert [m["imessageGuid"] for m in newest["items"]] == ["A5", "A6", "A7"]
    older = (
        await owner_client.get(url, params={"limit": 3, "before": newest["nextCursor"]})
    ).json()
    assert [m["imessageGuid"] for m in older["items"]] == ["A2", "A3", "A4"]
    oldest = (
        await owner_client.get(url, params={"limit": 3, "before": older["nextCursor"]})
    ).json()
    assert [m["imessageGuid"] for m in oldest["items"]] == ["A1"]
    assert oldest["nextCursor"] is None

    everything = (await owner_client.get(url)).json()
    assert [m["imessageGuid"] for m in everything["items"]] == [f"A{n}" for n in range(1, 8)]
    assert everything["nextCursor"] is None
    first = everything["items"][0]
    assert first["senderId"] == ALICE
    assert first["senderName"] == "Alice Liddell"
    assert first["direction"] == "incoming"
    assert first["messageType"] == "text"
    assert first["text"] == "Hey, how's it going?"
    assert datetime.fromisoformat(first["sentAt"]) == T0 + timedelta(minutes=1)
    assert first["editedAt"] is None and first["isUnsent"] is False
    assert first["replyToGuid"] is None
    assert uuid.UUID(first["id"])
    mine = everything["items"][1]
    assert (mine["senderId"], mine["senderName"], mine["direction"]) == (None, None, "outgoing")


async def test_messages_with_the_same_timestamp_page_without_gaps(
    app: Any, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    conversation = await sync(
        device_client,
        "burst",
        [message(f"S{n}", 1, f"burst {n}", sender=ALICE) for n in range(7)],
        participants=[ALICE],
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"before": cursor} if cursor else {})
        page = (
            await owner_client.get(f"/api/conversations/{conversation}/messages", params=params)
        ).json()
        seen = [m["id"] for m in page["items"]] + seen
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen)


# --- context ----------------------------------------------------------------------------------


async def test_context_renders_the_seed_prompt(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    target = await message_id(app, "A6")
    resp = await owner_client.get(
        f"/api/conversations/{world['alice']}/context", params={"messageId": target}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # The reaction, the caption-less attachment and the unsent message are left out; the
    # newline inside A2 collapses; messages after A6 (A7) are not part of its context.
    assert body["prompt"] == (
        "Them: Hey, how's it going?\n"
        "Me: Pretty good, just working on some code\n"
        "Them: Nice! What are you building?\n"
        "Me:"
    )
    assert body == {
        "conversationId": world["alice"],
        "messageId": target,
        "prompt": body["prompt"],
        "messageCount": 3,
    }


async def test_context_takes_the_last_max_history_messages(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    target = await message_id(app, "A7")
    resp = await owner_client.get(
        f"/api/conversations/{world['alice']}/context",
        params={"messageId": target, "maxHistory": 2},
    )
    assert resp.json()["prompt"] == "Them: Nice! What are you building?\nMe: A sync server\nMe:"
    assert resp.json()["messageCount"] == 2


async def test_group_context_names_the_senders(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    target = await message_id(app, "G3")
    resp = await owner_client.get(
        f"/api/conversations/{world['group']}/context", params={"messageId": target}
    )
    assert resp.json()["prompt"] == (
        f"Alice Liddell: dinner at 8?\n{BOB}: I'm in\nCarol Ødegård: me too\nMe:"
    )


async def test_context_builder_is_reusable_with_only_a_message_id(
    app: Any, world: dict[str, str]
) -> None:
    target = uuid.UUID(await message_id(app, "G4"))
    async with app.state.sessionmaker() as session:
        built = await service.build_context(session, target, max_history=2)
        assert built.conversation_id == uuid.UUID(world["group"])
        assert built.is_group is True
        assert [(line.speaker, line.text) for line in built.lines] == [
            ("them", "me too"),
            ("me", "great"),
        ]
        assert built.prompt == "Carol Ødegård: me too\nMe: great\nMe:"
        with pytest.raises(NotFound):
            await service.build_context(session, uuid.uuid4())
        with pytest.raises(NotFound):
            await service.build_context(session, target, conversation_id=uuid.UUID(world["alice"]))


async def test_context_of_a_message_without_text_history(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(sa.update(Message).values(text=None))
        await session.commit()
    target = await message_id(app, "A7")
    resp = await owner_client.get(
        f"/api/conversations/{world['alice']}/context", params={"messageId": target}
    )
    assert resp.json()["prompt"] == "Me:"
    assert resp.json()["messageCount"] == 0


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"messageId": "{other}"}, 404, "message_not_found"),
        ({"messageId": "{random}"}, 404, "message_not_found"),
        ({}, 422, "validation_error"),
        ({"messageId": "nope"}, 422, "validation_error"),
        ({"messageId": "{mine}", "maxHistory": 0}, 422, "validation_error"),
        ({"messageId": "{mine}", "maxHistory": 101}, 422, "validation_error"),
    ],
)
async def test_context_errors(
    app: Any,
    owner_client: httpx.AsyncClient,
    world: dict[str, str],
    params: dict[str, Any],
    status: int,
    error: str,
) -> None:
    values = {
        "other": await message_id(app, "G1"),
        "mine": await message_id(app, "A1"),
        "random": str(uuid.uuid4()),
    }
    filled = {k: v.format(**values) if isinstance(v, str) else v for k, v in params.items()}
    resp = await owner_client.get(f"/api/conversations/{world['alice']}/context", params=filled)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error


async def test_context_for_an_unknown_conversation(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    target = await message_id(app, "A1")
    resp = await owner_client.get(
        f"/api/conversations/{uuid.uuid4()}/context", params={"messageId": target}
    )
    assert resp.status_code == 404


# --- auth -------------------------------------------------------------------------------------


async def test_everything_needs_the_owner(
    app: Any, device_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    target = await message_id(app, "A1")
    # A client without the owner's session cookie (the shared `client` signed in).
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    paths = [
        "/api/conversations",
        f"/api/conversations/{world['alice']}",
        f"/api/conversations/{world['alice']}/messages",
        f"/api/conversations/{world['alice']}/context?messageId={target}",
    ]
    for path in paths:
        anonymous = await client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.json()["error"] == "not_authenticated"
        # A device token is not an owner session: agents cannot read conversations back.
        as_device = await device_client.get(path)
        assert as_device.status_code == 401, path
        assert "Hey" not in anonymous.text + as_device.text
    await client.aclose()


async def test_counts_in_list_match_the_stored_messages(
    app: Any, owner_client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    items = (await owner_client.get("/api/conversations")).json()["items"]
    async with app.state.sessionmaker() as session:
        for item in items:
            count = (
                await session.execute(
                    sa.select(sa.func.count(Message.id)).where(
                        Message.conversation_id == uuid.UUID(item["id"])
                    )
                )
            ).scalar_one()
            assert item["messageCount"] == count
            stored = await session.get(Conversation, uuid.UUID(item["id"]))
            assert stored is not None and stored.message_count == count
