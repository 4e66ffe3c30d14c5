"""The owner's consent: switches per conversation and per contact, what they keep out
(suggestions, training), and deleting a conversation or contact. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from convassist.server.ml_client import MLClient
from convassist.server.models import (
    Conversation,
    GeneratedResponse,
    Message,
    OutboxMessage,
    SampleSource,
    TrainingSample,
)
from convassist.server.training.jobs import snapshot_path
from tests.conftest import OWNER_PASSWORD
from tests.support.chats import message, sync
from tests.support.outbox import AT, suggestion, waiting_message
from tests.support.services import ML_TOKEN, free_port

pytestmark = pytest.mark.asyncio

FRIEND = "+15550001111"
OTHER = "+15550002222"


async def _contact(
    device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient, handle: str
) -> dict[str, Any]:
    resp = await device_client.post(
        "/api/sync/contacts", json={"contacts": [{"appleId": handle, "displayName": "Ana"}]}
    )
    assert resp.status_code == 200, resp.text
    items = (await owner_client.get("/api/contacts", params={"q": handle})).json()["items"]
    assert [c["appleId"] for c in items] == [handle]
    contact: dict[str, Any] = items[0]
    return contact


async def _chat(
    device_client: httpx.AsyncClient, handle: str, word: str, *, group: bool = False
) -> str:
    """A chat with `handle`: they ask, the owner answers (a history sample); its id."""
    return await sync(
        device_client,
        f"iMessage;{'+' if group else '-'};chat-{handle}-{group}",
        [
            message(f"{handle}-{group}-in", 0, f"{word} tonight?", start=AT, sender=handle),
            message(f"{handle}-{group}-out", 1, f"{word} sounds good", start=AT),
        ],
        participants=[handle, OTHER] if group else [handle],
        group=group,
    )


async def test_conversation_switches_show_and_refuse_bad_input(
    app: Any,
    client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation = await _chat(device_client, FRIEND, "pizza")
    shown = (await owner_client.get(f"/api/conversations/{conversation}")).json()
    assert (shown["training"], shown["suggestions"], shown["learning"], shown["suggesting"]) == (
        True,
        True,
        True,
        True,
    )
    for body, after in (
        ({"training": False}, (False, True)),
        ({"suggestions": False}, (False, False)),
        ({"training": True, "suggestions": True}, (True, True)),
    ):
        resp = await owner_client.patch(f"/api/conversations/{conversation}", json=body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert (out["training"], out["suggestions"]) == after
        assert (out["learning"], out["suggesting"]) == after
        listed = (await owner_client.get("/api/conversations")).json()["items"][0]
        assert (listed["training"], listed["suggestions"]) == after
    for bad in ({}, {"training": None}, {"training": "nope"}, {"training": True, "extra": 1}):
        resp = await owner_client.patch(f"/api/conversations/{conversation}", json=bad)
        assert resp.status_code == 422, bad
    missing = await owner_client.patch(
        f"/api/conversations/{uuid.uuid4()}", json={"training": False}
    )
    assert (missing.status_code, missing.json()["error"]) == (404, "conversation_not_found")
    client.cookies.clear()
    body = {"training": False}
    assert (await client.patch(f"/api/conversations/{conversation}", json=body)).status_code == 401
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert client.cookies[SESSION_COOKIE] and client.cookies[CSRF_COOKIE]
    refused = await client.patch(f"/api/conversations/{conversation}", json=body)
    assert (refused.status_code, refused.json()["error"]) == (403, "csrf_failed")
    refused = await client.delete(f"/api/conversations/{conversation}")
    assert refused.status_code == 403
    assert (await owner_client.get(f"/api/conversations/{conversation}")).json()["training"]
    ok = await client.patch(
        f"/api/conversations/{conversation}",
        json=body,
        headers={"X-CSRF-Token": login.json()["csrfToken"]},
    )
    assert ok.status_code == 200 and ok.json()["training"] is False


async def test_contact_switches_apply_to_every_conversation_with_them(
    app: Any,
    client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    contact = await _contact(device_client, owner_client, FRIEND)
    assert (contact["training"], contact["suggestions"]) == (True, True)
    alone = await _chat(device_client, FRIEND, "pizza")
    group = await _chat(device_client, FRIEND, "tacos", group=True)
    resp = await owner_client.patch(f"/api/contacts/{contact['id']}", json={"suggestions": False})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["training"], resp.json()["suggestions"]) == (True, False)
    for conversation in (alone, group):
        out = (await owner_client.get(f"/api/conversations/{conversation}")).json()
        assert (out["suggestions"], out["suggesting"], out["learning"]) == (True, False, True)
        person = next(p for p in out["participants"] if p["handle"] == FRIEND)
        assert (person["contactId"], person["suggestions"]) == (contact["id"], False)
    assert (await owner_client.get("/api/contacts")).json()["items"][0]["suggestions"] is False
    assert (await owner_client.patch(f"/api/contacts/{contact['id']}", json={})).status_code == 422
    missing = await owner_client.patch(f"/api/contacts/{uuid.uuid4()}", json={"training": False})
    assert (missing.status_code, missing.json()["error"]) == (404, "contact_not_found")
    assert (await owner_client.delete(f"/api/contacts/{uuid.uuid4()}")).status_code == 404
    client.cookies.clear()
    url = f"/api/contacts/{contact['id']}"
    assert (await client.patch(url, json={"training": False})).status_code == 401
    assert (await client.get("/api/contacts")).status_code == 401
    await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert (await client.patch(url, json={"training": False})).status_code == 403
    assert (await client.delete(url)).status_code == 403


async def test_no_suggestions_where_the_owner_switched_them_off(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=5)  # recent enough to wait on a reply
    conversation = await sync(
        device_client,
        f"iMessage;-;{FRIEND}",
        [message("in-1", 0, "Dinner tonight?", start=recent, sender=FRIEND)],
        participants=[FRIEND],
    )
    assert (await owner_client.get(f"/api/conversations/{conversation}")).json()[
        "awaitingReplySince"
    ]
    page = (await owner_client.get(f"/api/conversations/{conversation}/messages")).json()
    message_id = page["items"][-1]["id"]
    contact = await _contact(device_client, owner_client, FRIEND)
    offered = await suggestion(app, message_id, ["Sure, 7?"])
    await owner_client.patch(f"/api/contacts/{contact['id']}", json={"suggestions": False})
    async with app.state.sessionmaker() as session:  # what was on offer is retired
        row = await session.get(GeneratedResponse, uuid.UUID(offered))
        assert row is not None and row.retired_at is not None
        await session.delete(row)
        await session.commit()
    assert await app.state.suggester.suggest(uuid.UUID(conversation)) is None
    resp = await owner_client.post("/api/responses/generate", json={"messageId": message_id})
    assert (resp.status_code, resp.json()["error"]) == (409, "suggestions_excluded")
    await owner_client.patch(f"/api/contacts/{contact['id']}", json={"suggestions": True})
    await owner_client.patch(f"/api/conversations/{conversation}", json={"suggestions": False})
    assert await app.state.suggester.sweep() == []
    resp = await owner_client.post("/api/responses/generate", json={"messageId": message_id})
    assert resp.status_code == 409
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(GeneratedResponse)) == 0
    # Switched back on, the Suggester does queue one (the ML service is down: it fails).
    await owner_client.patch(f"/api/conversations/{conversation}", json={"suggestions": True})
    app.state.suggester.ml = MLClient(f"http://127.0.0.1:{free_port()}", timeout=5, token=ML_TOKEN)
    await app.state.suggester.suggest(uuid.UUID(conversation))
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(GeneratedResponse)) == 1


async def _job_records(app: Any, settings: Any, owner_client: httpx.AsyncClient) -> list[Any]:
    """Start a job (the ML service is down, so it fails) and read the samples it snapshot."""
    app.state.ml_client = MLClient(f"http://127.0.0.1:{free_port()}", timeout=5, token=ML_TOKEN)
    resp = await owner_client.post(
        "/api/training/jobs",
        json={"epochs": 1, "baseModel": "smollm2-135m-instruct", "includeHistory": True},
    )
    assert resp.status_code == 503, resp.text
    job = (await owner_client.get("/api/training/jobs")).json()["items"][0]
    path = Path(snapshot_path(settings.data_dir, uuid.UUID(job["id"])))
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_training_job_and_the_export_leave_out_excluded_conversations_and_groups(
    app: Any, settings: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    contact = await _contact(device_client, owner_client, FRIEND)
    friend = await _chat(device_client, FRIEND, "pizza")
    other = await _chat(device_client, OTHER, "sushi")
    group = await _chat(device_client, OTHER, "tacos", group=True)
    for conversation in (friend, other, group):
        made = await owner_client.post(
            "/api/training/samples",
            json={
                "inputContext": "Them: hi\nMe:",
                "expectedOutput": f"manual for {conversation}",
                "conversationId": conversation,
            },
        )
        assert made.status_code == 201, made.text

    def seen(records: list[Any]) -> set[tuple[str | None, str]]:
        return {(r["conversationId"], r["source"]) for r in records}

    async def exported() -> set[str | None]:
        """The conversations of the owner's JSONL export (manual samples only: history
        samples are built by the job, not stored)."""
        resp = await owner_client.get("/api/training/samples/export")
        assert resp.status_code == 200, resp.text
        return {json.loads(line)["conversationId"] for line in resp.text.splitlines()}

    everyone = {(c, s) for c in (friend, other) for s in ("manual", "history")}
    assert seen(await _job_records(app, settings, owner_client)) == everyone
    assert await exported() == {friend, other}
    settings.train_on_groups = True
    with_groups = everyone | {(group, "manual"), (group, "history")}
    assert seen(await _job_records(app, settings, owner_client)) == with_groups
    assert await exported() == {friend, other, group}
    settings.train_on_groups = False
    await owner_client.patch(f"/api/contacts/{contact['id']}", json={"training": False})
    assert seen(await _job_records(app, settings, owner_client)) == {
        (other, "manual"),
        (other, "history"),
    }
    assert await exported() == {other}
    await owner_client.patch(f"/api/contacts/{contact['id']}", json={"training": True})
    await owner_client.patch(f"/api/conversations/{other}", json={"training": False})
    assert seen(await _job_records(app, settings, owner_client)) == {
        (friend, "manual"),
        (friend, "history"),
    }
    assert await exported() == {friend}


async def _counts(app: Any, conversation_id: uuid.UUID) -> dict[str, int]:
    async with app.state.sessionmaker() as session:
        messages = select(Message.id).where(Message.conversation_id == conversation_id)

        async def count(model: Any, *where: Any) -> int:
            return int(
                await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
            )

        return {
            "conversations": await count(Conversation, Conversation.id == conversation_id),
            "messages": await count(Message, Message.conversation_id == conversation_id),
            "suggestions": await count(
                GeneratedResponse, GeneratedResponse.message_id.in_(messages)
            ),
            "samples": await count(
                TrainingSample, TrainingSample.conversation_id == conversation_id
            ),
            "outbox": await count(OutboxMessage, OutboxMessage.conversation_id == conversation_id),
        }


async def _full(
    app: Any, owner_client: httpx.AsyncClient, conversation: str, message_id: str
) -> None:
    """A suggestion, an accepted sample of it, a sample only linked through it, an outbox entry."""
    response = await suggestion(app, message_id, ["Sure, 7?"])
    accepted = await owner_client.post(
        f"/api/responses/{response}/action", json={"action": "accept", "candidateIndex": 0}
    )
    assert accepted.status_code == 200, accepted.text
    queued = await owner_client.post(
        "/api/outbox", json={"conversationId": conversation, "text": "On my way"}
    )
    assert queued.status_code == 201, queued.text
    async with app.state.sessionmaker() as session:
        session.add(
            TrainingSample(
                input_context="Them: hi\nMe:",
                expected_output="linked by its suggestion only",
                source=SampleSource.MANUAL,
                quality=1.0,
                response_id=None,
                conversation_id=None,
            )
        )
        await session.commit()


async def test_deleting_a_conversation_removes_all_it_holds_and_nothing_else(
    app: Any, database_url: str, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    gone, gone_message = await waiting_message(app, device_client, owner_client, text="hiking?")
    kept, kept_message = await waiting_message(
        app, device_client, owner_client, sender=OTHER, text="hiking too?"
    )
    for conversation, message_id in ((gone, gone_message), (kept, kept_message)):
        await _full(app, owner_client, conversation, message_id)
    async with app.state.sessionmaker() as session:  # the extra sample: only its suggestion
        response_id = await session.scalar(
            select(GeneratedResponse.id).where(
                GeneratedResponse.message_id == uuid.UUID(gone_message)
            )
        )
        accepted = (
            await session.execute(
                select(TrainingSample).where(TrainingSample.response_id == response_id)
            )
        ).scalar_one()
        accepted.conversation_id = None
        await session.commit()
    before_kept = await _counts(app, uuid.UUID(kept))
    assert before_kept == {
        "conversations": 1,
        "messages": 1,
        "suggestions": 1,
        "samples": 1,
        "outbox": 1,
    }
    resp = await owner_client.delete(f"/api/conversations/{gone}")
    assert resp.status_code == 204, resp.text
    assert await _counts(app, uuid.UUID(gone)) == dict.fromkeys(before_kept, 0)
    assert await _counts(app, uuid.UUID(kept)) == before_kept
    async with app.state.sessionmaker() as session:
        left = await session.scalar(select(func.count()).select_from(TrainingSample))
        assert left == 3  # kept's accepted sample and the two unlinked manual ones
        if database_url.startswith("sqlite"):  # the search index lost the deleted messages
            indexed = await session.scalar(text("SELECT count(*) FROM message_search"))
            assert indexed == 1
    found = (await owner_client.get("/api/conversations", params={"q": "hiking"})).json()["items"]
    assert [c["id"] for c in found] == [kept]
    assert (await owner_client.get(f"/api/conversations/{gone}")).status_code == 404
    assert (await owner_client.delete(f"/api/conversations/{gone}")).status_code == 404


async def test_deleting_a_contact_removes_their_one_to_one_chats_not_groups(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    contact = await _contact(device_client, owner_client, FRIEND)
    alone = await _chat(device_client, FRIEND, "pizza")
    group = await _chat(device_client, FRIEND, "tacos", group=True)
    other = await _chat(device_client, OTHER, "sushi")
    assert (await owner_client.delete(f"/api/contacts/{contact['id']}")).status_code == 204
    assert (await owner_client.get(f"/api/conversations/{alone}")).status_code == 404
    for kept in (group, other):
        out = await owner_client.get(f"/api/conversations/{kept}")
        assert out.status_code == 200 and out.json()["messageCount"] == 2
    assert (await owner_client.get("/api/contacts")).json()["items"] == []
