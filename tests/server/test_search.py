"""Searching conversations by message text (FTS5 on SQLite, GIN on PostgreSQL), both backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from convassist.core.db import create_engine, create_sessionmaker
from convassist.server import migrate
from convassist.server.conversations import service
from convassist.server.models import Conversation, Message
from tests.conftest import TEST_POSTGRES_URL
from tests.support import chats

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
ALICE, BOB, CAROL = "+15550001111", "+15550002222", "carol@example.com"

message = partial(chats.message, start=T0)


async def found(client: httpx.AsyncClient, q: str, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get("/api/conversations", params={"q": q, **params})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def names(client: httpx.AsyncClient, q: str) -> list[str]:
    return [item["displayName"] for item in await found(client, q)]


@pytest.fixture
async def chats_synced(device_client: httpx.AsyncClient) -> dict[str, str]:
    """Three chats: Alice (older), a group, and Bob (newest)."""
    ids = {}
    ids["alice"] = await chats.sync(
        device_client,
        "iMessage;-;" + ALICE,
        [
            message("A1", 1, "Shall we meet at the Café Zürich tomorrow?", sender=ALICE),
            message("A2", 2, "Sure, the crème brûlée there is famous"),
            message(
                "A3", 3, "Loved “Sure, the crème brûlée”", sender=ALICE, messageType="reaction"
            ),
            message("A4", 4, "secret plans", isUnsent=True),
        ],
        participants=[ALICE],
        name="Alice",
    )
    ids["group"] = await chats.sync(
        device_client,
        "iMessage;+;chat-hike",
        [
            message("G1", 10, "Hiking on Saturday, bring water", sender=CAROL),
            message("G2", 11, "I will bring sandwiches", sender=BOB),
        ],
        participants=[BOB, CAROL],
        name="Hiking crew",
        group=True,
    )
    ids["bob"] = await chats.sync(
        device_client,
        "iMessage;-;" + BOB,
        [message("B1", 20, "Don't forget the water bottles!", sender=BOB)],
        participants=[BOB],
        name="Bob",
    )
    return ids


async def test_a_word_from_a_message_finds_its_conversation_with_the_match(
    owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    (alice,) = await found(owner_client, "tomorrow")
    assert alice["id"] == chats_synced["alice"]
    match = alice["match"]
    assert match["sentAt"].startswith("2026-04-01T09:01:00")
    assert match["excerpt"] == "Shall we meet at the Café Zürich tomorrow?"
    assert [match["excerpt"][s["start"] : s["end"]] for s in match["highlights"]] == ["tomorrow"]
    page = await owner_client.get(f"/api/conversations/{alice['id']}/messages")
    first = page.json()["items"][0]
    assert (first["id"], first["imessageGuid"]) == (match["messageId"], "A1")
    # Newest first, each with its own newest matching message.
    water = await found(owner_client, "water")
    assert [item["displayName"] for item in water] == ["Bob", "Hiking crew"]
    assert water[1]["match"]["excerpt"] == "Hiking on Saturday, bring water"
    assert await names(owner_client, "bring") == ["Hiking crew"]
    assert (await found(owner_client, "bring"))[0]["match"]["excerpt"].startswith("I will")


async def test_name_search_still_works_and_carries_no_match(
    owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    (crew,) = await found(owner_client, "hiking crew")
    assert crew["match"] is None  # "crew" is in no message
    (by_handle,) = await found(owner_client, "carol@example")
    assert by_handle["displayName"] == "Hiking crew"
    assert by_handle["match"] is None
    assert await names(owner_client, "zebra") == []


async def test_every_word_must_match_and_the_last_is_a_prefix(
    owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    assert await names(owner_client, "bring water") == ["Hiking crew"]
    assert await names(owner_client, "water bring") == ["Hiking crew"]
    assert await names(owner_client, "bring zebra") == []
    assert await names(owner_client, "sandw") == ["Hiking crew"]
    assert await names(owner_client, "wat") == ["Bob", "Hiking crew"]
    assert await names(owner_client, "bottles wat") == ["Bob"]
    # Only the last word is a prefix, and only from three letters on.
    assert await names(owner_client, "wat bottles") == []
    assert await names(owner_client, "bring w") == []
    assert await names(owner_client, "bring wa") == []
    (highlighted,) = await found(owner_client, "forget wat")
    excerpt = highlighted["match"]["excerpt"]
    marked = [excerpt[s["start"] : s["end"]] for s in highlighted["match"]["highlights"]]
    assert marked == ["forget", "water"]


async def test_case_and_diacritics_do_not_matter(
    owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    for q in ("cafe zurich", "CAFÉ ZÜRICH", "Creme Brulee", "brû", "cafe", "ZUR"):
        assert await names(owner_client, q) == ["Alice"], q


async def test_edits_unsends_and_reactions(
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    chats_synced: dict[str, str],
) -> None:
    assert await names(owner_client, "secret") == []  # unsent when it arrived
    assert await names(owner_client, "loved") == []  # a reaction
    edited = message("B1", 20, "Remember the lemonade", sender=BOB, editedAt=T0.isoformat())
    await chats.sync(device_client, "iMessage;-;" + BOB, [edited], participants=[BOB], name="Bob")
    assert await names(owner_client, "lemonade") == ["Bob"]
    assert await names(owner_client, "bottles") == []
    unsent = message("G2", 11, "", sender=BOB, isUnsent=True)
    await chats.sync(
        device_client,
        "iMessage;+;chat-hike",
        [unsent],
        participants=[BOB],
        name="Hiking crew",
        group=True,
    )
    assert await names(owner_client, "sandwiches") == []
    assert await names(owner_client, "water") == ["Hiking crew"]


async def test_query_syntax_is_never_an_error(
    owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    for q in ('"', "'", "*", "(", ")", ":*", "&|!", '"""', "-", "^", "NEAR(", "' OR 1=1 --"):
        assert await names(owner_client, q) == [], q
    assert await names(owner_client, 'water OR "zebra"') == []  # OR is just a word
    assert await names(owner_client, "text:water") == []
    assert await names(owner_client, '"bring" water*') == ["Hiking crew"]
    assert await names(owner_client, "don't") == ["Bob"]
    assert await names(owner_client, "bring & water | (x") == []


