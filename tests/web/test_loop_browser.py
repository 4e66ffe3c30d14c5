"""The whole loop, end to end: a real `convassist server`, its real ML service (tiny model), a
real `convassist agent run` with the dry-run sender, and Chromium.

1. the agent syncs a chat.db copy with a new incoming message;
2. its suggestions appear in the inbox without anyone asking;
3. Send is clicked in the browser;
4. the agent sends it exactly once (one line in the sent log);
5. the test writes the sent row into chat.db as Messages would, the agent syncs it back, and
   the outbox entry becomes confirmed with that row's GUID.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.chatdb_factory import FIXTURE_DB, build_chatdb, write_row
from tests.agent.test_sync_e2e import agent_env, owner, register_with_cli
from tests.support.cli import CONVASSIST
from tests.support.services import dry_run_sender, sent_lines, wait_for
from tests.web import test_browser as browser
from tests.web.test_browser import Live, Watched, _sign_in, _watch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not browser.CHROMIUM.exists(), reason="needs Chromium"),
    pytest.mark.skipif(not FIXTURE_DB.is_file(), reason="needs the chat.db fixtures"),
]

chromium = browser.chromium  # the module's own browser
live = browser.live  # the real server on SQLite with its own ML service, for this module
INCOMING = "are you free for dinner tonight?"


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    yield _watch(context)
    context.close()


def ready(session: httpx.Client, conversation_id: str) -> bool:
    """Whether the inbox shows completed suggestions for the conversation."""
    for item in session.get("/api/inbox").json()["items"]:
        if item["conversation"]["id"] == conversation_id:
            suggestion = item["suggestion"] or {}
            assert suggestion.get("status") != "failed", suggestion
            return suggestion.get("status") == "completed" and bool(suggestion["candidates"])
    return False


def outbox_entry(session: httpx.Client) -> dict[str, Any] | None:
    items = session.get("/api/outbox").json()["items"]
    assert len(items) <= 1, items
    return items[0] if items else None


@pytest.mark.timeout(900)
def test_a_message_arrives_a_suggestion_is_sent_once_and_confirmed(
    live: Live, watched: Watched, tmp_path: Path
) -> None:
    db = build_chatdb(tmp_path / "chat.db", messages=30, chats=2, handles=4)
    chat_guid = "iMessage;-;chat00001"
    assert db.chats[chat_guid][0] is False  # a one-to-one chat
    write_row(
        db.path, chat_guid, INCOMING, from_me=False, when=datetime.now(UTC) - timedelta(minutes=1)
    )
    sent_log = tmp_path / "sent.jsonl"
    env = agent_env(tmp_path, **dry_run_sender(db.path, sent_log, outbox_wait=2))
    register_with_cli(env, live.url, live.url)
    page = watched.page
    expect = browser.playwright_sync.expect
    log_path = tmp_path / "agent.log"
    with owner(live.url) as session, log_path.open("w") as log:
        device = session.get("/api/devices").json()[0]
        assert session.patch(f"/api/devices/{device['id']}", json={"maySend": True}).is_success
        agent = subprocess.Popen(
            [*CONVASSIST, "agent", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            # 1. The agent's first sync brings the message; the conversation waits on the owner.
            waiting = wait_for(
                "the conversation to wait for a reply",
                lambda: next(
                    (
                        i
                        for i in session.get("/api/inbox").json()["items"]
                        if i["conversation"]["imessageId"] == chat_guid
                    ),
                    None,
                ),
            )
            conversation_id = waiting["conversation"]["id"]

            # 2. Its suggestions appear in the inbox (the home page) with nobody asking.
            _sign_in(watched, live, "/")
            row = page.locator(f"#inbox-{conversation_id}")
            expect(row.get_by_text(INCOMING)).to_be_visible()
            wait_for(
                "the suggestions to be ready",
                lambda: ready(session, conversation_id),
                timeout=600,
            )
            send = row.locator(".inbox-send [data-send]").first
            expect(send).to_be_visible(timeout=30_000)  # the open page refreshes itself
            text = row.locator(".inbox-send input[name=text]").first.input_value()
            assert text.strip()

            # 3. Send, in the browser.
            with page.expect_response(lambda r: r.url.endswith("/send")) as answer:
                send.click()
            assert answer.value.status == 200, answer.value.text()[:2000]
            # 4. The agent sends it, once.
            lines = wait_for("the dry-run send", lambda: sent_lines(sent_log), timeout=60)
            entry = wait_for(
                "the agent's report",
                lambda: (e := outbox_entry(session)) and e["status"] == "sent" and e,
            )
            assert [(line["chatGuid"], line["text"]) for line in lines] == [(chat_guid, text)]
            assert lines[0]["id"] == entry["id"] and entry["responseId"] is not None

            # 5. Messages stores the sent row; the agent syncs it; the entry is confirmed.
            guid = write_row(db.path, chat_guid, text, from_me=True)
            confirmed = wait_for(
                "the confirmation",
                lambda: (e := outbox_entry(session)) and e["status"] == "confirmed" and e,
            )
            assert confirmed["messageGuid"] == guid
            time.sleep(2)  # later outbox rounds send nothing more
            assert len(sent_lines(sent_log)) == 1
            assert not any(
                i["conversation"]["id"] == conversation_id
                for i in session.get("/api/inbox").json()["items"]
            )
        finally:
            agent.terminate()
            assert agent.wait(30) == 0
    agent_log = log_path.read_text()
    assert INCOMING not in agent_log and (len(text) < 12 or text not in agent_log)
    assert watched.problems == []
