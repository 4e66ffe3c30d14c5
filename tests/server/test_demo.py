"""`convassist demo`: one Chit-Chat person's conversations, synced by a demo device, and removed
again without touching anything else."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from convassist.server.demo import corpus, service
from convassist.server.models import (
    Base,
    Contact,
    Device,
    GeneratedResponse,
    Message,
    ResponseStatus,
    SampleSource,
    TrainingSample,
)
from tests.conftest import register_device
from tests.support.services import clean_env
from tests.support.shared import SHARED_DIR

SHARED_CORPUS = SHARED_DIR / "data" / "chitchat" / "dataset.json.gz"
REPLIES = 40
SYNC_STAMPS = ("updated_at", "last_sync_at")  # a sync stamps them even when nothing changed


@cache
def demo_set() -> tuple[str, list[tuple[str, corpus.Conversation]]]:
    """The person the demo picks and their first conversations, from the installed package."""
    data = corpus.load_corpus()
    me = corpus.most_conversations(data)
    return me, corpus.pick_conversations(data, me, REPLIES)


async def _load(app: Any) -> service.DemoTotals:
    me, chosen = demo_set()
    return await service.load(
        app.state.sessionmaker,
        chosen,
        me,
        max_batch=app.state.settings.sync_max_batch,
    )


async def _snapshot(app: Any, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but the `skip` columns), sorted, to compare before/after."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with app.state.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in skip]
            result = await session.execute(select(*columns))
            rows[table.name] = sorted((tuple(map(repr, row)) for row in result), key=str)
    return rows


async def _sync_real_data(client: httpx.AsyncClient, owner_client: httpx.AsyncClient) -> str:
    """A real device's conversation, a contact, and a sample on it; returns its id."""
    _, token = await register_device(client, owner_client, name="Robin's Mac")
    auth = {"Authorization": f"Bearer {token}"}
    contact = {"appleId": "+15550001111", "phoneNumber": "+15550001111", "displayName": "Sam"}
    resp = await client.post("/api/sync/contacts", json={"contacts": [contact]}, headers=auth)
    assert resp.status_code == 200, resp.text
    messages = [
        {
            "imessageGuid": f"real-{n}",
            "senderId": None if n % 2 else "+15550001111",
            "direction": "outgoing" if n % 2 else "incoming",
            "text": f"real message {n}",
            "sentAt": f"2026-03-0{n + 1}T10:00:00+00:00",
        }
        for n in range(4)
    ]
    body = {"conversationId": "iMessage;-;+15550001111", "messages": messages}
    resp = await client.post("/api/sync/messages", json=body, headers=auth)
    assert resp.status_code == 200, resp.text
    conversation_id = resp.json()["conversationId"]
    sample = {
        "inputContext": "Them: coffee?\nMe:",
        "expectedOutput": "sure",
        "conversationId": conversation_id,
    }
    assert (await owner_client.post("/api/training/samples", json=sample)).status_code == 201
    return str(conversation_id)


def test_the_installed_package_is_the_shared_corpus() -> None:
    """`pip install chitchat-dataset` gives the bytes the benchmarks use (SOURCE.md)."""
    if not SHARED_CORPUS.is_file():
        pytest.skip(f"no shared copy at {SHARED_CORPUS}")
    assert corpus.load_corpus(SHARED_CORPUS) == corpus.load_corpus()


def test_a_missing_corpus_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(corpus.CorpusMissing, match="No Chit-Chat corpus at"):
        corpus.load_corpus(tmp_path / "nothing.json")


async def test_the_demo_syncs_one_persons_conversations_from_a_demo_device(
    app: Any, owner_client: httpx.AsyncClient
) -> None:
    _, chosen = demo_set()
    totals = await _load(app)
    expected = sum(len(turn) for _, c in chosen for turn in c["messages"])
    assert totals.conversations == len(chosen) >= 2
    assert totals.inserted == expected
    listed = (await owner_client.get("/api/conversations", params={"limit": 100})).json()
    assert len(listed["items"]) == len(chosen)
    devices = (await owner_client.get("/api/devices")).json()
    demo = [d for d in devices if d["name"] == service.DEMO_DEVICE_NAME]
    assert len(demo) == 1 and demo[0]["status"] == "active"
    assert demo[0]["messagesSynced"] == expected
    async with app.state.sessionmaker() as session:
        outgoing = await session.scalar(
            select(Message.id).where(Message.direction == "outgoing").limit(1)
        )
        senders = set((await session.scalars(select(Message.sender_id))).all())
        names = set((await session.scalars(select(Contact.display_name))).all())
    assert outgoing is not None  # the person plays the owner
    assert None in senders and all(
        s is None or s.endswith(service.DEMO_HANDLE_DOMAIN) for s in senders
    )
    assert len(names) > 1 and None not in names


