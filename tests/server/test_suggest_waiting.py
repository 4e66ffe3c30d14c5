"""Sync keeps `awaiting_reply_since`, retires moot suggestions and turns a reply from the phone
into a `replied` sample; the Suggester queues work without slowing or failing a sync.
SQLite and PostgreSQL; no ML service here (see test_suggest_generation.py for that)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Conversation,
    GeneratedResponse,
    Message,
    OutboxMessage,
    OutboxStatus,
    ResponseStatus,
    SampleSource,
)
from convassist.server.suggest.service import MAX_ATTEMPTS, Suggester
from tests.support.chats import message, sync
from tests.support.inbox import message_id, stored_suggestion
from tests.support.outbox import samples
from tests.support.services import ML_TOKEN, free_port

FRIEND = "+15551230001"
CHAT = f"iMessage;-;{FRIEND}"


def start() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


async def chat(device: httpx.AsyncClient, messages: list[dict[str, Any]], **kw: Any) -> str:
    return await sync(device, kw.pop("chat", CHAT), messages, participants=[FRIEND], **kw)


async def awaiting(app: Any, conversation_id: str) -> datetime | None:
    async with app.state.sessionmaker() as session:
        row = await session.get(Conversation, uuid.UUID(conversation_id))
        return row.awaiting_reply_since


async def offer(app: Any, guid: str, *, auto: bool = True) -> uuid.UUID:
    """A completed suggestion for the message, as the reconciler would have stored it."""
    async with app.state.sessionmaker.begin() as session:
        row = GeneratedResponse(
            message_id=await message_id(app, guid),
            prompt=f"prompt for {guid}",
            response="sure",
            candidates=[{"text": "sure", "confidence": 0.6}],
            status=ResponseStatus.COMPLETED,
            auto=auto,
        )
        session.add(row)
    return row.id


async def test_an_incoming_message_waits_and_a_reply_from_the_phone_clears_it(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    conversation = await chat(
        device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)]
    )
    assert await awaiting(app, conversation) == t0
    later = await chat(device_client, [message("in-2", 2, "or tomorrow?", start=t0, sender=FRIEND)])
    assert later == conversation
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=2)

    await chat(device_client, [message("out-1", 3, "tonight works", start=t0)])
    assert await awaiting(app, conversation) is None


async def test_reactions_and_gated_messages_do_not_make_a_conversation_wait(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    conversation = await chat(
        device_client,
        [
            message("in-1", 0, "see you at 8", start=t0, sender=FRIEND),
            message("out-1", 1, "great", start=t0),
            message("re-1", 2, "Loved “great”", start=t0, sender=FRIEND, messageType="reaction"),
        ],
    )
    assert await awaiting(app, conversation) is None
    await chat(
        device_client,
        [
            message("tb-1", 3, "Liked “great”", start=t0, sender=FRIEND),
            message("ph-1", 4, None, start=t0, sender=FRIEND, messageType="attachment"),
        ],
    )
    assert await awaiting(app, conversation) is None

    # A question then a photo without caption: the question waits.
    await chat(
        device_client,
        [
            message("in-2", 5, "which one should I get?", start=t0, sender=FRIEND),
            message("ph-2", 6, None, start=t0, sender=FRIEND, messageType="attachment"),
        ],
    )
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=5)
    # A tapback on it afterwards leaves it waiting.
    await chat(
        device_client,
        [message("re-2", 7, None, start=t0, sender=FRIEND, messageType="reaction")],
    )
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=5)


async def test_codes_short_codes_and_history_never_wait(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    bank = await sync(
        device_client,
        "SMS;-;262966",
        [message("sc-1", 0, "Your statement is ready", start=t0, sender="262966")],
        participants=["262966"],
    )
    assert await awaiting(app, bank) is None
    code = await chat(
        device_client,
        [message("otp-1", 0, "483920 is your verification code", start=t0, sender=FRIEND)],
    )
    assert await awaiting(app, code) is None
    old = datetime.now(UTC) - timedelta(days=3)
    history = await chat(
        device_client,
        [message("old-1", 0, "are you free on friday?", start=old, sender="+15559990000")],
        chat="iMessage;-;+15559990000",
    )
    assert await awaiting(app, history) is None
    await app.state.suggester.drain()  # nothing was handed over: not even a failed try
    async with app.state.sessionmaker() as session:
        assert (await session.execute(select(GeneratedResponse))).first() is None


async def test_a_dismissed_conversation_stays_dismissed_until_a_newer_message(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    batch = [message("in-1", 0, "did you get my email?", start=t0, sender=FRIEND)]
    conversation = await chat(device_client, batch)
    assert await awaiting(app, conversation) == t0
    async with app.state.sessionmaker.begin() as session:  # what the inbox's dismiss does
        await session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation))
            .values(awaiting_reply_since=None)
        )
    await chat(device_client, batch)  # the same message again (a re-sync)
    batch[0]["text"] = "did you get my email??"  # and edited
    await chat(device_client, batch)
    await chat(device_client, [message("old", -5, "hello?", start=t0, sender=FRIEND)])
    assert await awaiting(app, conversation) is None

    await chat(device_client, [message("in-2", 1, "ping", start=t0, sender=FRIEND)])
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=1)


async def test_group_chats_wait_only_where_the_owner_takes_part(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    others = ["+15551230002", "+15551230003"]

    async def group(messages: list[dict[str, Any]]) -> str:
        return await sync(
            device_client, "iMessage;+;chat42", messages, participants=others, group=True
        )

    conversation = await group([message("g-1", 0, "who's in for sat?", start=t0, sender=others[0])])
    assert await awaiting(app, conversation) is None
    await group(
        [
            message("g-2", 1, "me", start=t0),
            *[
                message(f"g-{n}", n, f"message {n}", start=t0, sender=others[n % 2])
                for n in range(3, 30)
            ],
        ]
    )
    # The owner's message is older than the 20 newest, yet they take part.
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=29)


async def test_a_newer_message_retires_older_suggestions(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    await chat(device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)])
    first = await offer(app, "in-1")
    manual = await offer(app, "in-1", auto=False)
    await chat(device_client, [message("in-2", 1, "or tomorrow?", start=t0, sender=FRIEND)])
    assert (await stored_suggestion(app, first)).retired_at is not None
    assert (await stored_suggestion(app, manual)).retired_at is not None
    assert await samples(app) == []  # a newer message is not a reply


async def test_a_reply_from_the_phone_becomes_a_replied_sample_for_the_suggestion_it_beat(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    t0 = start()
    conversation = await chat(
        device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)]
    )
    beaten = await offer(app, "in-1")
    await chat(
        device_client,
        [
            message("out-1", 1, " tonight works, 8? ", start=t0),
            message("out-2", 2, "at the usual place", start=t0),
        ],
    )
    assert (await stored_suggestion(app, beaten)).retired_at is not None
    [sample] = await samples(app)
    assert sample.source is SampleSource.REPLIED
    assert sample.quality == 1.0
    assert sample.response_id == beaten
    assert sample.conversation_id == uuid.UUID(conversation)
    assert sample.input_context == "prompt for in-1"
    assert sample.expected_output == "tonight works, 8?"
    # Syncing the reply again changes nothing.
    await chat(device_client, [message("out-1", 1, " tonight works, 8? ", start=t0)])
    assert len(await samples(app)) == 1
    # The beaten suggestion can no longer be accepted (it has its sample).
    acted = await owner_client.post(
        f"/api/responses/{beaten}/action", json={"action": "accept", "candidateIndex": 0}
    )
    assert acted.status_code == 409, acted.text
    assert acted.json()["error"] == "already_acted"
    assert len(await samples(app)) == 1


async def test_a_reply_sent_through_the_outbox_is_not_a_replied_sample(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    conversation = await chat(
        device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)]
    )
    beaten = await offer(app, "in-1")
    async with app.state.sessionmaker.begin() as session:
        session.add(
            OutboxMessage(
                conversation_id=uuid.UUID(conversation),
                text="sure, 8?",
                status=OutboxStatus.SENT,
                created_at=t0,
                expires_at=t0 + timedelta(minutes=10),
            )
        )
    await chat(device_client, [message("out-1", 1, "sure, 8? ", start=t0)])
    assert await awaiting(app, conversation) is None
    assert (await stored_suggestion(app, beaten)).retired_at is not None
    assert await samples(app) == []


async def test_the_auto_switch_off_keeps_the_inbox_but_queues_nothing(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    from dataclasses import replace

    app.state.suggester.policy = replace(app.state.suggester.policy, auto=False)
    t0 = start()
    conversation = await chat(
        device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)]
    )
    assert await awaiting(app, conversation) == t0
    assert await app.state.suggester.drain() == []
    assert await app.state.suggester.sweep() == []
    async with app.state.sessionmaker() as session:
        assert (await session.execute(select(GeneratedResponse))).first() is None


@pytest.fixture
async def dead_ml(app: Any) -> Any:
    """The Suggester talks to an ML service that is not there."""
    app.state.suggester.ml = MLClient(f"http://127.0.0.1:{free_port()}", timeout=5, token=ML_TOKEN)
    yield app.state.suggester
    await app.state.suggester.ml.aclose()


async def test_sync_is_unaffected_when_the_ml_service_is_down(
    app: Any, device_client: httpx.AsyncClient, dead_ml: Any
) -> None:
    t0 = start()
    conversation = await chat(  # answers 200 without waiting on the ML service
        device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)]
    )
    assert await awaiting(app, conversation) == t0
    async with app.state.sessionmaker() as session:  # the request queued no ML work itself
        assert (await session.execute(select(GeneratedResponse))).first() is None

    assert await dead_ml.drain() == []  # the call fails in the background
    for _ in range(MAX_ATTEMPTS + 1):  # the sweep tries again, up to MAX_ATTEMPTS
        assert await dead_ml.sweep() == []
    async with app.state.sessionmaker() as session:
        rows = list((await session.execute(select(GeneratedResponse))).scalars())
    assert len(rows) == MAX_ATTEMPTS
    assert all(r.auto and r.status is ResponseStatus.FAILED and r.error for r in rows)
    assert {r.message_id for r in rows} == {await message_id(app, "in-1")}
    assert await awaiting(app, conversation) == t0  # nothing lost: still waiting


async def test_a_waiting_conversation_follows_an_unsent_message_a_dismissed_one_stays(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    t0 = start()
    older = message("in-1", 0, "are you free friday?", start=t0, sender=FRIEND)
    newer = message("in-2", 1, "or saturday?", start=t0, sender=FRIEND)
    conversation = await chat(device_client, [older, newer])
    assert await awaiting(app, conversation) == t0 + timedelta(minutes=1)
    await chat(device_client, [{**newer, "text": None, "isUnsent": True}])
    assert await awaiting(app, conversation) == t0  # the older question waits now

    async with app.state.sessionmaker.begin() as session:  # dismissed
        await session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation))
            .values(awaiting_reply_since=None)
        )
    await chat(device_client, [{**older, "text": "are you free friday??"}])
    assert await awaiting(app, conversation) is None


async def test_the_running_suggester_sweeps_at_start_and_follows_notices(
    app: Any, device_client: httpx.AsyncClient, dead_ml: Any
) -> None:
    t0 = start()
    await chat(device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)])
    # The server restarted before its Suggester got to it.
    restarted = Suggester(app.state.sessionmaker, dead_ml.ml, dead_ml.policy)
    app.state.suggester = restarted

    async def tried(guids: set[str]) -> None:
        for _ in range(100):
            async with app.state.sessionmaker() as session:
                found = set(
                    (
                        await session.execute(
                            select(Message.imessage_guid).join(
                                GeneratedResponse, GeneratedResponse.message_id == Message.id
                            )
                        )
                    ).scalars()
                )
            if found == guids:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"tried {found}, not {guids}")

    restarted.start()
    try:
        await tried({"in-1"})  # the start-up sweep
        await chat(
            device_client,
            [message("in-2", 0, "you there?", start=t0, sender="+15550002222")],
            chat="iMessage;-;+15550002222",
        )
        await tried({"in-1", "in-2"})  # the notice wakes it
    finally:
        await restarted.stop()


async def test_one_live_automatic_suggestion_per_message_whatever_races(
    app: Any, device_client: httpx.AsyncClient
) -> None:
    """Two servers sweeping at once: the database keeps one live `auto` suggestion per
    message; failed ones and the owner's own requests do not count."""
    from sqlalchemy.exc import IntegrityError

    t0 = start()
    await chat(device_client, [message("in-1", 0, "dinner tonight?", start=t0, sender=FRIEND)])
    target = await message_id(app, "in-1")

    async def add(status: ResponseStatus, *, auto: bool = True) -> None:
        async with app.state.sessionmaker.begin() as session:
            session.add(GeneratedResponse(message_id=target, prompt="p", status=status, auto=auto))

    await add(ResponseStatus.FAILED)
    await add(ResponseStatus.FAILED)
    await add(ResponseStatus.GENERATING)
    await add(ResponseStatus.COMPLETED, auto=False)  # the owner asked for more
    with pytest.raises(IntegrityError):
        await add(ResponseStatus.GENERATING)
    # The Suggester sees the taken message and queues nothing.
    assert await app.state.suggester.suggest(await conversation_of(app)) is None


async def conversation_of(app: Any) -> uuid.UUID:
    async with app.state.sessionmaker() as session:
        found = await session.scalar(select(Conversation.id))
        assert found is not None
        return found
