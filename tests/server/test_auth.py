"""Owner sign-in, sessions, CSRF and the login rate limit."""

from __future__ import annotations

import httpx
import pytest

from convassist.server.auth import service
from tests.conftest import OWNER_PASSWORD

pytestmark = pytest.mark.asyncio


async def _set_password(app: object, password: str = OWNER_PASSWORD) -> None:
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await service.set_owner_password(session, password)
        await session.commit()


async def test_login_before_password_is_set_explains_what_to_do(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/auth/login", json={"password": "whatever-password"})
    assert resp.status_code == 409
    assert resp.json()["error"] == "owner_not_configured"
    assert "convassist admin set-password" in resp.json()["detail"]


async def test_login_returns_token_and_sets_cookies(app: object, client: httpx.AsyncClient) -> None:
    await _set_password(app)
    resp = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert resp.status_code == 200
    body = resp.json()
    assert body["token"] and body["csrfToken"] and body["expiresAt"]
    assert "httponly" in resp.headers["set-cookie"].lower()
    session = await client.get(
        "/api/auth/session", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert session.status_code == 200
    # The cookie alone also authenticates reads (the web UI's path).
    assert (await client.get("/api/devices")).status_code == 200


async def test_wrong_password_is_refused(app: object, client: httpx.AsyncClient) -> None:
    await _set_password(app)
    resp = await client.post("/api/auth/login", json={"password": "not the password"})
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_credentials"


async def test_repeated_wrong_passwords_are_rate_limited(
    app: object, client: httpx.AsyncClient
) -> None:
    await _set_password(app)
    for _ in range(service.LOGIN_LIMIT):
        assert (
            await client.post("/api/auth/login", json={"password": "nope-nope"})
        ).status_code == 401
    limited = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_owner_endpoints_require_authentication(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/devices"),
        ("POST", "/api/devices/approve"),
        ("GET", "/api/auth/session"),
        ("GET", "/api/conversations"),
    ]:
        resp = await client.request(method, path, json={"code": "123456"})
        assert resp.status_code == 401, path
        assert resp.json()["error"] == "not_authenticated"


async def test_garbage_and_device_tokens_are_not_owner_tokens(
    client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> None:
    from tests.conftest import register_device

    _, device_token = await register_device(client, owner_client)
    for token in ["garbage", device_token]:
        resp = await client.get("/api/devices", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_token"


async def test_cookie_authenticated_writes_need_the_csrf_token(
    app: object, client: httpx.AsyncClient
) -> None:
    await _set_password(app)
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    csrf = login.json()["csrfToken"]
    refused = await client.post("/api/devices/approve", json={"code": "123456"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    wrong = await client.post(
        "/api/devices/approve", json={"code": "123456"}, headers={"X-CSRF-Token": "forged"}
    )
    assert wrong.status_code == 403
    allowed = await client.post(
        "/api/devices/approve", json={"code": "123456"}, headers={"X-CSRF-Token": csrf}
    )
    assert allowed.status_code == 400  # authenticated; the code itself is unknown


async def test_changing_the_password_signs_out_existing_sessions(
    app: object, owner_client: httpx.AsyncClient
) -> None:
    assert (await owner_client.get("/api/devices")).status_code == 200
    await _set_password(app, "another long password")
    resp = await owner_client.get("/api/devices")
    assert resp.status_code == 401
    assert resp.json()["error"] == "session_revoked"


async def test_logout_everywhere_revokes_tokens(owner_client: httpx.AsyncClient) -> None:
    assert (await owner_client.post("/api/auth/logout?everywhere=true")).status_code == 204
    assert (await owner_client.get("/api/devices")).status_code == 401


async def test_short_passwords_are_refused(app: object) -> None:
    from convassist.core.errors import Unprocessable

    with pytest.raises(Unprocessable):
        await _set_password(app, "short")
