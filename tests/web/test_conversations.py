"""The Conversations list (search, cursor pages) and the message thread."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.web.conftest import Browser, message, sync, text_of

pytestmark = pytest.mark.asyncio

ALICE, BOB = "+15550001111", "bob@example.com"


async def _contacts(device_client: httpx.AsyncClient) -> None:
    resp = await device_client.post(
        "/api/sync/contacts",
        json={
            "contacts": [
                {"appleId": ALICE, "phoneNumber": ALICE, "displayName": "Alice Martin"},
                {"appleId": BOB, "email": BOB, "displayName": "Bob Stone"},
            ]
        },
    )
    assert resp.status_code == 200, resp.text


async def test_empty_list_says_how_conversations_arrive(web: Browser) -> None:
    text = text_of((await web.get("/conversations")).text)
    assert "No conversations yet" in text
    assert "Approve your Mac on the Devices page" in text
    assert "No Mac? Run convassist demo on the server" in text


async def test_list_is_newest_first_with_counts_and_pages_by_cursor(
    web: Browser, device_client: httpx.AsyncClient
) -> None:
    for i in range(55):
        await sync(
            device_client,
            f"chat-{i:02d}",
            [
                message(f"m-{i}-{j}", i * 10 + j, f"hello {j}", sender=ALICE)
                for j in range(i % 3 + 1)
            ],
            participants=[ALICE],
            name=f"Chat {i:02d}",
        )
    page = await web.get("/conversations")
    names = re.findall(r'class="conversation-name">(Chat \d\d)', page.text)
    assert names == [f"Chat {i:02d}" for i in range(54, 4, -1)]
    text = text_of(page.text)
    assert "Chat 54 +15550001111" in text
    assert "1 message" in text
    assert "3 messages" in text
    more = re.search(r'hx-get="(/conversations\?q=&amp;cursor=[^"]+)"', page.text)
    assert more
    rest = await web.get(more.group(1).replace("&amp;", "&"), htmx=True)
    assert rest.status_code == 200
    assert "<html" not in rest.text
    assert re.findall(r'class="conversation-name">(Chat \d\d)', rest.text) == [
        f"Chat {i:02d}" for i in range(4, -1, -1)
    ]
    assert "Show more conversations" not in rest.text
    # Without JavaScript the same link opens that page of results.
    plain = await web.get(unquote(more.group(1).replace("&amp;", "&")))
    assert plain.status_code == 200
    assert "Chat 04" in plain.text


async def test_search_by_name_handle_and_contact(
    web: Browser, device_client: httpx.AsyncClient
) -> None:
    await _contacts(device_client)
    await sync(
        device_client, "c-alice", [message("a1", 1, "hi", sender=ALICE)], participants=[ALICE]
    )
    await sync(
        device_client,
        "c-group",
        [message("g1", 2, "yo", sender=BOB)],
        participants=[ALICE, BOB],
        name="Climbing crew",
        group=True,
    )
    await sync(
        device_client, "c-other", [message("o1", 3, "x", sender="+1999")], participants=["+1999"]
    )

    async def names(q: str) -> list[str]:
        resp = await web.get(f"/conversations?q={q}", htmx=True)
        assert resp.status_code == 200
        assert 'id="conversation-list"' in resp.text
        return re.findall(r'class="conversation-name">([^<]+?)(?:\s*<|$)', resp.text)

    assert await names("climb") == ["Climbing crew"]
    assert await names("bob%20stone") == ["Climbing crew"]
    assert await names("alice") == ["Climbing crew", "Alice Martin"]
    assert await names("5550001111") == ["Climbing crew", "Alice Martin"]
    empty = await web.get("/conversations?q=zebra", htmx=True)
    assert "No conversation matches “zebra”" in text_of(empty.text)
    group = text_of((await web.get("/conversations?q=climb")).text)
    assert "Climbing crew Group Alice Martin, Bob Stone" in group


async def test_thread_reads_like_messages(web: Browser, device_client: httpx.AsyncClient) -> None:
    await _contacts(device_client)
    conversation = await sync(
        device_client,
        "c-group",
        [
            message("g1", 0, "Who's in for climbing Saturday?", sender=ALICE),
            message("g2", 1, "me!", sender=ALICE),
            message("g3", 2, "I can drive", sender=BOB, editedAt="2026-03-02T09:03:00+00:00"),
            message("g4", 3, None, sender=BOB, isUnsent=True),
            message("g5", 90, "count me in"),
            message("g6", 91, "Loved “count me in”", sender=ALICE, messageType="reaction"),
            message("g7", 60 * 24 + 5, "<b>see you</b>", sender=ALICE),
        ],
        participants=[ALICE, BOB],
        name="Climbing crew",
        group=True,
    )
    page = await web.get(f"/conversations/{conversation}")
    assert page.status_code == 200
    html = page.text
    text = text_of(html)
    assert "This is the start of your conversation with Climbing crew." in text
    # Sender names once per run, in groups.
    assert text.count("Alice Martin Who's in for climbing Saturday?") == 1
    assert "Bob Stone I can drive" in text
    assert "Edited" in text
    assert "Bob Stone unsent a message" in text
    assert "You: " not in text
    assert "Alice Martin: Loved “count me in”" in text
    assert 'class="msg msg-out' in html
    # Day breaks (UTC until the browser sends its zone): the second day gets its own.
    breaks = re.findall(r'class="thread-break"(?: data-day="([^"]+)")?>([^<]+)<', html)
    assert [day for day, _ in breaks] == ["2026-03-02", "", "2026-03-03"]
    assert breaks[1][1] == "10:30"  # an hour's pause, same day: the time alone
    # Text is escaped, never markup.
    assert "&lt;b&gt;see you&lt;/b&gt;" in html
    # Suggest buttons on incoming text messages only; the newest is always visible.
    assert html.count("Suggest replies</span></button>") == 4
    assert html.count("suggest-form is-latest") == 1


async def test_thread_uses_the_viewers_time_zone(
    web: Browser, device_client: httpx.AsyncClient
) -> None:
    conversation = await sync(
        device_client, "c-tz", [message("t1", 0, "morning", sender=ALICE)], participants=[ALICE]
    )
    web.client.cookies.set("convassist_tz", "America/Los_Angeles", domain="testserver.local")
    page = await web.client.get(
        f"/conversations/{conversation}", headers={"Accept-Language": "en-US,en;q=0.8"}
    )
    assert "1:00 AM" in page.text  # 09:00 UTC in early March is 01:00 in Los Angeles
    web.client.cookies.set("convassist_tz", "Europe%2FBerlin", domain="testserver.local")
    page = await web.client.get(f"/conversations/{conversation}", headers={"Accept-Language": "de"})
    assert "10:00" in page.text


async def test_older_messages_load_page_by_page(
    web: Browser, device_client: httpx.AsyncClient
) -> None:
    messages = [message(f"m{i:03d}", i, f"line {i:03d}", sender=ALICE) for i in range(130)]
    conversation = await sync(device_client, "c-long", messages, participants=[ALICE], name="Long")
    page = await web.get(f"/conversations/{conversation}")
    assert "line 129" in page.text
    assert "line 069" not in page.text
    assert "This is the start" not in page.text
    seen = set(re.findall(r"line (\d{3})", page.text))
    url = re.search(r'class="thread-sentinel" hx-get="([^"]+)"', page.text)
    pages = 1
    while url:
        older = await web.get(url.group(1).replace("&amp;", "&"), htmx=True)
        assert older.status_code == 200
        assert "<html" not in older.text
        seen |= set(re.findall(r"line (\d{3})", older.text))
        url = re.search(r'class="thread-sentinel" hx-get="([^"]+)"', older.text)
        pages += 1
        if not url:
            assert "This is the start of your conversation with Long." in older.text
    assert pages == 3
    assert seen == {f"{i:03d}" for i in range(130)}


async def test_unknown_or_malformed_conversation_is_a_readable_404(web: Browser) -> None:
    for path in ("/conversations/00000000-0000-0000-0000-000000000000", "/conversations/nope"):
        resp = await web.get(path)
        assert resp.status_code == 404
        assert "text/html" in resp.headers["content-type"]
        assert "Traceback" not in resp.text
    assert (
        "No such conversation."
        in (await web.get("/conversations/00000000-0000-0000-0000-000000000000")).text
    )
    missing = await web.get("/no/such/page")
    assert missing.status_code == 404
    assert "There is no page at this address." in missing.text
    api = await web.get("/api/no/such/thing")
    assert api.headers["content-type"] == "application/json"


async def test_static_files_are_cached_and_pages_are_not(web: Browser, app: Any) -> None:
    page = await web.get("/conversations")
    assert page.headers["cache-control"] == "no-store"
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', page.text)
    assert css
    resp = await web.get(css.group(1))
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
    for asset in ("vendor/htmx.min.js", "vendor/htmx-LICENSE", "app.js", "theme.js", "favicon.svg"):
        assert (await web.get(f"/static/{asset}")).status_code == 200, asset
    assert (await web.get("/static/nope.css")).status_code == 404


async def test_an_older_page_shows_its_messages_suggestions(
    web: Browser, device_client: httpx.AsyncClient, app: Any
) -> None:
    """Even when the conversation has many newer suggestions than the old message's."""
    import sqlalchemy as sa

    from convassist.server.models import GeneratedResponse, Message, ResponseStatus

    messages = [message(f"s{i:03d}", i, f"line {i:03d}", sender=ALICE) for i in range(130)]
    conversation = await sync(device_client, "c-sugg", messages, participants=[ALICE], name="S")
    async with app.state.sessionmaker() as session:
        ids = dict((await session.execute(sa.select(Message.imessage_guid, Message.id))).all())
        newer = [(f"s{i:03d}", "newer") for i in range(70, 130)]
        for guid, text in [("s010", "an old idea"), *newer]:
            session.add(
                GeneratedResponse(
                    message_id=ids[guid],
                    prompt="Them: x\nMe:",
                    response=text,
                    candidates=[{"text": text, "confidence": 0.5}],
                    status=ResponseStatus.COMPLETED,
                )
            )
        await session.commit()
    page = await web.get(f"/conversations/{conversation}")
    url = re.search(r'class="thread-sentinel" hx-get="([^"]+)"', page.text)
    assert url
    older = await web.get(url.group(1).replace("&amp;", "&"), htmx=True)  # lines 010-069
    assert "line 010" in older.text
    assert "an old idea" in older.text
