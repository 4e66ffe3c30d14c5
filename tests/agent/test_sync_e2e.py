"""The agent end to end: generated chat.db → sync engine → the real server on PostgreSQL.

The server is the real app in process (httpx ASGI transport) for most tests; the tests at the
end run the real `convassist server` and `convassist agent …` commands as subprocesses.
Failures the server cannot be made to produce (5xx mid-sync, a slow network to kill the agent
in) come from a real HTTP proxy on 127.0.0.1 (`FaultProxy`) or from a transport wrapper.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from convassist.agent.chatdb import ChatCursor, ChatDB
from convassist.agent.chatdb_decode import ChatMessage
from convassist.agent.client import NotRegistered, ServerUnavailable, TokenGrant
from convassist.agent.contacts import ADDRESSBOOK_FILE
from convassist.agent.errors import ChatDBCorrupt, ChatDBNotFound
from convassist.agent.registration import save_grant
from convassist.agent.runner import sync_once
from convassist.agent.settings import AgentSettings
from convassist.agent.state import STATE_FILE, Counts, StateDB
from convassist.core.settings import ServerSettings
from convassist.server.app import create_app
from tests.agent.chatdb_factory import (
    NS,
    GeneratedChatDB,
    make_attributed_body,
    register_apple_functions,
    summary_info,
)
from tests.agent.faults import FaultProxy, Reply, Seen
from tests.agent.test_contacts import make_addressbook
from tests.conftest import OWNER_PASSWORD, TEST_POSTGRES_URL, _truncate, register_device
from tests.support.cli import CONVASSIST, set_password
from tests.support.services import clean_env, free_port, running

SERVER = "http://testserver"
MESSAGES_PATH = "/api/sync/messages"


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """End-to-end means the production database: PostgreSQL only."""
    return postgres_url


# -- helpers ----------------------------------------------------------------------------


@dataclass
class Stored:
    """What the server holds, read straight from its database."""

    messages: dict[str, dict[str, Any]]
    conversations: dict[str, dict[str, Any]]
    contacts: dict[str, str | None]


async def stored(url: str) -> Stored:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            messages = {
                row.imessage_guid: dict(row._mapping)
                for row in await conn.execute(
                    sa.text(
                        "SELECT m.imessage_guid, c.imessage_id AS chat, m.sender_id, m.direction,"
                        " m.message_type, m.text, m.sent_at, m.edited_at, m.is_unsent,"
                        " m.reply_to_guid, m.service FROM messages m"
                        " JOIN conversations c ON c.id = m.conversation_id"
                    )
                )
            }
            conversations = {
                row.imessage_id: dict(row._mapping)
                for row in await conn.execute(
                    sa.text(
                        "SELECT imessage_id, display_name, is_group, service, message_count "
                        "FROM conversations"
                    )
                )
            }
            participants: dict[str, set[str]] = {}
            for chat, handle in await conn.execute(
                sa.text(
                    "SELECT c.imessage_id, p.handle FROM conversation_participants p "
                    "JOIN conversations c ON c.id = p.conversation_id"
                )
            ):
                participants.setdefault(chat, set()).add(handle)
            for chat, row in conversations.items():
                row["participants"] = participants.get(chat, set())
            contacts = {
                row.apple_id: row.display_name
                for row in await conn.execute(
                    sa.text("SELECT apple_id, display_name FROM contacts")
                )
            }
    finally:
        await engine.dispose()
    return Stored(messages, conversations, contacts)


def read_chat_db(path: Path) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    with ChatDB.open(path) as db:
        cursor = ChatCursor()
        while batch := db.read_messages(cursor.rowid, 1000):
            messages.extend(batch)
            cursor = cursor.after_messages(batch)
    return messages


def assert_server_matches(server: Stored, generated: GeneratedChatDB) -> None:
    """The server holds exactly the chat.db's messages that are in a chat, field for field."""
    expected = {m.imessage_guid: m for m in read_chat_db(generated.path) if m.chat_guid}
    assert set(server.messages) == set(expected)
    for guid, message in expected.items():
        row = server.messages[guid]
        assert row["chat"] == message.chat_guid
        assert row["text"] == message.text, guid
        assert row["direction"] == message.direction
        assert row["message_type"] == message.message_type
        assert row["sender_id"] == message.sender_id
        assert row["sent_at"] == message.sent_at
        assert row["edited_at"] == message.edited_at
        assert row["is_unsent"] == message.is_unsent
        assert row["reply_to_guid"] == message.reply_to_guid
    per_chat: dict[str, int] = {}
    for message in expected.values():
        assert message.chat_guid is not None
        per_chat[message.chat_guid] = per_chat.get(message.chat_guid, 0) + 1
    assert {c: row["message_count"] for c, row in server.conversations.items()} == per_chat
    for chat, row in server.conversations.items():
        is_group, name, participants = generated.chats[chat]
        assert row["is_group"] == is_group
        assert row["participants"] >= set(participants)
        assert row["display_name"] == (name or ", ".join(participants))


