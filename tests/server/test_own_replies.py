"""The owner's stock replies the server offers with a suggestion request: tallied from what
they sent, within their consent. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
