"""The outbox loop against the real server in process: send once, report, confirm by sync;
an unreported attempt settled by chat.db; a lost report; expiry on the way; no permission.

The agent side runs for real (`Outbox.check`, the journal, the dry-run sender, chat.db);
Messages is simulated by writing the sent row into the chat.db copy (`write_row`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from convassist.agent.runner import sync_once
from convassist.agent.send.base import OutboxItem, SendFailed
from convassist.agent.send.dryrun import DryRunSender
from convassist.agent.send.outbox import (
    ERROR_DELAY,
    EXPIRED,
    NOT_ALLOWED_DELAY,
    Outbox,
    make_sender,
)
from convassist.agent.settings import AgentSettings
from convassist.agent.state import StateDB
from convassist.core.settings import ServerSettings
from tests.agent.chatdb_factory import FIXTURE_DB, GeneratedChatDB, build_chatdb, write_row
from tests.agent.test_sync_e2e import agent_settings, register_agent
from tests.support.services import sent_lines

TEXT = 'On my way, "10 min" \\ 🙂'


@pytest.fixture
def small_db(tmp_path: Path) -> GeneratedChatDB:
    if not FIXTURE_DB.is_file():
        pytest.skip("chat.db fixtures not found (CONVASSIST_SHARED_DIR)")
    return build_chatdb(tmp_path / "chat.db", messages=40, chats=3, handles=6)


class Setup:
    """A registered agent whose chat.db was synced, and one of its conversations."""

    def __init__(self, app: Any, agent: AgentSettings, device_id: str, chat_guid: str) -> None:
        self.app = app
        self.agent = agent
        self.device_id = device_id
        self.chat_guid = chat_guid
        self.conversation_id = ""

    @property
    def sent_log(self) -> Path:
        return self.agent.resolved_sent_log

    def lines(self) -> list[dict[str, Any]]:
        return sent_lines(self.sent_log)

    def outbox(self, transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> Outbox:
        return Outbox(
            self.agent,
            self.agent.db_path,
            kw.pop("sender", None) or make_sender(self.agent),
            stop=asyncio.Event(),
            transport=transport or httpx.ASGITransport(app=self.app),
            **kw,
        )


async def prepared(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    db: GeneratedChatDB,
    tmp_path: Path,
    *,
    may_send: bool = True,
) -> Setup:
    agent = agent_settings(tmp_path, db.path, sender="dry-run", outbox_wait=0)
    device_id = await register_agent(agent, client, owner_client)
    await sync_once(agent, transport=httpx.ASGITransport(app=app))
    chat_guid = sorted(db.chats)[0]
    setup = Setup(app, agent, device_id, chat_guid)
    page = (await owner_client.get("/api/conversations", params={"limit": 100})).json()
    setup.conversation_id = next(c["id"] for c in page["items"] if c["imessageId"] == chat_guid)
    if may_send:
        allowed = await owner_client.patch(f"/api/devices/{device_id}", json={"maySend": True})
        assert allowed.status_code == 200, allowed.text
    return setup


@pytest.fixture
async def setup(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    small_db: GeneratedChatDB,
    tmp_path: Path,
) -> Setup:
    """`prepared`: the agent may send."""
    return await prepared(app, client, owner_client, small_db, tmp_path)


async def queue(owner_client: httpx.AsyncClient, setup: Setup, text: str = TEXT) -> str:
    resp = await owner_client.post(
        "/api/outbox", json={"conversationId": setup.conversation_id, "text": text}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def entry(owner_client: httpx.AsyncClient, entry_id: str) -> dict[str, Any]:
    items = (await owner_client.get("/api/outbox")).json()["items"]
    return next(i for i in items if i["id"] == entry_id)


def journal(setup: Setup, entry_id: str) -> Any:
    with StateDB.open(setup.agent.resolved_state_dir) as state:
        return state.journal(entry_id)


async def test_a_reply_is_sent_once_reported_and_confirmed_by_the_next_sync(
    setup: Setup,
    app: Any,
    owner_client: httpx.AsyncClient,
    small_db: GeneratedChatDB,
) -> None:
    entry_id = await queue(owner_client, setup)
    poked: list[bool] = []
    outbox = setup.outbox(on_sent=lambda: poked.append(True))
    with capture_logs() as logs:
        assert await outbox.check() == 0.0
    lines = setup.lines()
    assert [(line["id"], line["chatGuid"], line["text"]) for line in lines] == [
        (entry_id, setup.chat_guid, TEXT)
    ]
    assert poked == [True]  # the sync loop is asked to sync soon
    assert (await entry(owner_client, entry_id))["status"] == "sent"
    recorded = journal(setup, entry_id)
    assert recorded.state == "sent" and recorded.reported_at is not None
    assert TEXT not in repr(logs) and "10 min" not in repr(logs)

    assert await outbox.check() > 0  # nothing more to send
    assert len(setup.lines()) == 1

    guid = write_row(
        small_db.path, setup.chat_guid, TEXT, from_me=True
    )  # Messages stores what it sent
    await sync_once(setup.agent, transport=httpx.ASGITransport(app=app))
    confirmed = await entry(owner_client, entry_id)
    assert confirmed["status"] == "confirmed" and confirmed["messageGuid"] == guid
    assert len(setup.lines()) == 1


class Crash(BaseException):
    """The agent dying inside the sender (after the journal said `attempted`)."""


class DyingSender(DryRunSender):
    def __init__(self, path: Path, *, after_writing: bool) -> None:
        super().__init__(path)
        self.after_writing = after_writing

    async def send(self, item: OutboxItem) -> None:
        if self.after_writing:
            await super().send(item)
        raise Crash


@pytest.mark.parametrize("messages_has_it", [True, False])
async def test_an_unreported_attempt_is_decided_by_chat_db_not_sent_again_blindly(
    setup: Setup,
    app: Any,
    owner_client: httpx.AsyncClient,
    small_db: GeneratedChatDB,
    messages_has_it: bool,
) -> None:
    entry_id = await queue(owner_client, setup)
    dying = DyingSender(setup.sent_log, after_writing=messages_has_it)
    with pytest.raises(Crash):
        await setup.outbox(sender=dying).check()
    assert journal(setup, entry_id).state == "attempted"
    assert (await entry(owner_client, entry_id))["status"] == "sending"
    guid = (
        write_row(small_db.path, setup.chat_guid, TEXT, from_me=True) if messages_has_it else None
    )

    await setup.outbox().check()  # a restarted agent
    after = await entry(owner_client, entry_id)
    assert after["status"] == "sent"
    assert len(setup.lines()) == 1  # written once: by the first run, or by the restart
    recorded = journal(setup, entry_id)
    assert recorded.state == "sent" and recorded.message_guid == guid
    if messages_has_it:
        assert after["messageGuid"] == guid


class SwitchingOff(DryRunSender):
    """Sends, and while the first send is in hand the owner switches this device's sending
    off (`switch_off`)."""

    def __init__(self, path: Path, switch_off: Any) -> None:
        super().__init__(path)
        self.switch_off = switch_off

    async def send(self, item: OutboxItem) -> None:
        await self.switch_off()
        await super().send(item)


async def test_switching_sending_off_stops_the_agent_after_the_reply_in_hand(
    setup: Setup, owner_client: httpx.AsyncClient
) -> None:
    """Entries are handed out one at a time: two queued, sending switched off while the first
    is being sent, and the second is never sent by this device (it waits for another)."""
    first = await queue(owner_client, setup, "first reply")
    second = await queue(owner_client, setup, "second reply")

    async def switch_off() -> None:
        off = await owner_client.patch(f"/api/devices/{setup.device_id}", json={"maySend": False})
        assert off.status_code == 200, off.text

    outbox = setup.outbox(sender=SwitchingOff(setup.sent_log, switch_off))
    assert await outbox.check() == 0.0  # the one in hand went out, and its report was taken
    assert await outbox.check() == NOT_ALLOWED_DELAY
    assert [line["id"] for line in setup.lines()] == [first]
    assert (await entry(owner_client, first))["status"] == "failed"  # it had been abandoned
    assert (await entry(owner_client, second))["status"] == "queued"


class Uncertain(DryRunSender):
    async def send(self, item: OutboxItem) -> None:
        raise SendFailed("Messages did not answer", uncertain=True)


async def test_a_send_that_may_have_happened_waits_for_chat_db_before_another_round(
    setup: Setup, owner_client: httpx.AsyncClient
) -> None:
    """Not asked again at once (Messages may still be writing the row): a later round looks in
    chat.db first."""
    entry_id = await queue(owner_client, setup)
    assert await setup.outbox(sender=Uncertain(setup.sent_log)).check() == ERROR_DELAY
    assert journal(setup, entry_id).state == "attempted"
    assert (await entry(owner_client, entry_id))["status"] == "sending"


class DropResults(httpx.AsyncBaseTransport):
    """The network dropping every outcome report while `dropping`."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.dropping = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.dropping and request.url.path.endswith("/result"):
            raise httpx.ConnectError("dropped", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_lost_report_is_reported_later_without_a_second_send(
    setup: Setup,
    app: Any,
    owner_client: httpx.AsyncClient,
) -> None:
    entry_id = await queue(owner_client, setup)
    wire = DropResults(app)
    outbox = setup.outbox(wire)
    assert await outbox.check() > 0  # the report failed: retried on a later round
    assert len(setup.lines()) == 1 and journal(setup, entry_id).reported_at is None
    assert (await entry(owner_client, entry_id))["status"] == "sending"
    await outbox.check()  # still down: the entry is offered again, and not sent again
    assert len(setup.lines()) == 1
    wire.dropping = False
    await outbox.check()
    assert (await entry(owner_client, entry_id))["status"] == "sent"
    assert len(setup.lines()) == 1 and journal(setup, entry_id).reported_at is not None


class SlowFetch(httpx.AsyncBaseTransport):
    """A network that delivers the outbox's answer `delay` seconds late."""

    def __init__(self, app: Any, delay: float) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET" and request.url.path.endswith("/sync/outbox"):
            await asyncio.sleep(self.delay)
        return response


async def test_an_entry_that_expires_on_the_way_is_never_sent(
    setup: Setup,
    app: Any,
    owner_client: httpx.AsyncClient,
    settings: ServerSettings,
) -> None:
    settings.outbox_expiry_seconds = 3.0
    entry_id = await queue(owner_client, setup)
    await setup.outbox(SlowFetch(app, delay=3.2)).check()
    assert setup.lines() == []
    recorded = journal(setup, entry_id)
    assert recorded.state == "failed" and recorded.error == EXPIRED
    assert recorded.reported_at is not None
    assert (await entry(owner_client, entry_id))["status"] in ("failed", "expired")


async def test_without_permission_the_loop_backs_off_quietly_until_allowed(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    small_db: GeneratedChatDB,
    tmp_path: Path,
) -> None:
    setup = await prepared(app, client, owner_client, small_db, tmp_path, may_send=False)
    entry_id = await queue(owner_client, setup)
    outbox = setup.outbox()
    with capture_logs() as logs:
        assert await outbox.check() == NOT_ALLOWED_DELAY
        assert await outbox.check() == NOT_ALLOWED_DELAY
    assert [e["event"] for e in logs if "outbox" in e["event"]] == ["agent.outbox.not_allowed"]
    assert setup.lines() == [] and (await entry(owner_client, entry_id))["status"] == "queued"

    resp = await owner_client.patch(f"/api/devices/{setup.device_id}", json={"maySend": True})
    assert resp.status_code == 200
    await outbox.check()
    assert len(setup.lines()) == 1
    assert (await entry(owner_client, entry_id))["status"] == "sent"


class Unreachable(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)


async def test_stop_ends_a_long_poll_at_once_and_failures_are_logged_once(
    setup: Setup,
) -> None:
    setup.agent = setup.agent.model_copy(update={"outbox_wait": 20.0})
    outbox = setup.outbox()
    task = asyncio.create_task(outbox.run())
    await asyncio.sleep(1.0)  # inside the server's long poll
    assert not task.done()
    started = time.monotonic()
    outbox.stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2

    down = setup.outbox(Unreachable())
    with capture_logs() as logs:
        assert await down.check() == ERROR_DELAY
        assert await down.check() == ERROR_DELAY
    assert [e["event"] for e in logs if e["event"].startswith("agent.outbox")] == [
        "agent.outbox.failed"
    ]
