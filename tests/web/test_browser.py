"""The web UI in a real browser (Debian's Chromium via Playwright) against real services.

A `convassist server` subprocess (SQLite) and its own ML service subprocess (training
changes the served adapter, so it is not shared with other tests). The journey: sign in →
approve a registering device by typing its code (the agent then receives its token) → sync
conversations through the device API → open one → suggest replies → edit one → see the
sample on Training → start a small training job and watch it complete. A crawl visits every
page and fails on any console error or failed request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OWNER_PASSWORD
from tests.support.services import clean_env, free_port, running, server_with_ml

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium"),
]

playwright_sync = pytest.importorskip("playwright.sync_api")

CHATS = {
    "Sam Rivera": [
        ("them", "hey are you coming to the game tonight?"),
        ("me", "yes! what time does it start"),
        ("them", "7pm, want to grab food before?"),
        ("me", "tacos at 6?"),
        ("them", "perfect, see you there"),
        ("me", "see ya"),
        ("them", "can you bring the tickets?"),
    ],
    "Jo Park": [
        ("them", "did you finish the slides?"),
        ("me", "almost, sending them tonight"),
        ("them", "great thanks"),
        ("me", "no problem"),
    ],
    "Ana Lima": [
        ("them", "coffee tomorrow morning?"),
        ("me", "sure, 9 at the usual place?"),
        ("them", "works for me"),
        ("me", "cool see you then"),
    ],
    "Mo Khan": [
        ("them", "are you around this weekend?"),
        ("me", "saturday yes, sunday no"),
        ("them", "hike on saturday then?"),
        ("me", "I'm in"),
    ],
}


@dataclass
class Live:
    url: str
    handles: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The real server on SQLite and its own real ML service."""
    root = tmp_path_factory.mktemp("browser")
    with server_with_ml(root, CONVASSIST_DEVICE_POLL_INTERVAL="0") as base:
        yield Live(base)


@dataclass
class Watched:
    """A page with everything that went wrong on it recorded."""

    page: Any
    problems: list[str]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _failure(request: Any) -> str | None:
    """A failed request, unless the browser dropped it because the page moved on."""
    if "ERR_ABORTED" in (request.failure or ""):
        return None
    return f"failed: {request.method} {request.url} ({request.failure})"


def _watch(context: Any) -> Watched:
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(_failure(r)) if _failure(r) else None)
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    page.set_default_timeout(15_000)
    return Watched(page, problems)


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="Europe/Paris"
    )
    yield _watch(context)
    context.close()