async def test_results_page_by_recency(
    owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    for i in range(5):
        await chats.sync(
            device_client,
            f"chat-{i}",
            [message(f"p{i}", i, f"pizza night {i}", sender=ALICE)],
            participants=[ALICE],
            name=f"Chat {i}",
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "pizza", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await owner_client.get("/api/conversations", params=params)).json()
        seen += [item["displayName"] for item in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"Chat {i}" for i in range(4, -1, -1)]


async def test_deleting_a_conversation_removes_its_entries(
    app: Any, owner_client: httpx.AsyncClient, chats_synced: dict[str, str]
) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            sa.delete(Conversation).where(Conversation.id == uuid.UUID(chats_synced["group"]))
        )
        await session.commit()
        if session.get_bind().dialect.name == "sqlite":
            left = await session.execute(
                sa.text(
                    "SELECT count(*) FROM message_search"
                    " UNION ALL SELECT count(*) FROM message_search_fts"
                )
            )
            assert left.scalars().all() == [3, 3]  # Alice's two texts and Bob's one
            stale = await session.execute(
                sa.text(
                    "SELECT count(*) FROM message_search_fts"
                    " WHERE message_search_fts MATCH 'hiking'"
                )
            )
            assert stale.scalar_one() == 0
    assert await names(owner_client, "water") == ["Bob"]
    assert await names(owner_client, "sandwiches") == []


async def test_search_triggers_exist_at_head(sqlite_url: str) -> None:
    """A migration that rebuilds `messages` on SQLite drops its triggers: it must remake them."""
    engine = create_async_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT name FROM sqlite_master"
                    " WHERE type = 'trigger' AND tbl_name = 'messages'"
                )
            )
            assert set(rows.scalars()) >= {
                "messages_search_insert",
                "messages_search_update",
                "messages_search_delete",
            }
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (nothing migrated), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'search.sqlite3'}"
        return
    name = f"convassist_search_{uuid.uuid4().hex[:8]}"
    admin = make_url(TEST_POSTGRES_URL).set(drivername="postgresql+asyncpg")

    async def run(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield admin.set(database=name).render_as_string(False)
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_migration_indexes_messages_stored_before_it(empty_database: str) -> None:
    url = empty_database
    migrate.upgrade(url, "0003")

    async def store() -> None:
        engine = create_async_engine(url)
        conversation = uuid.uuid4()
        try:
            async with engine.begin() as conn:
                # The columns of 0003 only (later migrations add more to the model).
                old = sa.table(
                    "conversations",
                    *(
                        sa.column(name, Conversation.__table__.c[name].type)
                        for name in (
                            "id",
                            "imessage_id",
                            "last_message_at",
                            "is_group",
                            "message_count",
                            "created_at",
                            "updated_at",
                        )
                    ),
                )
                await conn.execute(
                    sa.insert(old).values(
                        id=conversation,
                        imessage_id="chat-old",
                        last_message_at=T0,
                        is_group=False,
                        message_count=0,
                        created_at=T0,
                        updated_at=T0,
                    )
                )
                await conn.execute(
                    sa.insert(Message.__table__),
                    [
                        {
                            "id": uuid.uuid4(),
                            "conversation_id": conversation,
                            "imessage_guid": guid,
                            "direction": "incoming",
                            "text": text,
                            "sent_at": T0,
                            "is_unsent": unsent,
                        }
                        for guid, text, unsent in (
                            ("old-1", "Ancient lighthouse", False),
                            ("old-2", "hidden treasure", True),
                        )
                    ],
                )
        finally:
            await engine.dispose()

    async def search(q: str) -> list[str]:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                page = await service.list_conversations(session, q=q, limit=10, cursor=None)
                return [item.match.excerpt for item in page.items if item.match]
        finally:
            await engine.dispose()

    asyncio.run(store())
    migrate.upgrade(url)
    assert asyncio.run(search("lighthouse")) == ["Ancient lighthouse"]
    assert asyncio.run(search("treasure")) == []
    migrate.downgrade(url, "0003")
    migrate.upgrade(url)
    assert asyncio.run(search("ancient LIGHT")) == ["Ancient lighthouse"]
