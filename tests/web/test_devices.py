"""The Devices page: approving a registering Mac by its code, listing, deactivating."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.web.conftest import Browser, message, sync, text_of

pytestmark = pytest.mark.asyncio


async def _register(client: httpx.AsyncClient, name: str = "Alex's MacBook Air") -> dict[str, str]:
    resp = await client.post(
        "/api/devices/register",
        json={"name": name, "hardwareId": f"HW-{name}", "platform": "macOS", "osVersion": "15.2"},
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    return body


async def test_empty_devices_page_says_what_to_run(web: Browser) -> None:
    page = await web.get("/devices")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "No devices yet." in text
    assert "convassist agent register --server http://testserver" in text
    assert "No device is waiting." in text


async def test_approving_by_code_lets_the_agent_collect_its_token(
    app: Any, web: Browser, client: httpx.AsyncClient
) -> None:
    reg = await _register(client)
    page = await web.get("/devices")
    pending = text_of(page.text)
    assert "Alex's MacBook Air" in pending
    assert "Code expires in" in pending
    assert re.search(r'data-expires="[0-9T:.-]+Z"', page.text)
    # The lists fragment the page polls shows the same.
    fragment = await web.get("/devices/lists", htmx=True)
    assert "Alex&#39;s MacBook Air" in fragment.text

    # A typo is explained, and the device stays pending.
    wrong = "000000" if reg["code"] != "000000" else "111111"
    resp = await web.htmx("/devices/approve", {"code": wrong})
    assert resp.status_code == 400
    assert "No device is waiting with this code" in resp.text
    assert f'value="{wrong}"' in resp.text
    bad = await web.htmx("/devices/approve", {"code": "12ab"})
    assert bad.status_code == 422
    assert "Enter the 6-digit code" in bad.text

    # The agent is told to wait until the owner approves.
    waiting = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert waiting.json()["error"] == "authorization_pending"

    code = f"{reg['code'][:3]} {reg['code'][3:]}"  # typed with a space, as the agent shows it
    resp = await web.htmx("/devices/approve", {"code": code})
    assert resp.status_code == 200
    assert "Approved" in text_of(resp.text)
    assert "devices-changed" in resp.headers["hx-trigger"]
    lists = text_of((await web.get("/devices/lists", htmx=True)).text)
    assert "Approved · connecting…" in lists

    verified = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert verified.status_code == 200
    token = verified.json()["token"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as device:
        await sync(
            device,
            "chat-1",
            [message("a", 0, "hi", sender="+15550001111"), message("b", 1, "hello")],
            participants=["+15550001111"],
        )
    lists = text_of((await web.get("/devices/lists", htmx=True)).text)
    assert "Waiting for approval No device is waiting." in lists
    assert "Alex's MacBook Air macOS 15.2 Last sync just now Messages 2 Active" in lists

    # Approving the same code again is explained.
    again = await web.htmx("/devices/approve", {"code": reg["code"]})
    assert again.status_code == 400


async def test_plain_form_approval_works_without_javascript(
    web: Browser, client: httpx.AsyncClient
) -> None:
    reg = await _register(client)
    resp = await web.form("/devices/approve", {"code": reg["code"]})
    assert resp.status_code == 200
    assert "<title>Devices" in resp.text
    assert "Approved" in text_of(resp.text)


async def test_deactivating_revokes_the_token(web: Browser, client: httpx.AsyncClient) -> None:
    reg = await _register(client, "Work iMac")
    await web.htmx("/devices/approve", {"code": reg["code"]})
    token = (
        await client.post(
            "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
        )
    ).json()["token"]
    page = await web.get("/devices")
    assert f'hx-post="/devices/{reg["deviceId"]}/deactivate"' in page.text
    assert 'hx-confirm="Deactivate Work iMac?' in page.text

    resp = await web.htmx(f"/devices/{reg['deviceId']}/deactivate")
    assert resp.status_code == 200
    assert "Deactivated" in text_of(resp.text)
    assert "is deactivated" in resp.headers["hx-trigger"]
    status = await client.get("/api/sync/status", headers={"Authorization": f"Bearer {token}"})
    assert status.status_code == 401

    missing = await web.htmx("/devices/00000000-0000-0000-0000-000000000000/deactivate")
    assert missing.status_code == 404
    assert "No such device." in missing.text


async def test_a_working_device_that_registers_again_stays_active_until_approved(
    web: Browser, client: httpx.AsyncClient
) -> None:
    reg = await _register(client, "Studio Mac")
    await web.htmx("/devices/approve", {"code": reg["code"]})
    await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    await client.post(
        "/api/devices/register",
        json={
            "name": "Not Yours",
            "hardwareId": "HW-Studio Mac",
            "platform": "macOS",
            "osVersion": "15.2",
        },
    )
    lists = text_of((await web.get("/devices/lists", htmx=True)).text)
    assert "Waiting for approval No device is waiting." in lists
    assert "Studio Mac macOS 15.2 Asks to register again as “Not Yours”" in lists
    assert "Active" in lists