async def test_loading_twice_stores_nothing_twice(
    app: Any, owner_client: httpx.AsyncClient
) -> None:
    first = await _load(app)
    before = await _snapshot(app, skip=SYNC_STAMPS)
    second = await _load(app)
    assert second.inserted == 0 and second.updated == 0
    assert second.unchanged == first.inserted
    assert await _snapshot(app, skip=SYNC_STAMPS) == before
    async with app.state.sessionmaker() as session:
        devices = (await session.scalars(select(Device))).all()
    assert [d.hardware_id for d in devices].count(service.DEMO_HARDWARE_ID) == 1


async def test_remove_deletes_exactly_the_demo_data(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    await _sync_real_data(client, owner_client)
    before = await _snapshot(app)
    await _load(app)
    # Using the demo: a suggestion on a demo message, kept as a sample, and a manual sample.
    async with app.state.sessionmaker() as session:
        message = (
            await session.scalars(select(Message).where(Message.device_id.is_not(None)))
        ).all()
        demo_message = next(
            m for m in message if m.imessage_guid.startswith(service.DEMO_CHAT_PREFIX)
        )
        response = GeneratedResponse(
            message_id=demo_message.id, prompt="p", response="r", status=ResponseStatus.EDITED
        )
        session.add(response)
        await session.flush()
        session.add(
            TrainingSample(
                input_context="p",
                expected_output="r",
                source=SampleSource.EDITED,
                quality=1.0,
                response_id=response.id,
            )
        )
        session.add(
            TrainingSample(
                input_context="p",
                expected_output="m",
                source=SampleSource.MANUAL,
                quality=1.0,
                conversation_id=demo_message.conversation_id,
            )
        )
        await session.commit()
    me, chosen = demo_set()
    async with app.state.sessionmaker() as session:
        removed = await service.remove(session)
        await session.commit()
    assert removed.conversations == len(chosen)
    others = {s for _, c in chosen for s in corpus.senders(c)} - {me}
    assert removed.samples == 2 and removed.devices == 1 and removed.contacts == len(others)
    assert await _snapshot(app) == before  # the real device's data, row for row
    async with app.state.sessionmaker() as session:
        again = await service.remove(session)
    assert again == service.Removed(0, 0, 0, 0, 0)


def test_the_command_loads_with_progress_and_removes(tmp_path: Path) -> None:
    if not SHARED_CORPUS.is_file():
        pytest.skip(f"no shared copy at {SHARED_CORPUS}")
    env = clean_env(CONVASSIST_DATA_DIR=str(tmp_path / "data"), CONVASSIST_LOG_FORMAT="json")

    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "convassist", "demo", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    loaded = demo("--corpus", str(SHARED_CORPUS), "--replies", "30")
    assert loaded.returncode == 0, loaded.stderr
    assert "Syncing demo conversations" in loaded.stderr
    assert "Demo loaded from the device Demo: BYU Chit-Chat" in loaded.stderr
    assert "convassist up" in loaded.stderr
    again = demo("--corpus", str(SHARED_CORPUS), "--replies", "30")
    assert "0 new messages" in again.stderr and "already there" in again.stderr
    removed = demo("--remove")
    assert removed.returncode == 0, removed.stderr
    assert "Removed the demo" in removed.stderr
    assert "No demo data to remove." in demo("--remove").stderr
    missing = demo("--corpus", str(tmp_path / "none.json"))
    assert missing.returncode == 1
    assert "No Chit-Chat corpus at" in missing.stderr and "Traceback" not in missing.stderr