def _sign_in(watched: Watched, live: Live, path: str) -> None:
    page = watched.page
    page.goto(live.url + path)
    page.wait_for_url(re.compile(r"/login\?next="))
    page.get_by_label("Owner password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live.url + path)


def _sync_chats(client: httpx.Client, token: str) -> None:
    start = datetime.now(UTC) - timedelta(days=1)
    headers = {"Authorization": f"Bearer {token}"}
    for n, (name, lines) in enumerate(CHATS.items()):
        handle = f"+1555010{n:04d}"
        contacts = {"contacts": [{"appleId": handle, "phoneNumber": handle, "displayName": name}]}
        assert client.post("/api/sync/contacts", json=contacts, headers=headers).status_code == 200
        messages = [
            {
                "imessageGuid": f"b-{n}-{i}",
                "senderId": None if who == "me" else handle,
                "direction": "outgoing" if who == "me" else "incoming",
                "text": text,
                "sentAt": (start + timedelta(hours=n, minutes=i)).isoformat(),
            }
            for i, (who, text) in enumerate(lines)
        ]
        resp = client.post(
            "/api/sync/messages",
            json={"conversationId": f"chat-{n}", "participants": [handle], "messages": messages},
            headers=headers,
        )
        assert resp.status_code == 200, resp.text


@pytest.mark.timeout(900)
def test_journey_from_sign_in_to_a_trained_adapter(live: Live, watched: Watched) -> None:
    page = watched.page
    expect = playwright_sync.expect
    _sign_in(watched, live, "/devices")
    expect(page.get_by_role("heading", name="Devices", level=1)).to_be_visible()
    expect(page.get_by_text("No devices yet.")).to_be_visible()

    # The agent registers while the page is open; the page shows it with a countdown.
    agent = httpx.Client(base_url=live.url, timeout=30)
    reg = agent.post(
        "/api/devices/register",
        json={
            "name": "Robin's MacBook",
            "hardwareId": "HW-BROWSER",
            "platform": "macOS",
            "osVersion": "15.2",
        },
    ).json()
    pending = page.locator("#device-lists .device-row", has_text="Robin's MacBook")
    expect(pending).to_be_visible(timeout=10_000)
    expect(pending).to_contain_text(re.compile(r"Code expires in \d+:\d\d"))
    assert (
        agent.post(
            "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
        ).json()["error"]
        == "authorization_pending"
    )

    page.get_by_label("Code shown on your Mac").fill(f"{reg['code'][:3]} {reg['code'][3:]}")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#approve-box")).to_contain_text("Approved Robin's MacBook")

    verified = agent.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert verified.status_code == 200, verified.text
    token = verified.json()["token"]
    _sync_chats(agent, token)
    active = page.locator("#device-lists .device-row", has_text="Active")
    expect(active).to_contain_text("Robin's MacBook", timeout=10_000)
    expect(active).to_contain_text(re.compile(r"Messages\s*19"))

    # Open the conversation and ask for suggestions on its latest message.
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Conversations").click()
    page.get_by_role("link", name=re.compile("Sam Rivera")).click()
    expect(page.get_by_role("heading", name="Sam Rivera")).to_be_visible()
    expect(page.locator(".msg-out .bubble-text", has_text="tacos at 6?")).to_be_visible()
    page.locator(".suggest-form.is-latest").get_by_role("button").click()
    expect(page.locator(".suggestion-generating")).to_have_count(1, timeout=5_000)
    card = page.locator(".suggestion-completed")
    expect(card).to_be_visible(timeout=90_000)
    candidates = card.locator(".candidate")
    assert 1 <= candidates.count() <= 3
    expect(candidates.first).to_contain_text(re.compile(r"\d+% confidence"))

    # Edit the first candidate in place.
    candidates.first.get_by_role("button", name="Edit").click()
    editor = candidates.first.get_by_label("Your version")
    expect(editor).to_be_focused()
    editor.fill("yes, I'll bring both tickets!")
    candidates.first.get_by_role("button", name="Save my version").click()
    edited = page.locator(".suggestion-edited")
    expect(edited).to_contain_text("yes, I'll bring both tickets!")
    expect(page.locator("#toasts")).to_contain_text("Saved your version as a training sample.")
    expect(page.locator("#suggestion-history")).to_contain_text("Edited")

    # The sample is on the Training page.
    nav.get_by_role("link", name="Training").click()
    sample = page.locator(".sample", has_text="yes, I'll bring both tickets!")
    expect(sample).to_contain_text("Edited suggestion")
    expect(page.locator("#adapters")).to_contain_text("No adapters yet.")

    # A small job, with the owner's history so there are conversations to hold out.
    page.locator("#job-form summary", has_text="Advanced").click()
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Also learn from my past replies").check()
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#job-form")).to_contain_text("Training started")
    job = page.locator("#job-history .job").first
    expect(job).to_be_visible()
    expect(job.locator("progress")).to_be_visible()
    expect(job).to_contain_text("Completed", timeout=600_000)
    expect(job).to_contain_text(re.compile(r"Took\s*\d+"))
    expect(job).to_contain_text("Adapter")
    # Switched on by itself, or held back by the activation gate (its reason shown beside
    # "Switch on anyway"): then the owner switches it on.
    adapter = page.locator("#adapters .adapter").first
    expect(adapter).to_be_visible(timeout=15_000)
    anyway = adapter.get_by_role("button", name="Switch on anyway")
    if anyway.count():
        expect(adapter.locator(".gate-reason")).not_to_be_empty()
        anyway.click()
    expect(page.locator("#adapters .adapter.is-active")).to_be_visible(timeout=15_000)
    expect(page.locator("#perplexity-chart svg .chart-after")).to_have_count(1)
    expect(page.locator("#perplexity-chart .heldout-table tbody tr")).to_have_count(1)
    assert watched.problems == []


def _device_token(client: httpx.Client, name: str) -> str:
    """Register and approve a device through the API (the page flow is tested above)."""
    login = client.post("/api/auth/login", json={"password": OWNER_PASSWORD}).json()
    reg = client.post(
        "/api/devices/register",
        json={"name": name, "hardwareId": f"HW-{name}", "platform": "macOS", "osVersion": "15"},
    ).json()
    owner = {"Authorization": f"Bearer {login['token']}"}
    client.post("/api/devices/approve", json={"code": reg["code"]}, headers=owner)
    verified = client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    return str(verified.json()["token"])


def test_scrolling_up_loads_older_messages_in_place(live: Live, watched: Watched) -> None:
    client = httpx.Client(base_url=live.url, timeout=30)
    token = _device_token(client, "Scroll Mac")
    start = datetime.now(UTC) - timedelta(days=3)
    messages = [
        {
            "imessageGuid": f"long-{i}",
            "senderId": "+15559990000" if i % 2 else None,
            "direction": "incoming" if i % 2 else "outgoing",
            "text": f"line {i:03d}",
            "sentAt": (start + timedelta(minutes=20 * i)).isoformat(),
        }
        for i in range(150)
    ]
    resp = client.post(
        "/api/sync/messages",
        json={"conversationId": "long-chat", "displayName": "Long chat", "messages": messages},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200, resp.text
    page = watched.page
    expect = playwright_sync.expect
    _sign_in(watched, live, f"/conversations/{resp.json()['conversationId']}")
    thread = page.locator("#thread")
    newest = page.locator(".bubble-text", has_text="line 149")
    expect(newest).to_be_in_viewport()
    for _ in range(10):
        if page.get_by_text("This is the start of your conversation").count():
            break
        anchor = page.locator(".bubble-text").first
        text = anchor.inner_text()
        thread.evaluate("t => { t.scrollTop = 0; }")
        page.wait_for_timeout(700)
        # The message that was at the top is still on screen: the view did not jump.
        expect(page.locator(".bubble-text", has_text=text)).to_be_in_viewport()
    expect(
        page.get_by_text("This is the start of your conversation with Long chat.")
    ).to_be_attached()
    assert page.locator(".bubble-text").count() == 150
    days = page.locator(".thread-break[data-day]").evaluate_all(
        "breaks => breaks.map(b => b.dataset.day)"
    )
    assert len(days) == len(set(days)), days
    assert watched.problems == []


def test_a_message_search_result_opens_the_thread_at_that_message(
    live: Live, watched: Watched
) -> None:
    client = httpx.Client(base_url=live.url, timeout=30)
    token = _device_token(client, "Search Mac")
    start = datetime.now(UTC) - timedelta(days=2)
    messages = [
        {
            "imessageGuid": f"search-{i}",
            "senderId": "+15558880000" if i % 2 else None,
            "direction": "incoming" if i % 2 else "outgoing",
            "text": "the kumquat plan is on" if i == 5 else f"note {i:03d}",
            "sentAt": (start + timedelta(minutes=i)).isoformat(),
        }
        for i in range(50)
    ]
    resp = client.post(
        "/api/sync/messages",
        json={"conversationId": "search-chat", "displayName": "Fruit club", "messages": messages},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200, resp.text
    page = watched.page
    expect = playwright_sync.expect
    _sign_in(watched, live, "/conversations")
    page.get_by_label("Search conversations").fill("kumq")
    result = page.locator(".conversation-row", has=page.locator("mark", has_text="kumquat"))
    expect(result).to_contain_text("the kumquat plan is on")
    href = result.get_attribute("href") or ""
    assert "#m-" in href
    result.click()
    page.wait_for_url(re.compile(r"/conversations/[0-9a-f-]+#m-"))
    # The thread opens at the matching message, not at the newest one (49 messages below),
    # and marks it.
    target = page.locator("#" + href.split("#", 1)[1])
    expect(target).to_be_in_viewport()
    expect(target.locator(".bubble")).to_have_css("outline-style", "solid")
    expect(page.locator(".msg:not(:target) .bubble").first).to_have_css("outline-style", "none")
    expect(page.locator(".bubble-text", has_text="note 049")).not_to_be_in_viewport()
    assert watched.problems == []


def test_every_page_loads_without_errors(live: Live, chromium: Any) -> None:
    for theme, viewport in (("light", (1280, 900)), ("dark", (390, 844))):
        context = chromium.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=theme
        )
        watched = _watch(context)
        page = watched.page
        page.goto(live.url + "/login")
        assert watched.problems == [], watched.problems
        _sign_in(watched, live, "/conversations")
        conversations = page.locator(".conversation-row")
        paths = ["/", "/conversations", "/devices", "/training", "/status"]
        if conversations.count():
            paths.append(conversations.first.get_attribute("href"))
        for path in paths:
            page.goto(live.url + path)
            page.wait_for_load_state("networkidle")
            expect = playwright_sync.expect
            expect(page.locator("h1")).to_be_visible()
            assert page.evaluate("document.documentElement.dataset.theme") == theme
        page.get_by_role("button", name=re.compile("Switch to")).click()
        flipped = "dark" if theme == "light" else "light"
        page.reload()
        assert page.evaluate("document.documentElement.dataset.theme") == flipped
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login\?signed_out=1"))
        playwright_sync.expect(page.get_by_text("You have signed out.")).to_be_visible()
        assert watched.problems == [], f"{theme}: {watched.problems}"
        context.close()


def test_a_job_is_cancelled_when_confirmed_after_several_polls(
    live: Live, watched: Watched
) -> None:
    """The row polls every 2 s; a dialog left open for longer still cancels the job."""
    client = httpx.Client(base_url=live.url, timeout=30)
    login = client.post("/api/auth/login", json={"password": OWNER_PASSWORD}).json()
    owner = {"Authorization": f"Bearer {login['token']}"}
    for n in range(8):
        sample = {
            "inputContext": f"Them: question {n}, are you free later?\nMe:",
            "expectedOutput": f"sure, after {n + 4}pm works for me",
        }
        resp = client.post("/api/training/samples", json=sample, headers=owner)
        assert resp.status_code == 201, resp.text
    started = client.post("/api/training/jobs", json={"epochs": 20}, headers=owner)
    assert started.status_code in (200, 201, 202), started.text
    job_id = started.json()["id"]

    page = watched.page
    expect = playwright_sync.expect
    _sign_in(watched, live, "/training")
    row = page.locator(f"#job-{job_id}")
    expect(row).to_contain_text(re.compile("Queued|Training"))
    row.get_by_role("button", name="Cancel…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    page.wait_for_timeout(5_000)  # more than two polling intervals of the row
    dialog.get_by_role("button", name="Stop training").click()
    expect(row.locator(".badge")).to_have_text("Cancelled", timeout=10_000)
    expect(row.locator(".alert-error")).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("Training cancelled.")
    state = client.get(f"/api/training/jobs/{job_id}", headers=owner).json()
    assert state["status"] == "cancelled"
    assert watched.problems == []


SETUP_LINK = re.compile(r"http://127\.0\.0\.1:\d+/setup\?code=[A-Za-z0-9_-]+")


@dataclass
class Unclaimed:
    """A fresh server nobody has set a password on, and the setup link it printed."""

    url: str
    setup_link: str


@pytest.fixture(scope="module")
def unclaimed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unclaimed]:
    root = tmp_path_factory.mktemp("unclaimed")
    port = free_port()
    env = clean_env(
        CONVASSIST_DATA_DIR=str(root / "server"),
        CONVASSIST_LOG_FORMAT="json",
        ML_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
    )
    base = f"http://127.0.0.1:{port}"
    log = root / "s.log"
    with running(["server", "--port", str(port)], f"{base}/api/health", env, log):
        link = SETUP_LINK.search(log.read_text())
        assert link, log.read_text()
        yield Unclaimed(base, link.group(0))


def test_a_first_visit_creates_the_password_with_the_printed_link(
    unclaimed: Unclaimed, watched: Watched
) -> None:
    page = watched.page
    expect = playwright_sync.expect
    page.goto(unclaimed.url + "/")
    page.wait_for_url(unclaimed.url + "/setup")
    expect(page.get_by_role("heading", name="Create your password")).to_be_visible()
    expect(page.get_by_label("Setup code")).to_be_visible()  # no code in this address

    page.goto(unclaimed.setup_link)
    expect(page.get_by_label("Setup code")).to_have_count(0)
    page.get_by_label("New password").fill(OWNER_PASSWORD)
    page.get_by_label("Repeat the password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Create password and sign in").click()
    page.wait_for_url(unclaimed.url + "/")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    assert watched.problems == []

    # The code is spent; the password signs in.
    code = unclaimed.setup_link.partition("code=")[2]
    again = httpx.post(
        f"{unclaimed.url}/api/auth/setup", json={"code": code, "password": "another password"}
    )
    assert again.status_code == 409
    login = httpx.post(f"{unclaimed.url}/api/auth/login", json={"password": OWNER_PASSWORD})
    assert login.status_code == 200


def test_the_api_docs_render_offline(unclaimed: Unclaimed, chromium: Any) -> None:
    """Every request that would leave this server is refused; the docs still render."""
    context = chromium.new_context()
    outside: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(unclaimed.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    watched = _watch(context)
    page = watched.page
    expect = playwright_sync.expect
    page.goto(unclaimed.url + "/api/docs")
    expect(page.locator(".opblock-summary-path", has_text="/api/auth/setup")).to_be_visible()
    assert page.locator(".opblock").count() > 20
    page.locator(".opblock-summary", has_text="/api/auth/setup").click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert outside == []
    assert watched.problems == []
    context.close()
