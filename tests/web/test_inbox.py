"""The inbox page (home): waiting conversations, Send (one tap, edited, own words), dismiss."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from convassist.server.models import OutboxMessage, ResponseStatus
from tests.support.inbox import add_suggestion, message_id, set_waiting, stored_suggestion
from tests.web.conftest import T0, Browser, message, sync, text_of

pytestmark = pytest.mark.asyncio

SAM, JO = "+15551230000", "+15551230001"


async def _world(app: Any, device_client: httpx.AsyncClient) -> dict[str, Any]:
    """Sam waits (with suggestions), Jo waits (none), Ana does not wait."""
    await device_client.post(
        "/api/sync/contacts",
        json={"contacts": [{"appleId": SAM, "displayName": "Sam Rivera"}]},
    )
    sam = await sync(
        device_client,
        f"iMessage;-;{SAM}",
        [
            message("s1", 1, "are you coming tonight?", sender=SAM),
            message("s2", 2, "yes, what time?"),
            message("s3", 3, "7pm <b>sharp</b>", sender=SAM),
        ],
        participants=[SAM],
    )
    jo = await sync(
        device_client,
        f"iMessage;-;{JO}",
        [message("j1", 5, "slides?", sender=JO)],
        participants=[JO],
    )
    ana = await sync(
        device_client,
        "iMessage;-;ana",
        [message("a1", 6, "thanks!", sender="ana")],
        participants=["ana"],
    )
    await set_waiting(app, sam, T0 + timedelta(minutes=3))
    await set_waiting(app, jo, T0 + timedelta(minutes=5))
    await set_waiting(app, ana, None)
    response = await add_suggestion(
        app,
        await message_id(app, "s3"),
        texts=["see you at 7!", "running late"],
        created_at=T0 + timedelta(minutes=4),
    )
    return {"sam": sam, "jo": jo, "ana": ana, "response": response}


async def _outbox(app: Any) -> list[OutboxMessage]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(sa.select(OutboxMessage))).scalars())


async def test_home_is_the_inbox_of_waiting_conversations(
    app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    page = await web.get("/")
    assert page.status_code == 200
    assert "<h1>Inbox</h1>" in page.text
    assert 'aria-current="page">Inbox' in page.text
    names = re.findall(r'<h2 id="inbox-[0-9a-f-]+-name"><a href="[^"]+">([^<]+)</a>', page.text)
    assert names == [JO, "Sam Rivera"]
    text = text_of(page.text)
    assert "are you coming tonight? You: yes, what time? Sam Rivera: 7pm <b>sharp</b>" in text
    assert "<b>sharp</b>" not in page.text  # escaped
    assert "see you at 7!" in text and "90%" in text and "running late" in text
    assert "No suggestions for this message." in text  # Jo's
    assert f'name="response_id" value="{world["response"]}"' in page.text
    assert 'hx-trigger="every 5s"' in page.text
    assert "/static/inbox.js" in page.text
    # The refresh is the list alone.
    fragment = await web.get("/?limit=1", htmx=True)
    assert "<html" not in fragment.text
    assert fragment.text.count('class="inbox-row"') == 1
    assert 'class="load-more-row"' in fragment.text
    # A later page opened without JavaScript does not refresh itself into the first one.
    more = re.search(r'href="(/\?cursor=[^"]+)"', fragment.text)
    assert more
    later = await web.get(more.group(1))
    assert later.status_code == 200
    assert "Sam Rivera" in later.text and JO not in text_of(later.text.split("<main")[1])
    assert 'hx-trigger="every 5s"' not in later.text
    # The conversations list marks the waiting ones.
    listed = (await web.get("/conversations")).text
    assert listed.count(">Needs reply</span>") == 2


async def test_send_a_suggestion_as_is_with_one_tap(
    app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    form = {"response_id": str(world["response"]), "candidate": "1", "text": "running late"}
    resp = await web.htmx(f"/inbox/{world['sam']}/send", form)
    assert resp.status_code == 200, resp.text
    assert f'id="inbox-{world["sam"]}"' in resp.text
    assert "Queued but no device may send" in text_of(resp.text)
    [entry] = await _outbox(app)
    assert (entry.text, entry.candidate_index, entry.response_id) == (
        "running late",
        1,
        world["response"],
    )
    assert (await stored_suggestion(app, world["response"])).status is ResponseStatus.ACCEPTED
    page = await web.get("/")
    assert "Sam Rivera" not in text_of(page.text.split('class="inbox-items"')[-1])
    assert "Sending" in text_of(page.text)
    # Sending it again is refused: a suggestion is sent at most once.
    again = await web.htmx(f"/inbox/{world['sam']}/send", form)
    assert again.status_code == 409
    assert len(await _outbox(app)) == 1


async def test_a_queued_reply_names_the_devices_that_may_send_it(
    app: Any, web: Browser, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    [device] = (await owner_client.get("/api/devices")).json()
    allowed = await owner_client.patch(f"/api/devices/{device['id']}", json={"maySend": True})
    assert allowed.status_code == 200, allowed.text
    resp = await web.htmx(f"/inbox/{world['jo']}/send", {"text": "sending them now"})
    assert resp.status_code == 200
    assert f"Queued sending from {device['name']}" in text_of(resp.text)
    assert 'role="status"' in resp.text
    sending = text_of((await web.get("/")).text.split('class="card inbox-sending"')[1])
    assert f"sending them now Queued sending from {device['name']}" in sending


async def test_edit_then_send_and_own_words_without_javascript(
    app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    edited = {"response_id": str(world["response"]), "candidate": "0", "text": "see you at 7:15"}
    resp = await web.form(f"/inbox/{world['sam']}/send", edited)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/"
    row = await stored_suggestion(app, world["response"])
    assert (row.status, row.edited_response) == (ResponseStatus.EDITED, "see you at 7:15")
    own = await web.form(f"/inbox/{world['jo']}/send", {"text": "  sending them now  "})
    assert own.status_code == 303
    texts = sorted(entry.text for entry in await _outbox(app))
    assert texts == ["see you at 7:15", "sending them now"]
    blank = await web.htmx(f"/inbox/{world['jo']}/send", {"text": "   "})
    assert blank.status_code == 422
    assert "Write the reply before sending it." in text_of(blank.text)


async def test_send_and_dismiss_need_the_csrf_token_and_a_session(
    app: Any, web: Browser, browser: Browser, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    sam = world["sam"]
    for url, data in ((f"/inbox/{sam}/send", {"text": "hi"}), (f"/inbox/{sam}/dismiss", {})):
        refused = await web.client.post(url, data=data)
        assert refused.status_code == 403, url
        forged = await web.client.post(url, data={**data, "csrf_token": "forged"})
        assert forged.status_code == 403, url
    assert await _outbox(app) == []
    assert len(re.findall('class="inbox-row"', (await web.get("/")).text)) == 2
    await web.client.post("/logout", data={"csrf_token": web.csrf})
    signed_out = await web.get("/")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=")


async def test_no_reply_needed_removes_the_row(
    app: Any, web: Browser, device_client: httpx.AsyncClient
) -> None:
    world = await _world(app, device_client)
    page = (await web.get("/")).text
    seen = re.findall(r'name="seen" value="([^"]+)"', page)
    assert len(seen) == 2
    stale = await web.htmx(f"/inbox/{world['sam']}/dismiss", {"seen": "2026-03-02T09:02:00Z"})
    assert stale.status_code == 409
    assert "A newer message arrived" in text_of(stale.text)
    resp = await web.htmx(f"/inbox/{world['sam']}/dismiss", {"seen": seen[1]})
    assert resp.status_code == 200
    assert resp.text == ""
    assert "Marked as needing no reply." in resp.headers["HX-Trigger"]
    row = await stored_suggestion(app, world["response"])
    assert (row.status, row.rejection_reason) == (ResponseStatus.REJECTED, "no_reply_needed")
    plain = await web.form(f"/inbox/{world['jo']}/dismiss")
    assert plain.status_code == 303
    assert "Nothing waits for your reply" in text_of((await web.get("/")).text)
