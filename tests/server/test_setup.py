"""First run through the API: `POST /api/auth/setup` with the one-time setup code."""

from __future__ import annotations

import asyncio
import stat
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from convassist.core.settings import ServerSettings
from convassist.server.auth import service, setup
from convassist.server.models import Owner
from tests.conftest import OWNER_PASSWORD

pytestmark = pytest.mark.asyncio


async def _setup(client: httpx.AsyncClient, code: str, password: str = OWNER_PASSWORD) -> Any:
    return await client.post("/api/auth/setup", json={"code": code, "password": password})


async def _owner_exists(app: Any) -> bool:
    async with app.state.sessionmaker() as session:
        return await service.get_owner(session) is not None


def _client(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_the_printed_code_sets_the_password_and_signs_in(
    app: Any, client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    resp = await _setup(client, code)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token"] and body["csrfToken"] and body["expiresAt"]
    assert "convassist_session" in resp.headers["set-cookie"]
    me = await client.get("/api/auth/session", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert login.status_code == 200


async def test_the_code_is_kept_only_as_a_hash_in_a_private_file(
    settings: ServerSettings,
) -> None:
    code = setup.issue_code(settings)
    path = settings.data_dir / setup.SETUP_CODE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = path.read_text()
    assert code not in stored
    assert len(code) >= 40  # 32 random bytes


async def test_a_wrong_or_missing_code_sets_no_password(
    app: Any, client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    # No code issued at all (the server never printed one).
    resp = await _setup(client, "anything-at-all")
    assert resp.status_code == 403
    assert resp.json()["error"] == "invalid_setup_code"
    code = setup.issue_code(settings)
    for wrong in (code[:-1], code + "x", code.upper() if code.upper() != code else code.lower()):
        resp = await _setup(client, wrong)
        assert resp.status_code == 403, resp.text
        assert "wrong or has already been used" in resp.json()["detail"]
    missing = await client.post("/api/auth/setup", json={"password": OWNER_PASSWORD})
    assert missing.status_code == 422
    assert not await _owner_exists(app)
    # The real code still works afterwards.
    assert (await _setup(client, code)).status_code == 200


async def test_a_used_code_is_dead(
    app: Any, client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    assert (await _setup(client, code)).status_code == 200
    assert not (settings.data_dir / setup.SETUP_CODE_FILE).exists()
    # Even with the owner gone again, the used code opens nothing.
    async with app.state.sessionmaker() as session:
        await session.execute(delete(Owner))
        await session.commit()
    again = await _setup(client, code, "another long password")
    assert again.status_code == 403
    assert again.json()["error"] == "invalid_setup_code"
    assert not await _owner_exists(app)


async def test_a_new_start_replaces_the_old_code(
    client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    old = setup.issue_code(settings)
    new = setup.issue_code(settings)
    assert old != new
    assert (await _setup(client, old)).status_code == 403
    assert (await _setup(client, new)).status_code == 200


async def test_once_an_owner_exists_setup_is_refused(
    app: Any, client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    async with app.state.sessionmaker() as session:
        await service.set_owner_password(session, OWNER_PASSWORD)
        await session.commit()
    code = setup.issue_code(settings)
    resp = await _setup(client, code, "a takeover password")
    assert resp.status_code == 409
    assert resp.json()["error"] == "owner_exists"
    assert (await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})).is_success
    takeover = await client.post("/api/auth/login", json={"password": "a takeover password"})
    assert takeover.status_code == 401


async def test_a_short_password_is_refused_and_the_code_stays_valid(
    app: Any, client: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    short = "x" * (service.MIN_PASSWORD_LENGTH - 1)
    resp = await _setup(client, code, short)
    assert resp.status_code == 422
    assert f"at least {service.MIN_PASSWORD_LENGTH} characters" in resp.json()["detail"]
    assert not await _owner_exists(app)
    assert (await _setup(client, code)).status_code == 200


async def test_wrong_codes_are_rate_limited_per_client(app: Any, settings: ServerSettings) -> None:
    code = setup.issue_code(settings)
    async with _client(app, "192.0.2.7") as attacker, _client(app, "192.0.2.8") as owner:
        for _ in range(setup.SETUP_LIMIT):
            assert (await _setup(attacker, "guess")).status_code == 403
        limited = await _setup(attacker, code)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert not await _owner_exists(app)
        # Someone else (the owner, at another address) is not locked out.
        assert (await _setup(owner, code)).status_code == 200


async def test_concurrent_setups_with_the_code_make_one_owner(
    app: Any, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    clients = [_client(app, f"192.0.2.{n}") for n in range(1, 9)]
    try:
        answers = await asyncio.gather(
            *(_setup(c, code, f"password number {n}") for n, c in enumerate(clients))
        )
    finally:
        for c in clients:
            await c.aclose()
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 403, 409}, statuses
