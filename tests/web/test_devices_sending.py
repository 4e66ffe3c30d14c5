"""The Devices page's "May send replies" switch, and the replies each device sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import register_device
from tests.web.conftest import Browser, text_of

pytestmark = pytest.mark.asyncio


async def test_the_switch_allows_and_stops_sending_and_the_page_shows_what_was_sent(
    app: Any, web: Browser, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    device_id, token = await register_device(client, owner_client, name="Kitchen Mac")
    mac = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
    page = await web.get("/devices")
    assert 'role="switch" aria-checked="false"' in page.text
    assert "May send replies" in text_of(page.text)
    url = f"/devices/{device_id}/may-send"

    # Without the CSRF token the switch does nothing.
    forged = await web.client.post(url, data={"may_send": "true"})
    assert forged.status_code == 403
    async with mac:
        assert (await mac.get("/api/sync/outbox")).status_code == 403

        on = await web.htmx(url, {"may_send": "true"})
        assert on.status_code == 200
        assert 'role="switch" aria-checked="true"' in on.text
        assert "Kitchen Mac may now send" in on.headers["hx-trigger"]
        [device] = (await owner_client.get("/api/devices")).json()
        assert device["maySend"] is True

        chat = await mac.post(
            "/api/sync/messages",
            json={
                "conversationId": "iMessage;-;+15550001111",
                "participants": ["+15550001111"],
                "messages": [
                    {
                        "imessageGuid": "in-1",
                        "senderId": "+15550001111",
                        "direction": "incoming",
                        "text": "Lunch?",
                        "sentAt": "2026-11-20T12:00:00+00:00",
                    }
                ],
            },
        )
        queued = await owner_client.post(
            "/api/outbox",
            json={"conversationId": chat.json()["conversationId"], "text": "Noon at Rosa's"},
        )
        assert queued.status_code == 201
        [item] = (await mac.get("/api/sync/outbox")).json()["items"]
        await mac.post(f"/api/sync/outbox/{item['id']}/result", json={"status": "sent"})
        lists = text_of((await web.get("/devices/lists", htmx=True)).text)
        assert "Last replies it sent sent just now Noon at Rosa's" in lists

        # The plain form (no JavaScript) turns it off again: the device is refused at once.
        off = await web.form(url, {"may_send": "false"})
        assert off.status_code == 200 and "<title>Devices" in off.text
        assert 'role="switch" aria-checked="false"' in off.text
        assert (await mac.get("/api/sync/outbox")).status_code == 403
    bad = await web.htmx(url, {"may_send": "perhaps"})
    assert bad.status_code == 422
