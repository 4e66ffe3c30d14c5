"""A sync brings a message, and its suggestions get ready with nobody asking: the Suggester
and the reconciler against the real ML service (tiny model). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from convassist.core.suggestions import CANDIDATES
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    GeneratedResponse,
    Message,
    ResponseStatus,
    SampleSource,
    TrainingSample,
)
from convassist.server.reconciler import Reconciler
from convassist.server.suggest.service import Suggester
from tests.support.chats import message, sync
from tests.support.services import ML_TOKEN

pytestmark = pytest.mark.slow

FRIEND = "+15551230001"
CHAT = f"iMessage;-;{FRIEND}"


@pytest.fixture
async def ml(app: Any, ml_service_url: str) -> AsyncIterator[MLClient]:
    client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)
    app.state.suggester.ml = client
    yield client
    await client.aclose()


async def rows(app: Any) -> list[GeneratedResponse]:
    async with app.state.sessionmaker() as session:
        query = select(GeneratedResponse).order_by(GeneratedResponse.created_at)
        return list((await session.execute(query)).scalars())


async def ready(app: Any, ml: MLClient, response_id: uuid.UUID) -> GeneratedResponse:
    """The suggestion once the reconciler has stored its ML job's result."""
    reconciler = Reconciler(app.state.sessionmaker, ml)
    for _ in range(240):
        await reconciler.reconcile_once()
        async with app.state.sessionmaker() as session:
            row = await session.get(GeneratedResponse, response_id)
        assert row is not None
        if row.status is not ResponseStatus.GENERATING:
            return row
        await asyncio.sleep(0.5)
    raise AssertionError("still generating")


async def test_a_synced_message_gets_ready_suggestions_and_a_phone_reply_beats_them(
    app: Any, device_client: httpx.AsyncClient, ml: MLClient
) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    await sync(
        device_client,
        CHAT,
        [
            message("in-1", 0, "hey", start=t0, sender=FRIEND),
            message("in-2", 1, "want to get dinner tonight?", start=t0, sender=FRIEND),
        ],
        participants=[FRIEND],
    )
    [first_id] = await app.state.suggester.drain()
    first = await ready(app, ml, first_id)
    assert first.auto and first.status is ResponseStatus.COMPLETED, first.error
    assert len(first.candidates) == CANDIDATES
    assert first.model_version and first.model_version.startswith("smollm2-135m-instruct@")
    [only] = await rows(app)  # only the newest waiting message got one
    async with app.state.sessionmaker() as session:
        newest = await session.scalar(select(Message.id).where(Message.imessage_guid == "in-2"))
    assert only.id == first_id and first.message_id == newest
    assert "want to get dinner tonight?" in first.prompt

    # A restarted server's sweep finds nothing to do: the message has its suggestion.
    restarted = Suggester(app.state.sessionmaker, ml, app.state.suggester.policy)
    assert await restarted.sweep() == []

    # A newer message: the earlier suggestion retires, the new one is queued.
    await sync(
        device_client,
        CHAT,
        [message("in-3", 2, "thinking 7 at the thai place", start=t0, sender=FRIEND)],
        participants=[FRIEND],
    )
    [second_id] = await app.state.suggester.drain()
    assert (await ready(app, ml, second_id)).status is ResponseStatus.COMPLETED
    old, new = await rows(app)
    assert old.id == first_id and old.retired_at is not None
    assert new.id == second_id and new.retired_at is None and new.message_id != newest

    # The owner answers from the phone: the suggestion it beat retires, the reply is a sample.
    await sync(
        device_client,
        CHAT,
        [message("out-1", 3, "perfect, see you there", start=t0)],
        participants=[FRIEND],
    )
    assert await app.state.suggester.drain() == []
    assert all(r.retired_at is not None for r in await rows(app))
    async with app.state.sessionmaker() as session:
        [sample] = list((await session.execute(select(TrainingSample))).scalars())
    assert sample.source is SampleSource.REPLIED
    assert sample.response_id == second_id
    assert sample.expected_output == "perfect, see you there"
    assert sample.input_context == new.prompt


async def test_after_a_restart_the_sweep_queues_what_was_never_handed_over(
    app: Any, device_client: httpx.AsyncClient, ml: MLClient
) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    await sync(
        device_client,
        CHAT,
        [message("in-1", 0, "are you home?", start=t0, sender=FRIEND)],
        participants=[FRIEND],
    )
    # The server stopped before its Suggester got to it; a new one starts with a sweep.
    restarted = Suggester(app.state.sessionmaker, ml, app.state.suggester.policy)
    [response_id] = await restarted.sweep()
    assert await restarted.sweep() == []  # once
    assert await app.state.suggester.drain() == []  # the old process's notice is moot too
    async with app.state.sessionmaker() as session:
        row = await session.get(GeneratedResponse, response_id)
    assert row is not None and row.auto and row.ml_job_id  # handed to the ML service
    assert row.status in (ResponseStatus.GENERATING, ResponseStatus.COMPLETED)
