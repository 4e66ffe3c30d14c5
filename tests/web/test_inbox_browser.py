"""The inbox in a real browser (Chromium via Playwright) against a real server and ML service.

Messages sync while the inbox is open: their rows and the suggestions the server queued
appear without a reload. The keyboard alone picks, edits and sends a reply, and picks and
sends another as is; both land in the outbox. At phone width (390 px) nothing overflows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import OWNER_PASSWORD
from tests.support.services import server_with_ml
from tests.web import test_browser as browser
from tests.web.test_browser import CHROMIUM, Watched, _watch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]

playwright_sync = pytest.importorskip("playwright.sync_api")
chromium = browser.chromium  # the browser tests' Chromium, for this module

CHATS = {
    "Sam Rivera": ["hey are you coming to the game tonight?", "can you bring the tickets?"],
    "Jo Park": ["did you finish the slides for tomorrow's meeting?"],
    "Ana Lima": ["coffee tomorrow morning? " + "the new place on the corner " * 6],
}


@dataclass
class Server:
    url: str
    owner: httpx.Client
    device: httpx.Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on SQLite with its own ML service, an owner and an approved device."""
    root = tmp_path_factory.mktemp("inbox-browser")
    with server_with_ml(root) as base:
        owner = httpx.Client(base_url=base, timeout=30)
        token = owner.post("/api/auth/login", json={"password": OWNER_PASSWORD}).json()
        owner.headers["Authorization"] = f"Bearer {token['token']}"
        device = httpx.Client(base_url=base, timeout=30)
        reg = device.post(
            "/api/devices/register",
            json={
                "name": "Robin's Mac",
                "hardwareId": "HW-INBOX",
                "platform": "macOS",
                "osVersion": "15.2",
            },
        ).json()
        assert owner.post("/api/devices/approve", json={"code": reg["code"]}).status_code == 200
        verified = device.post(
            "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
        ).json()
        device.headers["Authorization"] = f"Bearer {verified['token']}"
        yield Server(base, owner, device)
        owner.close()
        device.close()


def _sync(server: Server, n: int, name: str, lines: list[str]) -> None:
    handle = f"+1555020{n:04d}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    contacts = {"contacts": [{"appleId": handle, "phoneNumber": handle, "displayName": name}]}
    assert server.device.post("/api/sync/contacts", json=contacts).status_code == 200
    messages = [
        {
            "imessageGuid": f"ib-{n}-{i}",
            "senderId": handle,
            "direction": "incoming",
            "text": text,
            "sentAt": (start + timedelta(minutes=n * 2 + i)).isoformat(),
        }
        for i, text in enumerate(lines)
    ]
    resp = server.device.post(
        "/api/sync/messages",
        json={"conversationId": f"inbox-chat-{n}", "participants": [handle], "messages": messages},
    )
    assert resp.status_code == 200, resp.text


def _open_inbox(chromium: Any, server: Server, width: int, height: int) -> Watched:
    context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-US")
    watched = _watch(context)
    page = watched.page
    page.goto(server.url + "/")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.get_by_label("Owner password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/")
    return watched


@pytest.mark.timeout(600)
def test_keyboard_flow_live_updates_and_phone_width(server: Server, chromium: Any) -> None:
    expect = playwright_sync.expect
    watched = _open_inbox(chromium, server, 1280, 900)
    page = watched.page
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.get_by_text("Nothing waits for your reply")).to_be_visible()

    # Messages sync while the page is open: the rows and their suggestions arrive by themselves.
    for n, (name, lines) in enumerate(CHATS.items()):
        _sync(server, n, name, lines)
    rows = page.locator(".inbox-row")
    expect(rows).to_have_count(3, timeout=20_000)
    expect(rows.first).to_contain_text("Ana Lima")  # newest waiting first
    for row in range(3):
        expect(rows.nth(row).locator(".inbox-candidate").first).to_be_visible(timeout=120_000)

    # j j: the second row (Jo); 1 picks its first reply; e edits it; Enter sends the edit.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    page.keyboard.press("j")
    jo = rows.nth(1)
    expect(jo.locator("[data-inbox-item]")).to_be_focused()
    expect(jo).to_contain_text("Jo Park")
    page.keyboard.press("1")
    expect(jo.locator("[data-send]").first).to_be_focused()
    page.keyboard.press("e")
    area = jo.locator(".inbox-candidate textarea").first
    expect(area).to_be_focused()
    suggested = area.input_value()
    page.keyboard.type(" :)")
    page.keyboard.press("Enter")
    expect(jo).to_contain_text(re.compile("Queued.*sending from|Queued but no device"))
    expect(page.locator("[data-inbox-item]", has_text="Jo Park")).to_be_focused()

    # k back to Ana; 2 picks her second reply (or the first if there is one); Enter sends it.
    page.keyboard.press("k")
    ana = page.locator(".inbox-row", has_text="Ana Lima")
    expect(ana.locator("[data-inbox-item]")).to_be_focused()
    count = ana.locator(".inbox-candidate").count()
    page.keyboard.press("2" if count > 1 else "1")
    chosen = ana.locator(".inbox-candidate.is-picked .inbox-candidate-text").inner_text()
    page.keyboard.press("Enter")
    expect(ana).to_contain_text("Queued")
    sent = {e["text"] for e in server.owner.get("/api/outbox").json()["items"]}
    assert sent == {suggested.strip() + " :)", re.sub(r"^\d", "", chosen).strip()}

    # The next refreshes list both under Sending; Sam still waits. / goes to search.
    expect(page.locator(".inbox-sending .inbox-sent")).to_have_count(2, timeout=15_000)
    expect(page.locator(".inbox-items .inbox-row")).to_have_count(1)
    page.keyboard.press("/")
    expect(page.get_by_label("Search conversations")).to_be_focused()
    assert watched.problems == [], watched.problems
    page.context.close()

    # Phone width: everything fits, the reply buttons are reachable.
    phone = _open_inbox(chromium, server, 390, 844)
    page = phone.page
    expect(page.locator(".inbox-items .inbox-candidate").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    send = page.locator(".inbox-items [data-send]").first
    box = send.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    assert phone.problems == [], phone.problems
    page.context.close()
