"""The agent's HTTP client: retries, backoff, Retry-After, typed errors, the device flow.

Failures the real server cannot be made to produce (5xx, 429, dropped connections) come from a
real HTTP server on 127.0.0.1 (`FaultProxy`); everything else runs against the real app.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from convassist.agent.answers import retry_after
from convassist.agent.client import (
    AgentClient,
    DeviceFlowError,
    NotRegistered,
    ServerError,
    ServerUnavailable,
    normalize_server_url,
)
from convassist.agent.errors import AgentError
from convassist.agent.registration import wait_for_token
from tests.agent.faults import FaultProxy, Reply, Seen
from tests.conftest import register_device
from tests.support.services import free_port

STATUS_BODY = {
    "deviceId": "8b0c0000-0000-0000-0000-000000000001",
    "lastSyncAt": None,
    "messagesSyncedByDevice": 0,
    "conversationCount": 1,
    "messageCount": 2,
    "contactCount": 3,
    "maxBatch": 1000,
    "maxContacts": 5000,
    "maxBodyBytes": 8388608,
}


class Sleeps:
    """Records the delays the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def scripted(replies: list[Reply]) -> FaultProxy:
    def hook(number: int, _: Seen) -> Reply:
        return replies[min(number, len(replies)) - 1]

    return FaultProxy(hook=hook)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The client's behaviour does not depend on the server's database: SQLite is enough."""
    return sqlite_url


def asgi_client(app: Any, token: str | None = None, **kwargs: Any) -> AgentClient:
    return AgentClient("http://testserver", token, transport=httpx.ASGITransport(app=app), **kwargs)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ca.example.com/", "https://ca.example.com"),
        ("http://127.0.0.1:3100/api", "http://127.0.0.1:3100"),
        (" https://host/prefix ", "https://host/prefix"),
    ],
)
def test_normalize_server_url(url: str, expected: str) -> None:
    assert normalize_server_url(url) == expected


@pytest.mark.parametrize("url", ["ca.example.com", "ftp://host", "https://", ""])
def test_bad_server_url_is_refused(url: str) -> None:
    with pytest.raises(AgentError, match="Not a server URL"):
        normalize_server_url(url)


def test_retry_after_parsing() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after(response("7")) == 7
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < (retry_after(response(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"))) or 0) <= 30
    assert retry_after(response("soon")) is None
    assert retry_after(httpx.Response(503)) is None


async def test_5xx_is_retried_with_growing_jittered_backoff() -> None:
    proxy = scripted([Reply(503), Reply(502), Reply(500), Reply(200, STATUS_BODY)])
    sleeps = Sleeps()
    with proxy.running():
        async with AgentClient(proxy.url, "t", retries=5, backoff=1.0, sleep=sleeps) as client:
            status = await client.status()
    assert status.message_count == 2 and status.max_batch == 1000
    assert len(proxy.seen) == 4
    assert len(sleeps.delays) == 3
    for attempt, delay in enumerate(sleeps.delays):
        assert 2**attempt / 2 <= delay <= 2**attempt


async def test_429_honours_retry_after() -> None:
    proxy = scripted([Reply(429, headers={"Retry-After": "7"}), Reply(200, STATUS_BODY)])
    sleeps = Sleeps()
    with proxy.running():
        async with AgentClient(proxy.url, "t", backoff=0.01, sleep=sleeps) as client:
            await client.status()
    assert sleeps.delays == [7.0]


async def test_gives_up_after_the_retries_with_a_clear_message() -> None:
    proxy = scripted([Reply(503)])
    sleeps = Sleeps()
    with proxy.running():
        async with AgentClient(proxy.url, "t", retries=2, sleep=sleeps) as client:
            with pytest.raises(ServerUnavailable) as caught:
                await client.status()
    assert len(proxy.seen) == 3
    assert "Gave up after 3 attempts" in caught.value.message
    assert "answered 503" in caught.value.message
    assert "Nothing was lost" in caught.value.message
    assert caught.value.exit_code == 69


async def test_giving_up_on_registration_says_nothing_about_syncs() -> None:
    proxy = scripted([Reply(503)])
    with proxy.running():
        async with AgentClient(proxy.url, retries=1, sleep=Sleeps()) as client:
            with pytest.raises(ServerUnavailable) as caught:
                await client.register(
                    name="Mac", hardware_id="h", platform="macOS", os_version="15"
                )
    assert caught.value.message == f"Gave up after 2 attempts: {proxy.url} answered 503."


async def test_dropped_connections_and_a_closed_port_are_retried() -> None:
    proxy = scripted([Reply(drop=True), Reply(200, STATUS_BODY)])
    with proxy.running():
        async with AgentClient(proxy.url, "t", sleep=Sleeps()) as client:
            await client.status()
    assert len(proxy.seen) == 2

    sleeps = Sleeps()
    async with AgentClient(f"http://127.0.0.1:{free_port()}", "t", retries=3, sleep=sleeps) as c:
        with pytest.raises(ServerUnavailable, match="cannot reach"):
            await c.status()
    assert len(sleeps.delays) == 3


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
async def test_other_4xx_are_not_retried(status: int) -> None:
    proxy = scripted([Reply(status, {"error": "nope", "detail": "Refused here."})])
    with proxy.running():
        async with AgentClient(proxy.url, "t", sleep=Sleeps()) as client:
            with pytest.raises(ServerError) as caught:
                await client.sync_messages({"conversationId": "c", "messages": []})
    assert len(proxy.seen) == 1
    assert caught.value.status == status
    assert caught.value.code == "nope"
    assert "Refused here." in caught.value.message


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("token_expired", "expired"),
        ("token_revoked", "revoked"),
        ("device_revoked", "deactivated"),
        ("invalid_token", "does not accept"),
    ],
)
async def test_401_token_errors_say_register_again(code: str, words: str) -> None:
    proxy = scripted([Reply(401, {"error": code, "detail": "x"})])
    with proxy.running():
        async with AgentClient(proxy.url, "t", sleep=Sleeps()) as client:
            with pytest.raises(NotRegistered) as caught:
                await client.status()
    assert len(proxy.seen) == 1
    assert words in caught.value.message
    assert f"convassist agent register --server {proxy.url}" in caught.value.message
    assert caught.value.exit_code == 78


async def test_sync_calls_against_the_real_app(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    _, token = await register_device(client, owner_client)
    async with asgi_client(app, token) as agent:
        status = await agent.status()
        assert status.message_count == 0
        assert status.max_batch == 1000
        result = await agent.sync_messages(
            {
                "conversationId": "iMessage;-;+15550001111",
                "participants": ["+15550001111"],
                "messages": [
                    {
                        "imessageGuid": "G-1",
                        "senderId": "+15550001111",
                        "direction": "incoming",
                        "messageType": "text",
                        "text": "hello",
                        "sentAt": "2025-01-01T10:00:00+00:00",
                    }
                ],
            }
        )
        assert (result.inserted, result.updated, result.unchanged) == (1, 0, 0)
        contacts = await agent.sync_contacts(
            [{"appleId": "+15550001111", "displayName": "Alice", "phoneNumber": "+15550001111"}]
        )
        assert contacts.inserted == 1
    async with asgi_client(app, "not-a-token") as stranger:
        with pytest.raises(NotRegistered, match="does not accept"):
            await stranger.status()


async def test_revoked_device_is_told_to_register_again(
    app: Any, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    device_id, token = await register_device(client, owner_client)
    resp = await owner_client.post(f"/api/devices/{device_id}/deactivate")
    assert resp.status_code == 200
    async with asgi_client(app, token) as agent:
        with pytest.raises(NotRegistered, match=r"deactivated.*register"):
            await agent.status()


async def test_device_flow_polls_until_the_owner_approves(
    app: Any, owner_client: httpx.AsyncClient
) -> None:
    async with asgi_client(app) as agent:
        registration = await agent.register(
            name="Mac", hardware_id="HW-flow", platform="macOS", os_version="15.1"
        )
        assert len(registration.code) == 6 and registration.interval >= 1
        with pytest.raises(DeviceFlowError) as pending:
            await agent.verify(registration.device_id, registration.code)
        assert pending.value.code == "authorization_pending"
        with pytest.raises(DeviceFlowError) as fast:
            await agent.verify(registration.device_id, registration.code)
        assert fast.value.code == "slow_down"

        polls: list[float] = []

        async def sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) == 3:
                resp = await owner_client.post(
                    "/api/devices/approve", json={"code": registration.code}
                )
                assert resp.status_code == 200

        app.state.settings.device_poll_interval = 0  # the fake clock does not really wait
        grant = await wait_for_token(agent, registration, sleep=sleep)
    assert grant.device_id == registration.device_id
    assert grant.token.count(".") == 2
    assert len(polls) == 3
    assert polls[0] == registration.interval


async def test_device_flow_slow_down_lengthens_the_interval(app: Any) -> None:
    async with asgi_client(app) as agent:
        registration = await agent.register(
            name="Mac", hardware_id="HW-slow", platform="macOS", os_version="15.1"
        )
        polls: list[float] = []

        async def sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) == 4:
                raise RuntimeError("enough")

        with pytest.raises(RuntimeError, match="enough"):
            await wait_for_token(agent, registration, sleep=sleep)
    # Polls come faster than the server's interval (the fake clock), so it says slow_down.
    assert polls[0] == registration.interval
    assert polls[2] == polls[1] + 5


async def test_device_flow_stops_when_the_code_expires(app: Any) -> None:
    async with asgi_client(app) as agent:
        registration = await agent.register(
            name="Mac", hardware_id="HW-exp", platform="macOS", os_version="15.1"
        )
        expired = registration.__class__(
            device_id=registration.device_id,
            code=registration.code,
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
            interval=registration.interval,
        )
        with pytest.raises(AgentError, match=r"expired before it was approved.*register"):
            await wait_for_token(agent, expired, sleep=Sleeps())


async def test_device_flow_wrong_code_is_a_clear_failure(app: Any) -> None:
    async with asgi_client(app) as agent:
        registration = await agent.register(
            name="Mac", hardware_id="HW-wrong", platform="macOS", os_version="15.1"
        )
        wrong = registration.__class__(
            device_id=registration.device_id,
            code="000000" if registration.code != "000000" else "111111",
            expires_at=registration.expires_at,
            interval=registration.interval,
        )
        with pytest.raises(AgentError, match="no longer accepts this code"):
            await wait_for_token(agent, wrong, sleep=Sleeps())
