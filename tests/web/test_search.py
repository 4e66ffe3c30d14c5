"""The Conversations search shows why a conversation matched: its newest matching message."""

from __future__ import annotations

import re

import httpx

from tests.web.conftest import Browser, message, sync, text_of

ALICE = "+15550001111"


async def test_message_matches_show_a_marked_excerpt_linking_to_the_message(
    web: Browser, device_client: httpx.AsyncClient
) -> None:
    await sync(
        device_client,
        "c-alice",
        [
            message("a1", 1, "The <b>concert</b> tickets are booked", sender=ALICE),
            message("a2", 2, "Great, see you there"),
        ],
        participants=[ALICE],
        name="Alice",
    )
    resp = await web.get("/conversations?q=concert%20tick", htmx=True)
    assert resp.status_code == 200
    assert (
        "The &lt;b&gt;<mark>concert</mark>&lt;/b&gt; <mark>tickets</mark> are booked" in resp.text
    )
    link = re.search(r'href="/conversations/([0-9a-f-]+)#m-([0-9a-f-]+)"', resp.text)
    assert link
    thread = await web.get(f"/conversations/{link.group(1)}")
    assert f'id="m-{link.group(2)}"' in thread.text
    # A name match alone shows no excerpt; a word in no message finds nothing.
    by_name = await web.get("/conversations?q=alice", htmx=True)
    assert "conversation-match" not in by_name.text
    assert "Alice" in text_of(by_name.text)
    none = text_of((await web.get("/conversations?q=opera", htmx=True)).text)
    assert "No conversation matches “opera”" in none
    assert "words from a message" in none
