"""The owner's outbox: queueing a reply (free text or a suggestion), listing, refusals."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from convassist.server.models import Conversation, GeneratedResponse, ResponseStatus
from tests.conftest import OWNER_PASSWORD
from tests.support.outbox import suggestion, waiting_message

pytestmark = pytest.mark.asyncio


async def test_a_suggestion_sent_as_is_is_accepted_once_and_stops_the_wait(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation, message = await waiting_message(app, device_client, owner_client)
    response = await suggestion(app, message, ["Sure, 7?", "Can't tonight"])
    other = await suggestion(app, message, ["Yes!"], auto=False)  # one the owner asked for
    body = {
        "conversationId": conversation,
        "text": " Can't tonight ",
        "responseId": response,
        "candidateIndex": 1,
    }
    resp = await owner_client.post("/api/outbox", json=body)
    assert resp.status_code == 201, resp.text
    queued = resp.json()
    assert queued["status"] == "queued"
    assert queued["text"] == "Can't tonight"
    assert queued["candidateIndex"] == 1
    assert queued["responseId"] == response
    assert queued["attempts"] == 0 and queued["deviceId"] is None
    lifetime = datetime.fromisoformat(queued["expiresAt"]) - datetime.fromisoformat(
        queued["createdAt"]
    )
    assert lifetime == timedelta(seconds=600)  # CONVASSIST_OUTBOX_EXPIRY_SECONDS' default

    async with app.state.sessionmaker() as session:
        row = await session.get(GeneratedResponse, uuid.UUID(response))
        assert row is not None
        assert row.status is ResponseStatus.ACCEPTED and row.chosen_index == 1
        assert row.retired_at is not None
        sibling = await session.get(GeneratedResponse, uuid.UUID(other))
        assert sibling is not None and sibling.retired_at is not None
        waiting = (await session.execute(select(Conversation.awaiting_reply_since))).scalar_one()
        assert waiting is None

    # The same suggestion cannot be sent a second time.
    again = await owner_client.post("/api/outbox", json=body)
    assert again.status_code == 409
    assert again.json()["error"] == "already_acted"
    listed = (await owner_client.get("/api/outbox")).json()
    assert [e["id"] for e in listed["items"]] == [queued["id"]]


async def test_an_edited_suggestion_is_edited_and_free_text_needs_no_suggestion(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation, message = await waiting_message(app, device_client, owner_client)
    response = await suggestion(app, message, ["Sure, 7?"])
    edited = await owner_client.post(
        "/api/outbox",
        json={"conversationId": conversation, "text": "Sure, 8?", "responseId": response},
    )
    assert edited.status_code == 201, edited.text
    assert edited.json()["candidateIndex"] == 0
    async with app.state.sessionmaker() as session:
        row = await session.get(GeneratedResponse, uuid.UUID(response))
        assert row is not None and row.status is ResponseStatus.EDITED
        assert row.edited_response == "Sure, 8?"
    free = await owner_client.post(
        "/api/outbox", json={"conversationId": conversation, "text": "Also, bring wine"}
    )
    assert free.status_code == 201, free.text
    assert free.json()["responseId"] is None and free.json()["candidateIndex"] is None
    page = (await owner_client.get("/api/outbox", params={"limit": 1})).json()
    assert [e["id"] for e in page["items"]] == [free.json()["id"]]
    rest = await owner_client.get("/api/outbox", params={"cursor": page["nextCursor"]})
    assert [e["id"] for e in rest.json()["items"]] == [edited.json()["id"]]
    assert rest.json()["nextCursor"] is None
    queued = await owner_client.get(
        "/api/outbox", params={"status": "sent", "conversationId": conversation}
    )
    assert queued.json()["items"] == []


async def test_queueing_refuses_what_it_cannot_send(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    conversation, message = await waiting_message(app, device_client, owner_client)
    other, other_message = await waiting_message(
        app, device_client, owner_client, sender="+15550002222"
    )
    elsewhere = await suggestion(app, other_message, ["Hi"])
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"conversationId": conversation, "text": "   "}, 422, "validation_error"),
        ({"conversationId": conversation, "text": "x" * 5001}, 422, "validation_error"),
        ({"conversationId": conversation}, 422, "validation_error"),
        ({"conversationId": conversation, "text": "hi", "bogus": 1}, 422, "validation_error"),
        (
            {"conversationId": conversation, "text": "hi", "candidateIndex": 1},
            422,
            "validation_error",
        ),
        ({"conversationId": str(uuid.uuid4()), "text": "hi"}, 404, "conversation_not_found"),
        (
            {"conversationId": conversation, "text": "hi", "responseId": str(uuid.uuid4())},
            404,
            "response_not_found",
        ),
        (
            {"conversationId": conversation, "text": "hi", "responseId": elsewhere},
            422,
            "response_mismatch",
        ),
        (
            {"conversationId": other, "text": "hi", "responseId": elsewhere, "candidateIndex": 3},
            422,
            "validation_error",
        ),
    ]
    for body, status, code in cases:
        resp = await owner_client.post("/api/outbox", json=body)
        assert (resp.status_code, resp.json()["error"]) == (status, code), body
    # A suggestion for a message that is no longer the one waiting is out of date.
    stale = await suggestion(app, message, ["Sure"])
    async with app.state.sessionmaker() as session:
        row = await session.get(GeneratedResponse, uuid.UUID(stale))
        assert row is not None
        row.retired_at = row.created_at
        await session.commit()
    resp = await owner_client.post(
        "/api/outbox", json={"conversationId": conversation, "text": "Sure", "responseId": stale}
    )
    assert (resp.status_code, resp.json()["error"]) == (409, "suggestion_retired")
    assert (await owner_client.get("/api/outbox")).json()["items"] == []
    assert (await owner_client.get("/api/outbox", params={"cursor": "nope"})).status_code == 400


async def test_queueing_needs_the_owner_and_the_csrf_token(
    app: Any,
    client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = await waiting_message(app, device_client, owner_client)
    body = {"conversationId": conversation, "text": "On my way"}
    client.cookies.clear()  # the owner_client fixture signed in through this client
    assert (await client.post("/api/outbox", json=body)).status_code == 401
    assert (await device_client.post("/api/outbox", json=body)).status_code == 401
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    csrf = login.json()["csrfToken"]
    assert client.cookies[SESSION_COOKIE] and client.cookies[CSRF_COOKIE] == csrf
    refused = await client.post("/api/outbox", json=body)
    assert (refused.status_code, refused.json()["error"]) == (403, "csrf_failed")
    assert (await owner_client.get("/api/outbox")).json()["items"] == []
    accepted = await client.post("/api/outbox", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201, accepted.text


async def test_queueing_is_rate_limited(
    app: Any, settings: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    settings.outbox_sends_per_minute = 3
    settings.outbox_expiry_seconds = 30
    conversation, _ = await waiting_message(app, device_client, owner_client)
    for n in range(3):
        resp = await owner_client.post(
            "/api/outbox", json={"conversationId": conversation, "text": f"part {n}"}
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        lifetime = datetime.fromisoformat(body["expiresAt"]) - datetime.fromisoformat(
            body["createdAt"]
        )
        assert lifetime == timedelta(seconds=30)
    limited = await owner_client.post(
        "/api/outbox", json={"conversationId": conversation, "text": "one more"}
    )
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert len((await owner_client.get("/api/outbox")).json()["items"]) == 3
