"""Device registration with owner approval (RFC 8628 pattern), tokens and revocation."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from convassist.core.security import issue_token
from convassist.server.devices import service
from convassist.server.models import Device, utcnow
from tests.conftest import register_device

pytestmark = pytest.mark.asyncio

DEVICE = {"name": "Kitchen Mac", "platform": "macOS", "osVersion": "15.1"}


async def _register(client: httpx.AsyncClient, hardware_id: str = "HW-1") -> dict[str, str]:
    resp = await client.post("/api/devices/register", json={**DEVICE, "hardwareId": hardware_id})
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    return body


@pytest.fixture
def no_poll_limit(app: object) -> None:
    app.state.settings.device_poll_interval = 0  # type: ignore[attr-defined]


async def _device_row(app: object, device_id: str) -> Device:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        device = await session.get(Device, uuid.UUID(device_id))
        assert device is not None
        return device


async def test_full_flow_pending_then_approved_then_token(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient, no_poll_limit: None
) -> None:
    reg = await _register(client)
    assert len(reg["code"]) == 6 and reg["code"].isdigit()
    assert reg["expiresAt"] and reg["interval"] >= 1

    pending = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"

    listed = (await owner_client.get("/api/devices")).json()
    assert [d["status"] for d in listed] == ["pending"]

    approved = await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"

    verified = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert verified.status_code == 200
    token = verified.json()["token"]
    assert verified.json()["deviceId"] == reg["deviceId"]

    status = await client.get("/api/sync/status", headers={"Authorization": f"Bearer {token}"})
    assert status.status_code == 200

    # The code is single-use.
    reused = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    listed = (await owner_client.get("/api/devices")).json()
    assert [(d["status"], d["verified"]) for d in listed] == [("active", True)]

    # The code is stored hashed, never in clear.
    row = await _device_row(app, reg["deviceId"])
    assert row.code_hash is None
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        dump = (await session.execute(sa.select(Device.__table__))).all()
    assert reg["code"] not in repr(dump)


async def test_code_is_stored_as_a_keyed_hash(app: object, client: httpx.AsyncClient) -> None:
    reg = await _register(client)
    row = await _device_row(app, reg["deviceId"])
    assert row.code_hash is not None
    assert reg["code"] not in row.code_hash and len(row.code_hash) == 64


async def test_device_cannot_approve_itself(client: httpx.AsyncClient) -> None:
    reg = await _register(client)
    resp = await client.post("/api/devices/approve", json={"code": reg["code"]})
    assert resp.status_code == 401


async def test_device_token_cannot_approve(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    _, token = await register_device(client, owner_client)
    reg = await _register(client, "HW-other")
    resp = await client.post(
        "/api/devices/approve",
        json={"code": reg["code"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_token"


async def test_wrong_approval_codes_are_rate_limited(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    reg = await _register(client)
    wrong = "000000" if reg["code"] != "000000" else "111111"
    for _ in range(service.APPROVE_LIMIT):
        resp = await owner_client.post("/api/devices/approve", json={"code": wrong})
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_code"
    limited = await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    assert limited.status_code == 429
    assert "retry-after" in limited.headers


async def test_approve_accepts_a_spaced_code_and_rejects_malformed(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    reg = await _register(client)
    bad = await owner_client.post("/api/devices/approve", json={"code": "12ab56"})
    assert bad.status_code == 422
    spaced = f"{reg['code'][:3]} {reg['code'][3:]}"
    assert (
        await owner_client.post("/api/devices/approve", json={"code": spaced})
    ).status_code == 200
    again = await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    assert again.status_code == 409


async def test_expired_code_cannot_be_approved_or_verified(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    reg = await _register(client)
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        device = await session.get(Device, uuid.UUID(reg["deviceId"]))
        assert device is not None
        device.code_expires_at = utcnow() - timedelta(seconds=1)
        await session.commit()
    approve = await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    assert approve.status_code == 410
    assert approve.json()["error"] == "code_expired"
    verify = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert verify.status_code == 400
    assert verify.json()["error"] == "expired_token"


async def test_wrong_verify_codes_cancel_the_registration(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient, no_poll_limit: None
) -> None:
    reg = await _register(client)
    wrong = "000000" if reg["code"] != "000000" else "111111"
    for attempt in range(1, service.MAX_VERIFY_ATTEMPTS + 1):
        resp = await client.post(
            "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": wrong}
        )
        assert resp.status_code == 400
        expected = "access_denied" if attempt == service.MAX_VERIFY_ATTEMPTS else "invalid_grant"
        assert resp.json()["error"] == expected
    # Even the right code no longer works, and the owner can no longer approve it.
    right = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    assert right.json()["error"] == "invalid_grant"
    assert (
        await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    ).status_code == 400


async def test_polling_too_fast_gets_slow_down(client: httpx.AsyncClient) -> None:
    reg = await _register(client)
    body = {"deviceId": reg["deviceId"], "code": reg["code"]}
    first = await client.post("/api/devices/verify", json=body)
    assert first.json()["error"] == "authorization_pending"
    second = await client.post("/api/devices/verify", json=body)
    assert second.status_code == 400
    assert second.json()["error"] == "slow_down"


async def test_verify_unknown_device_and_malformed_body(client: httpx.AsyncClient) -> None:
    unknown = await client.post(
        "/api/devices/verify", json={"deviceId": str(uuid.uuid4()), "code": "123456"}
    )
    assert unknown.status_code == 404
    malformed = await client.post("/api/devices/verify", json={"deviceId": "nope", "code": "1"})
    assert malformed.status_code == 422
    assert malformed.json()["error"] == "validation_error"
    missing = await client.post("/api/devices/register", json={"name": "x"})
    assert missing.status_code == 422
    extra = await client.post(
        "/api/devices/register", json={**DEVICE, "hardwareId": "x", "isAdmin": True}
    )
    assert extra.status_code == 422
    not_json = await client.post(
        "/api/devices/register",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_json"


async def test_reregistering_issues_a_fresh_code_and_keeps_one_row(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient, no_poll_limit: None
) -> None:
    device_id, token = await register_device(client, owner_client, hardware_id="HW-same")
    again = await _register(client, "HW-same")
    assert again["deviceId"] == device_id
    listed = (await owner_client.get("/api/devices")).json()
    assert len(listed) == 1 and listed[0]["status"] == "active"
    # Registration alone does not revoke the working token...
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/sync/status", headers=auth)).status_code == 200
    # ...completing it does.
    await owner_client.post("/api/devices/approve", json={"code": again["code"]})
    new = await client.post(
        "/api/devices/verify", json={"deviceId": device_id, "code": again["code"]}
    )
    assert new.status_code == 200
    assert (await client.get("/api/sync/status", headers=auth)).status_code == 401
    new_auth = {"Authorization": f"Bearer {new.json()['token']}"}
    assert (await client.get("/api/sync/status", headers=new_auth)).status_code == 200


async def test_deactivation_revokes_the_token_at_once(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    device_id, token = await register_device(client, owner_client)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/sync/status", headers=auth)).status_code == 200
    resp = await owner_client.post(f"/api/devices/{device_id}/deactivate")
    assert resp.status_code == 200
    assert resp.json()["status"] == "inactive"
    refused = await client.get("/api/sync/status", headers=auth)
    assert refused.status_code == 401
    assert refused.json()["error"] == "device_revoked"
    missing = await owner_client.post(f"/api/devices/{uuid.uuid4()}/deactivate")
    assert missing.status_code == 404


async def test_expired_and_forged_device_tokens_are_refused(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    device_id, _ = await register_device(client, owner_client)
    secret = app.state.jwt_secret  # type: ignore[attr-defined]
    expired, _ = issue_token(
        secret,
        subject=device_id,
        kind="device",
        generation=2,
        lifetime=timedelta(days=7),
        now=utcnow() - timedelta(days=8),
    )
    forged, _ = issue_token(
        "not-the-server-secret-at-all-0123456789",
        subject=device_id,
        kind="device",
        generation=2,
        lifetime=timedelta(days=7),
    )
    for token, error in [(expired, "token_expired"), (forged, "invalid_token")]:
        resp = await client.get("/api/sync/status", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
        assert resp.json()["error"] == error


async def test_device_token_lasts_seven_days(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient, no_poll_limit: None
) -> None:
    reg = await _register(client)
    await owner_client.post("/api/devices/approve", json={"code": reg["code"]})
    verified = await client.post(
        "/api/devices/verify", json={"deviceId": reg["deviceId"], "code": reg["code"]}
    )
    from datetime import datetime

    expires = datetime.fromisoformat(verified.json()["expiresAt"])
    delta = expires - utcnow()
    assert timedelta(days=6, hours=23) < delta <= timedelta(days=7)


async def test_reregistering_changes_a_working_device_only_once_approved(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient, no_poll_limit: None
) -> None:
    _, token = await register_device(
        client, owner_client, hardware_id="HW-known", name="Kitchen Mac"
    )
    stranger = await client.post(
        "/api/devices/register",
        json={"name": "Evil Mac", "hardwareId": "HW-known", "platform": "x", "osVersion": "1"},
    )
    assert stranger.status_code == 201
    (listed,) = (await owner_client.get("/api/devices")).json()
    assert (listed["name"], listed["platform"], listed["status"]) == (
        "Kitchen Mac",
        "macOS",
        "active",
    )
    assert listed["pendingName"] == "Evil Mac"
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/sync/status", headers=auth)).status_code == 200
    approved = await owner_client.post(
        "/api/devices/approve", json={"code": stranger.json()["code"]}
    )
    assert approved.status_code == 200
    assert (approved.json()["name"], approved.json()["platform"]) == ("Evil Mac", "x")
    assert approved.json()["pendingName"] is None


async def test_registration_is_rate_limited_per_client(app: object) -> None:
    def at(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with at("198.51.100.1") as flooder, at("198.51.100.2") as other:
        for i in range(service.REGISTER_LIMIT):
            resp = await flooder.post(
                "/api/devices/register", json={**DEVICE, "hardwareId": f"HW-flood-{i}"}
            )
            assert resp.status_code == 201
        refused = await flooder.post(
            "/api/devices/register", json={**DEVICE, "hardwareId": "HW-flood-x"}
        )
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        allowed = await other.post(
            "/api/devices/register", json={**DEVICE, "hardwareId": "HW-other"}
        )
        assert allowed.status_code == 201
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        count = await session.scalar(sa.select(sa.func.count()).select_from(Device))
    assert count == service.REGISTER_LIMIT + 1
