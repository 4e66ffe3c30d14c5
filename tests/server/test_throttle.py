"""Failure limits: per client, kept under 40 concurrent attempts, and the owner's way back in."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from convassist.core.settings import ServerSettings
from convassist.server import throttle
from convassist.server.auth.service import LOGIN_LIMIT, set_owner_password
from convassist.server.devices.service import APPROVE_LIMIT, MAX_VERIFY_ATTEMPTS
from convassist.server.models import Device, RateLimitBucket, utcnow
from tests.conftest import OWNER_PASSWORD
from tests.support.cli import set_password
from tests.support.services import clean_env

pytestmark = pytest.mark.asyncio

CONCURRENT = 40
STRANGER = "203.0.113.7"


@asynccontextmanager
async def client_at(app: object, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling from `host` (the address the failure limits are kept for)."""
    transport = httpx.ASGITransport(app=app, client=(host, 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _set_password(app: object, password: str = OWNER_PASSWORD) -> None:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await set_owner_password(session, password)
        await session.commit()


async def _lock_out(stranger: httpx.AsyncClient) -> None:
    for _ in range(LOGIN_LIMIT):
        wrong = await stranger.post("/api/auth/login", json={"password": "guess-guess"})
        assert wrong.status_code == 401
    refused = await stranger.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert refused.status_code == 429


async def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(
    app: object, client: httpx.AsyncClient
) -> None:
    await _set_password(app)
    async with client_at(app, STRANGER) as stranger:
        await _lock_out(stranger)
    owner = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert owner.status_code == 200, owner.text


async def test_a_correct_password_clears_the_clients_failures(
    app: object, client: httpx.AsyncClient
) -> None:
    await _set_password(app)
    for _ in range(LOGIN_LIMIT - 1):
        assert (await client.post("/api/auth/login", json={"password": "typo-typo"})).is_error
    assert (await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})).is_success
    for _ in range(LOGIN_LIMIT - 1):
        wrong = await client.post("/api/auth/login", json={"password": "typo-typo"})
        assert wrong.status_code == 401


async def test_the_cli_password_reset_clears_every_lockout(
    app: object, settings: ServerSettings
) -> None:
    await _set_password(app)
    async with client_at(app, STRANGER) as stranger:
        await _lock_out(stranger)
        env = clean_env(
            DATABASE_URL=settings.resolved_database_url,
            CONVASSIST_DATA_DIR=str(settings.data_dir),
        )
        new_password = "a brand new password"
        await asyncio.to_thread(set_password, env, new_password)
        again = await stranger.post("/api/auth/login", json={"password": new_password})
        assert again.status_code == 200, again.text


async def test_concurrent_wrong_passwords_check_at_most_the_limit(
    app: object, client: httpx.AsyncClient
) -> None:
    await _set_password(app)
    answers = await asyncio.gather(
        *(
            client.post("/api/auth/login", json={"password": f"wrong-{i}"})
            for i in range(CONCURRENT)
        )
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: LOGIN_LIMIT, 429: CONCURRENT - LOGIN_LIMIT}, statuses


async def test_concurrent_wrong_device_codes_compare_at_most_the_limit(
    app: object, client: httpx.AsyncClient
) -> None:
    registered = await client.post(
        "/api/devices/register",
        json={"name": "Mac", "hardwareId": "HW-race", "platform": "macOS", "osVersion": "15"},
    )
    body = registered.json()
    wrong = [f"{(int(body['code']) + i) % 1_000_000:06d}" for i in range(1, CONCURRENT + 1)]
    answers = await asyncio.gather(
        *(
            client.post("/api/devices/verify", json={"deviceId": body["deviceId"], "code": code})
            for code in wrong
        )
    )
    compared = [a for a in answers if a.json()["detail"].startswith(("Wrong code", "Too many"))]
    assert len(compared) == MAX_VERIFY_ATTEMPTS, Counter(a.json()["detail"] for a in answers)
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        device = await session.get(Device, uuid.UUID(body["deviceId"]))
        assert device is not None
        assert device.code_attempts == MAX_VERIFY_ATTEMPTS and device.code_hash is None


async def test_concurrent_wrong_approval_codes_check_at_most_the_limit(
    owner_client: httpx.AsyncClient,
) -> None:
    answers = await asyncio.gather(
        *(
            owner_client.post("/api/devices/approve", json={"code": f"{i:06d}"})
            for i in range(CONCURRENT)
        )
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {400: APPROVE_LIMIT, 429: CONCURRENT - APPROVE_LIMIT}, statuses


async def test_a_new_client_forgets_buckets_whose_window_is_long_past(
    app: object, client: httpx.AsyncClient
) -> None:
    """Addresses that failed once, long ago, do not pile up: the first attempt of a new one
    deletes them, and keeps buckets still inside a window."""
    await _set_password(app)
    now = utcnow()
    async with app.state.sessionmaker.begin() as session:  # type: ignore[attr-defined]
        session.add_all(
            [
                RateLimitBucket(key="owner-login:198.51.100.1", window_started_at=now, count=3),
                RateLimitBucket(
                    key="owner-login:198.51.100.2",
                    window_started_at=now - throttle.FORGET_AFTER - timedelta(minutes=1),
                    count=9,
                ),
            ]
        )
    async with client_at(app, STRANGER) as stranger:
        wrong = await stranger.post("/api/auth/login", json={"password": "guess-guess"})
        assert wrong.status_code == 401
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        kept = dict(
            (await session.execute(select(RateLimitBucket.key, RateLimitBucket.count))).all()
        )
    assert kept == {"owner-login:198.51.100.1": 3, f"owner-login:{STRANGER}": 1}
