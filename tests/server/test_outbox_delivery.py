"""Devices sending from the outbox: claims (exactly once, sticky, never late), reports,
the sync's confirmation, permission and revocation, and the samples that sending makes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from convassist.core.logging import configure_logging
from convassist.server.models import OutboxMessage, OutboxStatus, SampleSource, utcnow
from convassist.server.outbox.service import NO_REPORT, REVOKED
from tests.support.chats import message, sync
from tests.support.outbox import AT, entry, samples, sender, suggestion, waiting_message

pytestmark = pytest.mark.asyncio

SENDER = "+15550001111"
CHAT = f"iMessage;-;{SENDER}"


@pytest.fixture
async def waiting(
    app: Any, device_client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> tuple[str, str]:
    """A conversation with SENDER waiting on the owner: (conversation id, message id)."""
    return await waiting_message(app, device_client, owner_client, sender=SENDER)


@pytest.fixture
async def mac(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a second device, allowed to send."""
    _, device = await sender(app, client, owner_client)
    async with device:
        yield device


async def _queue(owner: httpx.AsyncClient, conversation: str, text: str, **extra: Any) -> str:
    resp = await owner.post(
        "/api/outbox", json={"conversationId": conversation, "text": text, **extra}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _claim(device: httpx.AsyncClient, wait: float = 0) -> list[dict[str, Any]]:
    resp = await device.get("/api/sync/outbox", params={"wait": wait})
    assert resp.status_code == 200, resp.text
    assert resp.json()["pollAfterSeconds"] == 5
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def _shift(app: Any, outbox_id: str, **values: Any) -> None:
    async with app.state.sessionmaker() as session:
        row = await session.get(OutboxMessage, uuid.UUID(outbox_id))
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        await session.commit()


async def test_queue_claim_send_and_confirm_make_one_accepted_sample(
    waiting: tuple[str, str],
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, msg = waiting
    response = await suggestion(app, msg, ["Sure, 7?"], [0.75])
    outbox_id = await _queue(owner_client, conversation, "Sure, 7?", responseId=response)
    device_id, mac = await sender(app, client, owner_client)
    async with mac:
        [item] = await _claim(mac)
        assert item["id"] == outbox_id
        assert item["chatGuid"] == CHAT and item["isGroup"] is False
        assert item["text"] == "Sure, 7?" and item["attempt"] == 1
        assert 590 <= item["expiresInSeconds"] <= 600
        # Fetched again (the agent restarted before sending): offered again, attempt 2.
        [again] = await _claim(mac)
        assert again["id"] == outbox_id and again["attempt"] == 2
        claimed = await entry(app, outbox_id)
        assert claimed.status is OutboxStatus.SENDING and str(claimed.device_id) == device_id

        sent = await mac.post(f"/api/sync/outbox/{outbox_id}/result", json={"status": "sent"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "sent" and sent.json()["sentAt"]
        [sample] = await samples(app)
        assert sample.source is SampleSource.ACCEPTED and sample.quality == 0.75
        assert str(sample.response_id) == response and sample.expected_output == "Sure, 7?"
        # The same report again: the same answer, no second sample.
        again = await mac.post(f"/api/sync/outbox/{outbox_id}/result", json={"status": "sent"})
        assert again.status_code == 200 and again.json()["status"] == "sent"
        other = await mac.post(
            f"/api/sync/outbox/{outbox_id}/result", json={"status": "failed", "error": "x"}
        )
        assert (other.status_code, other.json()["error"]) == (409, "already_reported")

        # The next sync shows it in chat.db: confirmed with its guid, still one sample.
        sent_at = utcnow() - AT
        await sync(
            mac,
            CHAT,
            [message("out-1", sent_at.total_seconds() / 60, " Sure, 7? ", start=AT)],
            participants=[SENDER],
        )
        done = await entry(app, outbox_id)
        assert done.status is OutboxStatus.CONFIRMED and done.message_guid == "out-1"
        assert done.confirmed_at is not None
        assert len(await samples(app)) == 1
        assert await _claim(mac) == []
        listed = (await owner_client.get("/api/outbox", params={"status": "confirmed"})).json()
        assert [e["messageGuid"] for e in listed["items"]] == ["out-1"]


async def test_a_claim_is_sticky_and_two_racing_devices_get_it_once(
    waiting: tuple[str, str],
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = waiting
    _, mac_a = await sender(app, client, owner_client, name="A")
    _, mac_b = await sender(app, client, owner_client, name="B")
    async with mac_a, mac_b:
        ids = [await _queue(owner_client, conversation, f"reply {n}") for n in range(3)]
        devices = [mac_a, mac_b] * 10
        results = await asyncio.gather(*(_claim(d) for d in devices))
        got: dict[int, set[str]] = {id(mac_a): set(), id(mac_b): set()}
        offers: dict[str, int] = {}
        for device, items in zip(devices, results, strict=True):
            for item in items:
                got[id(device)].add(item["id"])
                offers[item["id"]] = offers.get(item["id"], 0) + 1
        a_ids, b_ids = got[id(mac_a)], got[id(mac_b)]
        # One entry per claim; each went to exactly one device, which alone is offered it again.
        assert all(len(items) <= 1 for items in results) and a_ids | b_ids
        assert not a_ids & b_ids
        for outbox_id in a_ids | b_ids:
            assert (await entry(app, outbox_id)).attempts == offers[outbox_id]
        assert {i["id"] for i in await _claim(mac_a)} <= a_ids
        assert {i["id"] for i in await _claim(mac_b)} <= b_ids
        a_again, b_again = a_ids, b_ids
        # A report from the device that did not claim it is refused.
        one = next(iter(a_again or b_again))
        wrong = mac_b if one in a_again else mac_a
        refused = await wrong.post(f"/api/sync/outbox/{one}/result", json={"status": "sent"})
        assert (refused.status_code, refused.json()["error"]) == (409, "not_claimed")
        unknown = await wrong.post(
            f"/api/sync/outbox/{uuid.uuid4()}/result", json={"status": "sent"}
        )
        assert (unknown.status_code, unknown.json()["error"]) == (404, "outbox_not_found")
        assert (await entry(app, one)).status is OutboxStatus.SENDING
        # Each device reports what it holds and claims the next: every entry goes out once.
        held = {id(mac_a): a_ids, id(mac_b): b_ids}
        delivered: list[str] = []
        for _ in ids:
            for device in (mac_a, mac_b):
                for outbox_id in held[id(device)]:
                    url = f"/api/sync/outbox/{outbox_id}/result"
                    assert (await device.post(url, json={"status": "sent"})).status_code == 200
                    delivered.append(outbox_id)
                held[id(device)] = {i["id"] for i in await _claim(device)}
        assert sorted(delivered) == sorted(ids)


async def test_an_expired_entry_is_never_handed_out(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = waiting
    stale = await _queue(owner_client, conversation, "Too late")
    nearly = await _queue(owner_client, conversation, "Almost too late")
    await _shift(app, stale, expires_at=utcnow() - timedelta(seconds=1))
    await _shift(app, nearly, expires_at=utcnow() + timedelta(seconds=1))
    assert await _claim(mac) == []
    assert (await entry(app, stale)).status is OutboxStatus.EXPIRED
    await asyncio.sleep(1.1)
    assert await _claim(mac) == []
    listed = (await owner_client.get("/api/outbox", params={"status": "expired"})).json()
    assert {e["id"] for e in listed["items"]} == {stale, nearly}
    # The phone's copy of an expired text is not the outbox's send.
    await sync(
        device_client,
        CHAT,
        [message("phone-1", 1, "Too late", start=utcnow())],
        participants=[SENDER],
    )
    assert (await entry(app, stale)).status is OutboxStatus.EXPIRED


async def test_a_device_needs_the_owners_permission_and_loses_it_at_once(
    waiting: tuple[str, str],
    app: Any,
    client: httpx.AsyncClient,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = waiting
    devices = (await owner_client.get("/api/devices")).json()
    assert [d["maySend"] for d in devices] == [False]  # off by default
    refused = await device_client.get("/api/sync/outbox")
    assert (refused.status_code, refused.json()["error"]) == (403, "send_not_allowed")
    device_id, mac = await sender(app, client, owner_client)
    _, other = await sender(app, client, owner_client, name="Other")
    async with mac, other:
        first = await _queue(owner_client, conversation, "one")
        [item] = await _claim(mac)
        assert item["id"] == first
        # Turning sending off: 403 at once, and what it was sending goes to no one else.
        off = await owner_client.patch(f"/api/devices/{device_id}", json={"maySend": False})
        assert off.status_code == 200 and off.json()["maySend"] is False
        assert (await mac.get("/api/sync/outbox")).status_code == 403
        assert (await entry(app, first)).status is OutboxStatus.FAILED
        assert await _claim(other) == []
        # Revoking: the token dies, the claimed entry fails with the reason.
        on = await owner_client.patch(f"/api/devices/{device_id}", json={"maySend": True})
        assert on.status_code == 200
        second = await _queue(owner_client, conversation, "two")
        assert [i["id"] for i in await _claim(mac)] == [second]
        revoked = await owner_client.post(f"/api/devices/{device_id}/deactivate")
        assert revoked.status_code == 200
        gone = await entry(app, second)
        assert gone.status is OutboxStatus.FAILED and gone.error == REVOKED
        assert (await mac.get("/api/sync/outbox")).status_code == 401
        assert await _claim(other) == []
        again = await owner_client.patch(f"/api/devices/{device_id}", json={"maySend": True})
        assert (again.status_code, again.json()["error"]) == (409, "device_inactive")
    missing = await owner_client.patch(f"/api/devices/{uuid.uuid4()}", json={"maySend": True})
    assert missing.status_code == 404
    for bad in ({}, {"maySend": "yes please"}, {"maySend": True, "name": "x"}):
        assert (await owner_client.patch(f"/api/devices/{device_id}", json=bad)).status_code == 422
    assert (
        await client.patch(
            f"/api/devices/{device_id}", json={"maySend": True}, headers={"Authorization": ""}
        )
    ).status_code in (401, 403)


async def test_failure_reports_and_malformed_ones(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = waiting
    outbox_id = await _queue(owner_client, conversation, "Hello")
    url = f"/api/sync/outbox/{outbox_id}/result"
    not_yet = await mac.post(url, json={"status": "sent"})
    assert (not_yet.status_code, not_yet.json()["error"]) == (409, "not_claimed")
    await _claim(mac)
    for bad in (
        {},
        {"status": "maybe"},
        {"status": "sent", "error": "x"},
        {"status": "failed", "messageGuid": "g"},
        {"status": "failed", "error": ""},
        {"status": "sent", "extra": 1},
    ):
        assert (await mac.post(url, json=bad)).status_code == 422, bad
    assert (await mac.get("/api/sync/outbox", params={"wait": 26})).status_code == 422
    body = {"status": "failed", "error": "Messages is not signed in"}
    failed = await mac.post(url, json=body)
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert failed.json()["error"] == "Messages is not signed in"
    assert (await mac.post(url, json=body)).json() == failed.json()
    late = await mac.post(url, json={"status": "sent"})
    assert (late.status_code, late.json()["error"]) == (409, "already_reported")
    assert await _claim(mac) == []  # a failed entry is not retried
    assert await samples(app) == []


async def test_no_report_fails_the_entry_and_the_sync_still_confirms_it(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    owner_client: httpx.AsyncClient,
) -> None:
    """Free text answering their message: a manual sample, once it shows in chat.db."""
    conversation, _ = waiting
    outbox_id = await _queue(owner_client, conversation, "See you there")
    await _claim(mac)
    queued_at = (await entry(app, outbox_id)).created_at
    await _shift(
        app,
        outbox_id,
        expires_at=utcnow() - timedelta(minutes=11),
        created_at=queued_at - timedelta(minutes=21),
    )
    listed = (await owner_client.get("/api/outbox")).json()["items"]
    assert (listed[0]["status"], listed[0]["error"]) == ("failed", NO_REPORT)
    sent_at = (queued_at - timedelta(minutes=20) - AT).total_seconds() / 60
    await sync(
        mac, CHAT, [message("out-9", sent_at, "See you there", start=AT)], participants=[SENDER]
    )
    done = await entry(app, outbox_id)
    assert done.status is OutboxStatus.CONFIRMED and done.message_guid == "out-9"
    assert done.error is None
    [sample] = await samples(app)
    assert sample.source is SampleSource.MANUAL and sample.quality == 1.0
    assert sample.response_id is None and "Dinner tonight?" in sample.input_context
    assert sample.expected_output == "See you there"


async def test_an_edited_suggestion_confirmed_by_guid_is_one_edited_sample(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, msg = waiting
    response = await suggestion(app, msg, ["Sure, 7?"], [None])
    outbox_id = await _queue(owner_client, conversation, "Sure, 8?", responseId=response)
    await _claim(mac)
    url = f"/api/sync/outbox/{outbox_id}/result"
    sent = await mac.post(url, json={"status": "sent", "messageGuid": "guid-7"})
    assert sent.json()["messageGuid"] == "guid-7"
    minutes = (utcnow() - AT).total_seconds() / 60
    # chat.db shows it (text changed by Messages' smart punctuation): matched by guid.
    await sync(
        mac,
        CHAT,
        [message("guid-7", minutes, "Sure, 8\u2019", start=AT)],
        participants=[SENDER],
    )
    assert (await entry(app, outbox_id)).status is OutboxStatus.CONFIRMED
    # The agent's repeated report after the confirmation is still the same answer.
    assert (await mac.post(url, json={"status": "sent"})).status_code == 200
    [sample] = await samples(app)
    assert sample.source is SampleSource.EDITED and sample.quality == 1.0
    assert sample.expected_output == "Sure, 8?"


async def test_the_long_poll_hands_out_what_is_queued_while_it_waits(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    conversation, _ = waiting
    started = time.monotonic()
    assert await _claim(mac, wait=1) == []
    assert 1 <= time.monotonic() - started < 3

    async def queue_later() -> str:
        await asyncio.sleep(0.6)
        return await _queue(owner_client, conversation, "Now")

    started = time.monotonic()
    items, outbox_id = await asyncio.gather(_claim(mac, wait=10), queue_later())
    assert [i["id"] for i in items] == [outbox_id]
    assert time.monotonic() - started < 3


async def test_sending_logs_no_text(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    owner_client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = ["meet me at Zanzibar Lane", "the door code is 918273", "AppleScript said Priya"]
    conversation, msg = waiting
    response = await suggestion(app, msg, [secrets[0]])
    root = logging.getLogger()
    previous = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json", component="server")
    try:
        first = await _queue(owner_client, conversation, secrets[0], responseId=response)
        second = await _queue(owner_client, conversation, secrets[1])
        assert [i["id"] for i in await _claim(mac)] == [first]
        await mac.post(f"/api/sync/outbox/{first}/result", json={"status": "sent"})
        assert [i["id"] for i in await _claim(mac)] == [second]
        failed = await mac.post(
            f"/api/sync/outbox/{second}/result", json={"status": "failed", "error": secrets[2]}
        )
        assert failed.status_code == 200, failed.text
        bad = await owner_client.post(
            "/api/outbox", json={"conversationId": conversation, "text": secrets[1] * 400}
        )
        assert bad.status_code == 422
        minutes = (utcnow() - AT).total_seconds() / 60
        await sync(
            mac, CHAT, [message("o-1", minutes, secrets[0], start=AT)], participants=[SENDER]
        )
        await owner_client.get("/api/outbox")
        log = capsys.readouterr().err + capsys.readouterr().out
    finally:
        root.handlers[:], level = previous
        root.setLevel(level)
    assert '"event": "outbox_confirmed"' in log and '"event": "outbox_reported"' in log
    for secret in secrets:
        assert secret not in log


async def test_the_same_text_sent_from_the_phone_confirms_a_queued_entry(
    waiting: tuple[str, str],
    mac: httpx.AsyncClient,
    app: Any,
    device_client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
) -> None:
    """The owner also typed it on the phone: the entry is confirmed, and never sent again."""
    conversation, _ = waiting
    outbox_id = await _queue(owner_client, conversation, "Running late")
    other = await _queue(owner_client, conversation, "Something else")
    minutes = (utcnow() - AT).total_seconds() / 60
    await sync(
        device_client,
        CHAT,
        [
            message("ph-1", minutes, "Running late", start=AT),
            message("ph-2", minutes, "Running late", start=AT),  # only one entry to confirm
            message("in-2", minutes, "Something else", start=AT, sender=SENDER),  # theirs
        ],
        participants=[SENDER],
    )
    confirmed = await entry(app, outbox_id)
    assert confirmed.status is OutboxStatus.CONFIRMED and confirmed.message_guid == "ph-1"
    assert (await entry(app, other)).status is OutboxStatus.QUEUED
    assert [i["id"] for i in await _claim(mac)] == [other]
