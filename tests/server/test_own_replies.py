"""The owner's stock replies the server offers with a suggestion request: tallied from what
they sent, within their consent. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from convassist.server.conversations.consent import set_switches
from convassist.server.conversations.schemas import ConsentUpdate
from convassist.server.models import Conversation
from convassist.server.responses import own
from convassist.server.responses.own import own_replies
from tests.support.chats import message, sync
from tests.support.outbox import AT

pytestmark = pytest.mark.asyncio


async def _chat(
    device_client: httpx.AsyncClient, handle: str, replies: list[str], *, group: bool = False
) -> str:
    """A chat with `handle` in which the owner sent `replies`, each after a question."""
    lines = []
    for n, reply in enumerate(replies):
        lines.append(message(f"{handle}-{group}-in-{n}", 2 * n, "and?", start=AT, sender=handle))
        lines.append(message(f"{handle}-{group}-out-{n}", 2 * n + 1, reply, start=AT))
    return await sync(
        device_client,
        f"iMessage;{'+' if group else '-'};chat-{handle}-{group}",
        lines,
        participants=[handle, "+15550009999"] if group else [handle],
        group=group,
    )


async def _offered(app: Any) -> list[str]:
    async with app.state.sessionmaker() as session:
        return await own_replies(session)


async def test_stock_replies_come_from_consented_one_to_one_chats(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    assert await _offered(app) == []
    first = await _chat(device_client, "+15550001111", ["Yeah!", "oh ok", "oh ok", "see you at 5"])
    await _chat(device_client, "+15550002222", ["yeah", "yeah", "yeah", "oh ok", "ok"])
    # Groups are left out: "ok" three times there does not make it a stock reply.
    await _chat(device_client, "+15550003333", ["ok", "ok", "ok"], group=True)
    assert await _offered(app) == ["yeah", "oh ok"]
    # Out of training, out of the tally: what is left was sent in one chat only.
    resp = await owner_client.patch(f"/api/conversations/{first}", json={"training": False})
    assert resp.status_code == 200, resp.text
    assert await _offered(app) == []
    resp = await owner_client.patch(f"/api/conversations/{first}", json={"training": True})
    assert await _offered(app) == ["yeah", "oh ok"]
    # Deleting a conversation takes its messages out of the tally too.
    assert (await owner_client.delete(f"/api/conversations/{first}")).status_code == 204
    assert await _offered(app) == []


class _Tallies:
    """Counts the tally's grouped scans run on an app's database."""

    def __init__(self, app: Any) -> None:
        self.count = 0
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "GROUP BY messages.text" in statement:
            self.count += 1


async def test_the_tally_is_kept_until_what_it_reads_changes(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    handle = "+15550004444"
    chat = await _chat(device_client, handle, ["yeah", "yeah", "oh ok"])
    other = "+15550005555"
    await _chat(device_client, other, ["yeah", "yeah", "oh ok", "oh ok"])
    tallies = _Tallies(app)
    assert await _offered(app) == ["yeah", "oh ok"]
    assert await _offered(app) == ["yeah", "oh ok"]
    assert tallies.count == 1
    # What they receive does not change what the owner says.
    incoming = message("late-in", 60, "you there?", start=AT, sender=handle)
    await sync(device_client, f"iMessage;-;chat-{handle}-False", [incoming], participants=[handle])
    assert await _offered(app) == ["yeah", "oh ok"]
    assert tallies.count == 1
    # What the owner sends does.
    lines = [message(f"late-out-{n}", 61 + n, "sure", start=AT) for n in range(2)]
    await sync(device_client, f"iMessage;-;chat-{handle}-False", lines, participants=[handle])
    sure = message("late-out-other", 70, "sure", start=AT)
    await sync(device_client, f"iMessage;-;chat-{other}-False", [sure], participants=[other])
    assert await _offered(app) == ["yeah", "oh ok", "sure"]
    assert tallies.count == 2
    # So do a contact's consent and deleting the contact.
    contacts = {"contacts": [{"appleId": handle, "displayName": "Ana"}]}
    assert (await device_client.post("/api/sync/contacts", json=contacts)).status_code == 200
    assert tallies.count == 2  # a contact's name is not what the tally reads
    items = (await owner_client.get("/api/contacts", params={"q": handle})).json()["items"]
    url = f"/api/contacts/{items[0]['id']}"
    assert (await owner_client.patch(url, json={"suggestions": False})).status_code == 200
    assert await _offered(app) == ["yeah", "oh ok", "sure"]
    assert tallies.count == 2  # suggestions are not what the tally reads
    assert (await owner_client.patch(url, json={"training": False})).status_code == 200
    assert await _offered(app) == []
    assert (await owner_client.patch(url, json={"training": True})).status_code == 200
    assert await _offered(app) == ["yeah", "oh ok", "sure"]
    assert (await owner_client.delete(url)).status_code == 204
    assert (await owner_client.get(f"/api/conversations/{chat}")).status_code == 404
    assert await _offered(app) == []


async def test_an_uncommitted_change_is_never_kept(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    chat = await _chat(device_client, "+15550006666", ["yeah", "yeah"])
    await _chat(device_client, "+15550007777", ["yeah"])
    tallies = _Tallies(app)
    async with app.state.sessionmaker() as session:
        conversation = await session.get(Conversation, uuid.UUID(chat))
        await set_switches(session, conversation, ConsentUpdate(training=False))
        assert await own_replies(session) == []  # its own change, read afresh
        await session.rollback()
    assert await _offered(app) == ["yeah"]  # the rollback left the consent as it was
    assert await _offered(app) == ["yeah"]
    assert tallies.count == 2  # the uncommitted read was not kept; the next one was


async def test_a_kept_tally_ages_out(
    app: Any, device_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (`convassist demo`) can write the database: the age limit catches it."""
    await _chat(device_client, "+15550008888", ["yeah", "yeah"])
    await _chat(device_client, "+15550009999", ["yeah"])
    tallies = _Tallies(app)
    assert await _offered(app) == ["yeah"]
    monkeypatch.setattr(own, "MAX_AGE", 0.0)
    assert await _offered(app) == ["yeah"]
    assert tallies.count == 2