class Wire(httpx.AsyncBaseTransport):
    """The ASGI transport, counting requests; `fail_from` answers 503 from that request on."""

    def __init__(self, app: Any, fail_from: int | None = None) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.fail_from = fail_from
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self.fail_from is not None and len(self.requests) >= self.fail_from:
            return httpx.Response(503, json={"error": "injected", "detail": "down"})
        return await self.inner.handle_async_request(request)

    def posts(self, path: str = MESSAGES_PATH) -> int:
        return sum(1 for method, p in self.requests if method == "POST" and p == path)


def agent_settings(tmp_path: Path, db: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "state_dir": tmp_path / "agent-state",
        "db_path": db,
        "token_store": "file",
        "addressbook_dir": tmp_path / "no-addressbook",
        "batch_size": 100,
        "retries": 1,
        "retry_backoff": 0.01,
    }
    values.update(overrides)
    return AgentSettings(_env_file=None, **values)  # type: ignore[call-arg]


async def register_agent(
    settings: AgentSettings, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> str:
    """Register a device through the real API and store its token as the CLI does."""
    device_id, token = await register_device(client, owner_client)
    save_grant(
        settings,
        SERVER,
        "Test Mac",
        TokenGrant(device_id=device_id, token=token, expires_at=_far_future()),
    )
    return device_id


def _far_future() -> Any:
    from datetime import UTC, datetime

    return datetime(2099, 1, 1, tzinfo=UTC)


def edit_message(path: Path, guid: str, text: str, when_ns: int) -> None:
    """What Messages does to a row when its sender edits it."""
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    conn.execute(
        "UPDATE message SET text = NULL, attributedBody = ?, date_edited = ? WHERE guid = ?",
        (make_attributed_body(text), when_ns, guid),
    )
    conn.commit()
    conn.close()


def unsend_message(path: Path, guid: str, when_ns: int) -> None:
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    conn.execute(
        "UPDATE message SET text = NULL, attributedBody = NULL, date_edited = ?, "
        "date_retracted = ?, message_summary_info = ? WHERE guid = ?",
        (when_ns, when_ns, summary_info(retracted=[0]), guid),
    )
    conn.commit()
    conn.close()


def add_message(path: Path, chat_rowid: int | None, text: str) -> str:
    """A new incoming message at the end of chat.db (in no chat if `chat_rowid` is None)."""
    conn = sqlite3.connect(path)
    register_apple_functions(conn)
    (rowid, date) = conn.execute(
        "SELECT MAX(ROWID) + 1, MAX(date) + ? FROM message", (NS,)
    ).fetchone()
    guid = str(uuid.uuid4()).upper()
    conn.execute(
        "INSERT INTO message (ROWID, guid, text, handle_id, service, date, is_from_me, account) "
        "VALUES (?, ?, ?, 1, 'iMessage', ?, 0, 'E:me@example.com')",
        (rowid, guid, text, date),
    )
    if chat_rowid is not None:
        conn.execute(
            "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)",
            (chat_rowid, rowid, date),
        )
    conn.commit()
    conn.close()
    return guid


def text_messages(generated: GeneratedChatDB) -> list[str]:
    return [g for g, e in generated.messages.items() if e.kind == "text" and e.text and e.chat_guid]


# -- in process -------------------------------------------------------------------------


async def test_first_sync_fills_the_server_exactly_and_a_second_sends_nothing(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path)
    await register_agent(agent, client, owner_client)
    wire = Wire(app)
    with capture_logs() as logs:
        report = await sync_once(agent, transport=wire)
    assert report.first_sync and not report.interrupted
    total = len(generated_db.messages)
    assert report.counts == Counts(sent=total, inserted=total)
    assert_server_matches(await stored(settings.resolved_database_url), generated_db)
    # Batches: one conversation each, never more than the batch size.
    assert wire.posts() == report.batches >= len(generated_db.chats)

    # Message text never reaches the logs (only ids, counts and timings).
    rendered = repr(logs)
    for guid in text_messages(generated_db)[:300]:
        text = generated_db.messages[guid].text
        assert text is not None
        if len(text) > 12:
            assert text not in rendered

    with StateDB.open(agent.resolved_state_dir) as state:
        assert state.cursor(generated_db.path.absolute()) is not None
        assert state.totals() == report.counts
        assert state.last_sync_at() is not None and state.last_error() is None

    again = Wire(app)
    second = await sync_once(agent, transport=again)
    assert second.counts == Counts() and not second.first_sync
    assert again.posts() == 0 and again.posts("/api/sync/contacts") == 0


class RecordedProgress:
    """The progress bar's calls: the total it was started with and every advance."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.steps: list[int] = []
        self.stopped = False

    def start(self, total: int) -> None:
        self.totals.append(total)

    def advance(self, messages: int) -> None:
        self.steps.append(messages)

    def stop(self) -> None:
        self.stopped = True


async def test_the_progress_bar_counts_messages_not_rowids(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(generated_db.path)
    register_apple_functions(conn)  # Messages' delete triggers call them
    conn.execute("DELETE FROM message WHERE ROWID % 3 = 0 AND ROWID < 1500")  # deleted chats
    conn.execute(
        "DELETE FROM chat_message_join WHERE message_id NOT IN (SELECT ROWID FROM message)"
    )
    conn.commit()
    (messages,) = conn.execute("SELECT COUNT(*) FROM message").fetchone()
    (head,) = conn.execute("SELECT MAX(ROWID) FROM message").fetchone()
    conn.close()
    assert head - messages >= 400  # ROWID gaps
    agent = agent_settings(tmp_path, generated_db.path)
    await register_agent(agent, client, owner_client)
    bar = RecordedProgress()
    report = await sync_once(agent, transport=Wire(app), progress=bar)
    assert bar.totals == [messages]
    assert all(step > 0 for step in bar.steps) and sum(bar.steps) == messages
    assert report.counts.sent + report.counts.not_sent == messages
    assert bar.stopped


async def test_edits_unsends_and_new_messages_arrive(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path)
    await register_agent(agent, client, owner_client)
    await sync_once(agent, transport=Wire(app))

    candidates = text_messages(generated_db)
    edited, unsent = candidates[10], candidates[20]
    later = 900_000_000 * NS
    edit_message(generated_db.path, edited, "edited on the phone", later)
    unsend_message(generated_db.path, unsent, later + NS)
    new = add_message(generated_db.path, 1, "a brand new message")

    wire = Wire(app)
    report = await sync_once(agent, transport=wire)
    assert report.counts == Counts(sent=3, inserted=1, updated=2)
    server = await stored(settings.resolved_database_url)
    assert server.messages[edited]["text"] == "edited on the phone"
    assert server.messages[edited]["edited_at"] is not None
    assert server.messages[unsent]["is_unsent"] is True
    assert server.messages[unsent]["text"] is None
    assert server.messages[new]["text"] == "a brand new message"
    assert_server_matches(server, generated_db)

    assert (await sync_once(agent, transport=Wire(app))).counts == Counts()


async def test_contacts_go_first_and_again_only_when_they_change(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    book = tmp_path / "AddressBook"
    handles = generated_db.handles
    make_addressbook(
        book / ADDRESSBOOK_FILE,
        [("Ada", "Lovelace", None, None), ("Alan", "Turing", None, None)],
        [(1, handles[1])],
        [(2, handles[0])],
    )
    agent = agent_settings(tmp_path, generated_db.path, addressbook_dir=book)
    await register_agent(agent, client, owner_client)
    wire = Wire(app)
    report = await sync_once(agent, transport=wire)
    assert report.contacts == 2
    first_post = next(path for method, path in wire.requests if method == "POST")
    assert first_post == "/api/sync/contacts"
    server = await stored(settings.resolved_database_url)
    assert server.contacts == {handles[1]: "Ada Lovelace", handles[0]: "Alan Turing"}
    named = [
        c
        for c, (_, name, people) in generated_db.chats.items()
        if not name and handles[1] in people
    ]
    for chat in named:
        assert "Ada Lovelace" in server.conversations[chat]["display_name"]

    assert (await sync_once(agent, transport=(again := Wire(app)))).contacts == 0
    assert again.posts("/api/sync/contacts") == 0
    make_addressbook(
        book / "Sources" / "x" / ADDRESSBOOK_FILE,
        [("Grace", "Hopper", None, None)],
        [(1, handles[2])],
        [],
    )
    assert (await sync_once(agent, transport=Wire(app))).contacts == 3


async def test_messages_in_no_chat_are_skipped_and_counted(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    orphan = add_message(generated_db.path, None, "recently deleted")
    agent = agent_settings(tmp_path, generated_db.path)
    await register_agent(agent, client, owner_client)
    report = await sync_once(agent, transport=Wire(app))
    assert report.counts.not_sent == 1
    assert report.counts.sent == len(generated_db.messages)
    server = await stored(settings.resolved_database_url)
    assert orphan not in server.messages
    with StateDB.open(agent.resolved_state_dir) as state:
        assert state.totals().not_sent == 1


async def test_server_failure_mid_sync_loses_nothing_and_duplicates_nothing(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path, batch_size=50, concurrency=3)
    await register_agent(agent, client, owner_client)
    failing = Wire(app, fail_from=40)
    with pytest.raises(ServerUnavailable, match="answered 503"):
        await sync_once(agent, transport=failing)
    server = await stored(settings.resolved_database_url)
    with StateDB.open(agent.resolved_state_dir) as state:
        cursor = state.cursor(generated_db.path.absolute())
        totals = state.totals()
        error = state.last_error()
    assert error is not None and "503" in error[1]
    assert cursor is not None and 0 < cursor.rowid < len(generated_db.messages)
    # Everything up to the cursor is on the server; what the cursor counts as sent arrived.
    rowids = {m.imessage_guid: m.rowid for m in read_chat_db(generated_db.path)}
    assert all(guid in server.messages for guid, rowid in rowids.items() if rowid <= cursor.rowid)
    assert totals.inserted <= len(server.messages)

    report = await sync_once(agent, transport=Wire(app))
    assert not report.first_sync
    # Exactly the expected messages, each once (per-conversation counts match the rows).
    assert_server_matches(await stored(settings.resolved_database_url), generated_db)


async def test_stopping_between_batches_then_resuming(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    settings: ServerSettings,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path, batch_size=40)
    await register_agent(agent, client, owner_client)
    wire = Wire(app)
    report = await sync_once(agent, transport=wire, should_stop=lambda: wire.posts() >= 25)
    assert report.interrupted
    with StateDB.open(agent.resolved_state_dir) as state:
        assert state.last_sync_at() is None  # an interrupted run is not a completed sync
        cursor = state.cursor(generated_db.path.absolute())
    assert cursor is not None and cursor.rowid < len(generated_db.messages)
    await sync_once(agent, transport=Wire(app))
    assert_server_matches(await stored(settings.resolved_database_url), generated_db)


async def test_a_batch_too_large_for_the_server_is_split(
    settings: ServerSettings,
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    tmp_path: Path,
) -> None:
    small = create_app(settings.model_copy(update={"max_body_bytes": 16_000}))
    try:
        agent = agent_settings(tmp_path, generated_db.path, batch_size=200)
        await register_agent(agent, client, owner_client)
        report = await sync_once(agent, transport=Wire(small))
        assert report.counts.inserted == len(generated_db.messages)
    finally:
        await small.state.engine.dispose()
    assert_server_matches(await stored(settings.resolved_database_url), generated_db)


async def test_revoked_device_is_told_to_register_again(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path)
    device_id = await register_agent(agent, client, owner_client)
    assert (await owner_client.post(f"/api/devices/{device_id}/deactivate")).status_code == 200
    with pytest.raises(NotRegistered) as caught:
        await sync_once(agent, transport=Wire(app))
    assert "deactivated" in caught.value.message
    assert f"convassist agent register --server {SERVER}" in caught.value.message
    with StateDB.open(agent.resolved_state_dir) as state:
        assert state.cursor(generated_db.path.absolute()) is None


async def test_unregistered_agent_is_told_to_register(
    generated_db: GeneratedChatDB, tmp_path: Path
) -> None:
    agent = agent_settings(tmp_path, generated_db.path)
    with pytest.raises(NotRegistered, match=r"not registered.*convassist agent register"):
        await sync_once(agent)
    assert not agent.resolved_state_dir.exists()


async def test_missing_or_corrupt_chat_db_leaves_the_cursor_alone(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    generated_db: GeneratedChatDB,
    tmp_path: Path,
) -> None:
    agent = agent_settings(tmp_path, generated_db.path)
    await register_agent(agent, client, owner_client)
    await sync_once(agent, transport=Wire(app))
    with StateDB.open(agent.resolved_state_dir) as state:
        before = (state.cursor(generated_db.path.absolute()), state.totals(), state.last_sync_at())

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    missing = tmp_path / "missing.db"
    for path, error in ((missing, ChatDBNotFound), (corrupt, ChatDBCorrupt)):
        wire = Wire(app)
        with pytest.raises(error):
            await sync_once(agent, db_path=path, transport=wire)
        assert wire.requests == []
    shutil.copyfile(generated_db.path, corrupt)
    with corrupt.open("r+b") as handle:  # a real chat.db with its pages overwritten
        handle.seek(4096)
        handle.write(b"\xff" * 100_000)
    with pytest.raises(ChatDBCorrupt):
        await sync_once(agent, db_path=corrupt, transport=Wire(app))
    with StateDB.open(agent.resolved_state_dir) as state:
        after = (state.cursor(generated_db.path.absolute()), state.totals(), state.last_sync_at())
        assert state.cursor(corrupt.absolute()) is None
        error = state.last_error()
    assert after == before
    assert error is not None and "not a readable Messages database" in error[1]


# -- the real commands against the real server (subprocesses) ---------------------------

CODE = re.compile(r"\b(\d{3}) (\d{3})\b")


@dataclass
class LiveServer:
    url: str
    database_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`convassist server` on a free port with its own fresh PostgreSQL database."""
    admin_url = make_url(TEST_POSTGRES_URL).set(drivername="postgresql+asyncpg")
    name = f"convassist_agent_e2e_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    database_url = admin_url.set(database=name).render_as_string(False)
    tmp = tmp_path_factory.mktemp("live-server")
    env = clean_env(
        DATABASE_URL=database_url,
        CONVASSIST_DATA_DIR=str(tmp / "data"),
        CONVASSIST_LOG_FORMAT="json",
        CONVASSIST_DEVICE_POLL_INTERVAL="1",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with running(
            ["server", "--port", str(port)], f"{base}/api/health", env, tmp / "server.log"
        ):
            yield LiveServer(base, database_url, env)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The live server with empty tables and an owner password set through the CLI."""
    asyncio.run(_truncate(live_server.database_url))
    set_password(live_server.env, OWNER_PASSWORD)
    return live_server


def owner(server_url: str) -> httpx.Client:
    token = httpx.post(f"{server_url}/api/auth/login", json={"password": OWNER_PASSWORD}).json()
    return httpx.Client(
        base_url=server_url, headers={"Authorization": f"Bearer {token['token']}"}, timeout=30
    )


def agent_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        HOME=str(tmp_path / "home"),
        CONVASSIST_DATA_DIR=str(tmp_path / "agent-data"),
        CONVASSIST_AGENT_STATE_DIR=str(tmp_path / "agent-state"),
        CONVASSIST_AGENT_ADDRESSBOOK_DIR=str(tmp_path / "no-addressbook"),
        CONVASSIST_AGENT_RETRIES="1",
        CONVASSIST_AGENT_RETRY_BACKOFF="0.05",
        CONVASSIST_LOG_FORMAT="json",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",  # no keychain: the 0600 file
        **extra,
    )


def agent(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CONVASSIST, "agent", *args], env=env, capture_output=True, text=True, timeout=300
    )


def register_with_cli(env: dict[str, str], target_url: str, owner_url: str) -> str:
    """Run `convassist agent register`, approve its code as the owner; returns its output."""
    process = subprocess.Popen(
        [*CONVASSIST, "agent", "register", "--server", target_url, "--name", "E2E Mac"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    approved = False
    deadline = time.monotonic() + 90
    for line in process.stdout:  # until the command exits
        output.append(line)
        if not approved and (match := CODE.search(line)):
            with owner(owner_url) as session:
                code = match.group(1) + match.group(2)
                assert session.post("/api/devices/approve", json={"code": code}).status_code == 200
            approved = True
        assert time.monotonic() < deadline, "".join(output)
    process.wait(30)
    assert approved and process.returncode == 0, "".join(output)
    return "".join(output)


def state_of(env: dict[str, str], db: Path) -> tuple[ChatCursor | None, Counts]:
    with StateDB.open(Path(env["CONVASSIST_AGENT_STATE_DIR"])) as state:
        return state.cursor(db.absolute()), state.totals()


@pytest.mark.slow
def test_cli_register_sync_edit_and_revoke(
    server: LiveServer, generated_db: GeneratedChatDB, tmp_path: Path
) -> None:
    env = agent_env(tmp_path)
    proxy = FaultProxy(server.url)
    with proxy.running():
        output = register_with_cli(env, proxy.url, server.url)
        assert "Approve this device" in output and f"{proxy.url}/devices" in output, output
        if sys.platform != "darwin":  # no LaunchAgent here: the next step is a service manager
            assert "agent install" not in output and "convassist agent run" in output, output
        token_file = tmp_path / "agent-state" / "token.json"
        assert f"Token stored in the file {token_file} (mode 0600)" in output
        assert token_file.stat().st_mode & 0o777 == 0o600

        first = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert first.returncode == 0, first.stderr
        total = len(generated_db.messages)
        assert f"Synced {total:,} messages ({total:,} new, 0 updated" in first.stderr
        assert_server_matches(asyncio.run(stored(server.database_url)), generated_db)

        posts = len(proxy.posts(MESSAGES_PATH))
        second = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert second.returncode == 0, second.stderr
        assert "Up to date: nothing new to send." in second.stderr
        assert len(proxy.posts(MESSAGES_PATH)) == posts

        guid = text_messages(generated_db)[5]
        edit_message(generated_db.path, guid, "fixed a typo", 900_000_000 * NS)
        third = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert third.returncode == 0, third.stderr
        assert "Synced 1 messages (0 new, 1 updated" in third.stderr
        server_rows = asyncio.run(stored(server.database_url))
        assert server_rows.messages[guid]["text"] == "fixed a typo"
        assert_server_matches(server_rows, generated_db)

        status = agent(env, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert f'"server_url": "{proxy.url}"' in status.stdout

        with owner(server.url) as session:
            device = session.get("/api/devices").json()[0]
            assert device["messagesSynced"] == total + 0
            session.post(f"/api/devices/{device['id']}/deactivate")
        revoked = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert revoked.returncode == 78
        assert "deactivated" in revoked.stderr
        assert f"convassist agent register --server {proxy.url}" in revoked.stderr
        assert "Traceback" not in revoked.stderr


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["503", "dropped connection"])
def test_cli_server_failing_mid_sync_then_resuming(
    server: LiveServer, generated_db: GeneratedChatDB, tmp_path: Path, failure: str
) -> None:
    env = agent_env(tmp_path, CONVASSIST_AGENT_BATCH_SIZE="50")
    failing = {"on": False}

    def hook(_: int, seen: Seen) -> Reply | None:
        if failing["on"] and seen.path == MESSAGES_PATH and len(proxy.posts(MESSAGES_PATH)) > 30:
            return Reply(drop=True) if failure != "503" else Reply(503)
        return None

    proxy = FaultProxy(server.url, hook)
    with proxy.running():
        register_with_cli(env, proxy.url, server.url)
        failing["on"] = True
        broken = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert broken.returncode == 69, broken.stderr
        assert "Gave up after 2 attempts" in broken.stderr
        assert "Nothing was lost" in broken.stderr and "Traceback" not in broken.stderr
        cursor, totals = state_of(env, generated_db.path)
        assert cursor is not None and 0 < cursor.rowid < len(generated_db.messages)
        partial = asyncio.run(stored(server.database_url))
        assert totals.inserted <= len(partial.messages) < len(generated_db.messages)

        failing["on"] = False
        resumed = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert resumed.returncode == 0, resumed.stderr
    assert_server_matches(asyncio.run(stored(server.database_url)), generated_db)


@pytest.mark.slow
def test_cli_killed_mid_sync_loses_nothing(
    server: LiveServer, generated_db: GeneratedChatDB, tmp_path: Path
) -> None:
    env = agent_env(tmp_path, CONVASSIST_AGENT_BATCH_SIZE="20")
    slow = {"on": False}

    def hook(_: int, seen: Seen) -> Reply | None:
        return Reply(delay=0.03) if slow["on"] and seen.path == MESSAGES_PATH else None

    proxy = FaultProxy(server.url, hook)
    with proxy.running():
        register_with_cli(env, proxy.url, server.url)
        slow["on"] = True
        process = subprocess.Popen(
            [*CONVASSIST, "agent", "sync", "--db", str(generated_db.path), "--once"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        cursor = None
        while time.monotonic() < deadline and process.poll() is None:
            if (tmp_path / "agent-state" / STATE_FILE).exists():
                cursor, _ = state_of(env, generated_db.path)
                if cursor is not None and cursor.rowid > 0:
                    break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        assert cursor is not None and 0 < cursor.rowid < len(generated_db.messages)
        slow["on"] = False
        rerun = agent(env, "sync", "--db", str(generated_db.path), "--once")
        assert rerun.returncode == 0, rerun.stderr
    assert_server_matches(asyncio.run(stored(server.database_url)), generated_db)


@pytest.mark.slow
def test_cli_missing_or_corrupt_chat_db_is_a_clear_failure(
    server: LiveServer, generated_db: GeneratedChatDB, tmp_path: Path
) -> None:
    env = agent_env(tmp_path)
    register_with_cli(env, server.url, server.url)
    assert agent(env, "sync", "--db", str(generated_db.path), "--once").returncode == 0
    before = state_of(env, generated_db.path)

    missing = agent(env, "sync", "--db", str(tmp_path / "nope" / "chat.db"), "--once")
    assert missing.returncode == 66
    assert "Messages database not found" in missing.stderr
    corrupt_path = tmp_path / "corrupt.db"
    corrupt_path.write_bytes(b"garbage" * 1000)
    corrupt = agent(env, "sync", "--db", str(corrupt_path), "--once")
    assert corrupt.returncode == 65
    assert "not a readable Messages database" in corrupt.stderr
    for result in (missing, corrupt):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert state_of(env, generated_db.path) == before
    status = agent(env, "status")
    assert "not a readable Messages database" in status.stderr


@pytest.mark.slow
def test_cli_run_syncs_changes_soon_and_stops_cleanly_on_sigterm(
    server: LiveServer, generated_db: GeneratedChatDB, tmp_path: Path
) -> None:
    env = agent_env(
        tmp_path,
        CONVASSIST_AGENT_DB_PATH=str(generated_db.path),
        CONVASSIST_AGENT_POLL_INTERVAL="300",
        CONVASSIST_AGENT_DEBOUNCE="0.5",
    )
    register_with_cli(env, server.url, server.url)
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [*CONVASSIST, "agent", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with StateDB.open(tmp_path / "agent-state") as state:
                if state.last_sync_at() is not None:
                    break
            time.sleep(0.2)
        assert_server_matches(asyncio.run(stored(server.database_url)), generated_db)

        started = time.monotonic()
        guid = add_message(generated_db.path, 2, "arrives without waiting for the poll")
        while time.monotonic() - started < 30:
            if guid in asyncio.run(stored(server.database_url)).messages:
                break
            time.sleep(0.2)
        assert guid in asyncio.run(stored(server.database_url)).messages
        assert time.monotonic() - started < 15  # the change, not the 300 s poll, started it
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    log_text = log_path.read_text()
    assert '"event": "agent.daemon.stopped"' in log_text
    assert "arrives without waiting" not in log_text  # no message text in the log
