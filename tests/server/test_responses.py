"""Seed flows 3 and 4 end to end: sync → suggest (real ML service) → accept / edit / reject.

These run the real ML service with the default model as a subprocess, and the server on
PostgreSQL (and once on SQLite).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from convassist.server.ml_client import MLClient
from convassist.server.models import GeneratedResponse, Message, TrainingSample
from tests.support.services import ML_TOKEN

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

START = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
LINES = [
    ("incoming", "hey are you coming to the game tonight?"),
    ("outgoing", "yes! what time does it start"),
    ("incoming", "7pm, want to grab food before?"),
]


@pytest.fixture(params=["postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def ml_app(app: object, ml_service_url: str) -> object:
    """The server app pointed at the real ML service."""
    await app.state.ml_client.aclose()  # type: ignore[attr-defined]
    app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)  # type: ignore[attr-defined]
    return app


async def _sync_conversation(device_client: httpx.AsyncClient) -> dict[str, str]:
    """Sync one chat; returns {direction+index: message id} by text."""
    messages = [
        {
            "imessageGuid": f"guid-{i}",
            "senderId": None if direction == "outgoing" else "+15551230000",
            "direction": direction,
            "text": text,
            "sentAt": (START + timedelta(minutes=i)).isoformat(),
        }
        for i, (direction, text) in enumerate(LINES)
    ]
    resp = await device_client.post(
        "/api/sync/messages",
        json={
            "conversationId": "iMessage;-;+15551230000",
            "displayName": "Sam",
            "participants": ["+15551230000"],
            "messages": messages,
        },
    )
    assert resp.status_code == 200, resp.text
    return {"conversation": resp.json()["conversationId"]}


async def _message_ids(app: object) -> dict[str, uuid.UUID]:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (await session.execute(sa.select(Message.imessage_guid, Message.id))).all()
    return {guid: mid for guid, mid in rows}


async def _count(app: object, model: type) -> int:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return int(await session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


async def _generate(
    client: httpx.AsyncClient, message_id: uuid.UUID, **extra: object
) -> httpx.Response:
    return await client.post(
        "/api/responses/generate",
        json={"messageId": str(message_id), "context": {"maxHistory": 10}, **extra},
    )


async def test_suggest_then_accept_creates_the_seed_sample(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    resp = await _generate(owner_client, ids["guid-2"], candidates=3, seed=7)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "completed"
    assert body["response"]
    assert 0.0 <= body["confidence"] <= 1.0
    assert 1 <= len(body["candidates"]) <= 3
    texts = [c["text"] for c in body["candidates"]]
    assert len(set(texts)) == len(texts)
    # Each suggestion is one message: one line, no leading space from after "Me:".
    assert all(text and text == text.strip() and "\n" not in text for text in texts)
    assert body["response"] == texts[0]
    assert body["modelVersion"].startswith("smollm2-135m-instruct")

    stored = (await owner_client.get(f"/api/responses/{body['responseId']}")).json()
    assert stored["prompt"] == (
        "Them: hey are you coming to the game tonight?\n"
        "Me: yes! what time does it start\n"
        "Them: 7pm, want to grab food before?\n"
        "Me:"
    )
    assert stored["status"] == "completed"
    assert stored["generatedAt"]

    accepted = await owner_client.post(
        f"/api/responses/{body['responseId']}/action", json={"action": "accept"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    sample = (await owner_client.get(f"/api/training/samples/{accepted.json()['sampleId']}")).json()
    assert sample["source"] == "accepted"
    assert sample["inputContext"] == stored["prompt"]
    assert sample["expectedOutput"] == body["response"]
    assert sample["quality"] == pytest.approx(body["candidates"][0]["confidence"])
    assert sample["conversationId"] == stored["conversationId"]

    twice = await owner_client.post(
        f"/api/responses/{body['responseId']}/action", json={"action": "reject"}
    )
    assert twice.status_code == 409
    assert twice.json()["error"] == "already_acted"
    assert await _count(ml_app, TrainingSample) == 1


async def test_accepting_another_candidate_records_the_choice(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    body = (await _generate(owner_client, ids["guid-2"], candidates=3, seed=11)).json()
    last = len(body["candidates"]) - 1
    out_of_range = await owner_client.post(
        f"/api/responses/{body['responseId']}/action",
        json={"action": "accept", "candidateIndex": last + 1},
    )
    assert out_of_range.status_code == 422
    chosen = await owner_client.post(
        f"/api/responses/{body['responseId']}/action",
        json={"action": "accept", "candidateIndex": last},
    )
    assert chosen.status_code == 200
    assert chosen.json()["chosenIndex"] == last
    assert chosen.json()["response"] == body["candidates"][last]["text"]
    sample = (await owner_client.get(f"/api/training/samples/{chosen.json()['sampleId']}")).json()
    assert sample["expectedOutput"] == body["candidates"][last]["text"]


async def test_edit_creates_a_full_quality_sample_and_empty_edits_are_refused(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    body = (await _generate(owner_client, ids["guid-2"], seed=3)).json()
    url = f"/api/responses/{body['responseId']}/action"
    empty = await owner_client.post(url, json={"action": "edit", "editedResponse": "   "})
    assert empty.status_code == 422
    edited = await owner_client.post(
        url, json={"action": "edit", "editedResponse": "  sure, tacos at 6?  "}
    )
    assert edited.status_code == 200
    assert edited.json()["status"] == "edited"
    assert edited.json()["editedResponse"] == "sure, tacos at 6?"
    sample = (await owner_client.get(f"/api/training/samples/{edited.json()['sampleId']}")).json()
    assert (sample["source"], sample["quality"]) == ("edited", 1.0)
    assert sample["expectedOutput"] == "sure, tacos at 6?"
    assert sample["inputContext"].endswith("Them: 7pm, want to grab food before?\nMe:")


async def test_reject_stores_the_reason_and_no_sample(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    body = (await _generate(owner_client, ids["guid-2"], seed=5)).json()
    rejected = await owner_client.post(
        f"/api/responses/{body['responseId']}/action",
        json={"action": "reject", "rejectionReason": "too formal"},
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["rejectionReason"] == "too formal"
    assert rejected.json()["sampleId"] is None
    assert await _count(ml_app, TrainingSample) == 0
    listed = (await owner_client.get("/api/responses?status=rejected")).json()["items"]
    assert [r["id"] for r in listed] == [body["responseId"]]


async def test_async_generation_reports_progress_then_the_result(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    resp = await _generate(owner_client, ids["guid-2"], candidates=2, seed=9, **{"async": True})
    assert resp.status_code == 200
    assert resp.json()["status"] == "generating"
    assert resp.json()["response"] is None
    response_id = resp.json()["responseId"]
    for _ in range(300):
        state = (await owner_client.get(f"/api/responses/{response_id}")).json()
        if state["status"] != "generating":
            break
        await asyncio.sleep(0.1)
    assert state["status"] == "completed", state
    assert state["response"]
    assert state["candidates"]


async def test_bad_targets_are_clear_4xx(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    outgoing = await _generate(owner_client, ids["guid-1"])
    assert outgoing.status_code == 422
    assert outgoing.json()["error"] == "not_incoming"
    unknown = await _generate(owner_client, uuid.uuid4())
    assert unknown.status_code == 404
    too_many = await _generate(owner_client, ids["guid-2"], candidates=6)
    assert too_many.status_code == 422
    assert await _count(ml_app, GeneratedResponse) == 0
    missing = await owner_client.post(
        f"/api/responses/{uuid.uuid4()}/action", json={"action": "accept"}
    )
    assert missing.status_code == 404
    anonymous = await httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ml_app),  # type: ignore[arg-type]
        base_url="http://testserver",
    ).post("/api/responses/generate", json={"messageId": str(ids["guid-2"])})
    assert anonymous.status_code == 401


async def test_ml_service_down_then_back(
    ml_app: object,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    ml_service_url: str,
) -> None:
    from tests.support.services import free_port

    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    dead_url = f"http://127.0.0.1:{free_port()}"
    ml_app.state.ml_client = MLClient(dead_url, timeout=5, token=ML_TOKEN)  # type: ignore[attr-defined]
    down = await _generate(owner_client, ids["guid-2"])
    assert down.status_code == 503
    assert down.json() == {
        "error": "ml_service_unavailable",
        "detail": f"The ML service is not reachable at {dead_url}.",
    }
    failed = (await owner_client.get("/api/responses?status=failed")).json()["items"]
    assert len(failed) == 1
    assert failed[0]["error"] == f"The ML service is not reachable at {dead_url}."
    assert await _count(ml_app, Message) == len(LINES)
    assert await _count(ml_app, TrainingSample) == 0
    not_ready = await owner_client.post(
        f"/api/responses/{failed[0]['id']}/action", json={"action": "accept"}
    )
    assert not_ready.status_code == 409

    ml_app.state.ml_client = MLClient(ml_service_url, timeout=60, token=ML_TOKEN)  # type: ignore[attr-defined]
    retry = await _generate(owner_client, ids["guid-2"])
    assert retry.status_code == 200
    assert retry.json()["status"] == "completed"


async def test_a_server_with_another_token_cannot_use_the_ml_service(
    ml_app: object,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    ml_service_url: str,
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    wrong = MLClient(ml_service_url, timeout=60, token="not-" + ML_TOKEN)
    ml_app.state.ml_client = wrong  # type: ignore[attr-defined]
    refused = await _generate(owner_client, ids["guid-2"])
    assert refused.status_code == 503
    assert refused.json()["error"] == "ml_service_unauthorized"
    assert "ML_SERVICE_TOKEN" in refused.json()["detail"]
    [failed] = (await owner_client.get("/api/responses?status=failed")).json()["items"]
    assert "refused the server's token" in failed["error"]
    await wrong.aclose()


async def test_ml_service_too_slow_is_a_504(
    ml_app: object,
    owner_client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    ml_service_url: str,
) -> None:
    await _sync_conversation(device_client)
    ids = await _message_ids(ml_app)
    ml_app.state.ml_client = MLClient(ml_service_url, timeout=0.01, token=ML_TOKEN)  # type: ignore[attr-defined]
    slow = await _generate(owner_client, ids["guid-2"], maxTokens=256, temperature=1.0)
    assert slow.status_code == 504
    assert slow.json()["error"] == "ml_service_timeout"
    failed = (await owner_client.get("/api/responses?status=failed")).json()["items"]
    assert len(failed) == 1
    assert "did not answer within" in failed[0]["error"]


async def test_the_owners_stock_reply_is_among_the_suggestions(
    ml_app: object, owner_client: httpx.AsyncClient, device_client: httpx.AsyncClient
) -> None:
    await _sync_conversation(device_client)
    for n, chat in enumerate(("+15550001111", "+15550002222", "+15550003333")):
        msgs = [
            {
                "imessageGuid": f"stock-{n}",
                "senderId": None,
                "direction": "outgoing",
                "text": "Sounds perfect, count me in!",
                "sentAt": (START - timedelta(days=n + 1)).isoformat(),
            }
        ]
        resp = await device_client.post(
            "/api/sync/messages",
            json={"conversationId": f"iMessage;-;{chat}", "participants": [chat], "messages": msgs},
        )
        assert resp.status_code == 200, resp.text
    ids = await _message_ids(ml_app)
    resp = await _generate(owner_client, ids["guid-2"], candidates=3, seed=7)
    assert resp.status_code == 200, resp.text
    texts = [c["text"] for c in resp.json()["candidates"]]
    assert "Sounds perfect, count me in!" in texts
    # One candidate asked for: what the model samples, nothing offered.
    one = await _generate(owner_client, ids["guid-2"], candidates=1, seed=7)
    assert [c["text"] for c in one.json()["candidates"]] != ["Sounds perfect, count me in!"]
