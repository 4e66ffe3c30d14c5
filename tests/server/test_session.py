"""One owner-session check and one CSRF rule, as the JSON API and the web pages apply them."""

from __future__ import annotations

import httpx
import pytest

from convassist.server.auth import service
from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import OWNER_PASSWORD

pytestmark = pytest.mark.asyncio

API_WRITE = "/api/devices/approve"  # JSON body; 400 once past auth (the code is unknown)
WEB_WRITE = "/devices/approve"  # form body; 422 once past auth (the code is malformed)


async def _signed_in(app: object, client: httpx.AsyncClient) -> tuple[str, str]:
    """Sign in through the API; returns (session token, CSRF token) and drops the jar."""
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await service.set_owner_password(session, OWNER_PASSWORD)
        await session.commit()
    login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert login.status_code == 200, login.text
    token, csrf = client.cookies[SESSION_COOKIE], login.json()["csrfToken"]
    assert client.cookies[CSRF_COOKIE] == csrf
    client.cookies.clear()
    return token, csrf


def _cookies(session: str | None, csrf: str | None) -> dict[str, str]:
    jar = {SESSION_COOKIE: session, CSRF_COOKIE: csrf}
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items() if v is not None)}


def _same_length_forgery(csrf: str) -> str:
    forged = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")
    assert len(forged) == len(csrf) and forged != csrf
    return forged


async def test_the_api_takes_the_csrf_token_as_header_or_form_field(
    app: object, client: httpx.AsyncClient
) -> None:
    token, csrf = await _signed_in(app, client)
    cookies = _cookies(token, csrf)
    by_header = await client.post(
        API_WRITE, json={"code": "123456"}, headers={**cookies, "X-CSRF-Token": csrf}
    )
    assert by_header.status_code == 400, by_header.text
    # A form-encoded body may carry it in the `csrf_token` field instead (logout has no body).
    by_field = await client.post("/api/auth/logout", data={"csrf_token": csrf}, headers=cookies)
    assert by_field.status_code == 204, by_field.text
    forged = await client.post(
        "/api/auth/logout", data={"csrf_token": _same_length_forgery(csrf)}, headers=cookies
    )
    assert forged.status_code == 403
    assert forged.json()["error"] == "csrf_failed"


async def test_the_api_refuses_a_wrong_or_missing_csrf_token(
    app: object, client: httpx.AsyncClient
) -> None:
    token, csrf = await _signed_in(app, client)
    forged = _same_length_forgery(csrf)
    for headers in (
        {**_cookies(token, csrf), "X-CSRF-Token": forged},  # wrong, same length
        _cookies(token, csrf),  # no header, no field
        {**_cookies(token, None), "X-CSRF-Token": csrf},  # no CSRF cookie to compare with
    ):
        resp = await client.post(API_WRITE, json={"code": "123456"}, headers=headers)
        assert resp.status_code == 403, headers
        assert resp.json()["error"] == "csrf_failed"
    # Reads need no CSRF token; without the session cookie nothing is authenticated.
    assert (await client.get("/api/devices", headers=_cookies(token, None))).status_code == 200
    missing = await client.post(
        API_WRITE, json={"code": "123456"}, headers={**_cookies(None, csrf), "X-CSRF-Token": csrf}
    )
    assert missing.status_code == 401
    assert missing.json()["error"] == "not_authenticated"


async def test_bearer_token_calls_need_no_csrf_token(owner_client: httpx.AsyncClient) -> None:
    resp = await owner_client.post(API_WRITE, json={"code": "123456"})
    assert resp.status_code == 400, resp.text


async def test_the_web_takes_the_csrf_token_as_form_field_or_header(
    app: object, client: httpx.AsyncClient
) -> None:
    token, csrf = await _signed_in(app, client)
    cookies = _cookies(token, csrf)
    by_field = await client.post(WEB_WRITE, data={"code": "x", "csrf_token": csrf}, headers=cookies)
    assert by_field.status_code == 422, by_field.text
    by_header = await client.post(
        WEB_WRITE, data={"code": "x"}, headers={**cookies, "X-CSRF-Token": csrf}
    )
    assert by_header.status_code == 422, by_header.text


async def test_the_web_refuses_a_wrong_or_missing_csrf_token(
    app: object, client: httpx.AsyncClient
) -> None:
    token, csrf = await _signed_in(app, client)
    forged = _same_length_forgery(csrf)
    for data, headers in (
        ({"csrf_token": forged}, _cookies(token, csrf)),
        ({}, {**_cookies(token, csrf), "X-CSRF-Token": forged}),
        ({}, _cookies(token, csrf)),
        ({"csrf_token": csrf}, _cookies(token, None)),
    ):
        resp = await client.post(WEB_WRITE, data={"code": "x", **data}, headers=headers)
        assert resp.status_code == 403, (data, headers)
        assert "Reload the page and try again" in resp.text
    # Without the session cookie the browser is sent to sign in, CSRF or not.
    signed_out = await client.post(
        WEB_WRITE, data={"code": "x", "csrf_token": csrf}, headers=_cookies(None, csrf)
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"


async def test_a_revoked_session_is_refused_by_api_and_web(
    app: object, client: httpx.AsyncClient
) -> None:
    token, csrf = await _signed_in(app, client)
    cookies = _cookies(token, csrf)
    assert (await client.get("/api/devices", headers=cookies)).status_code == 200
    assert (await client.get("/devices", headers=cookies)).status_code == 200
    revoke = await client.post(
        "/api/auth/logout?everywhere=true", headers={**cookies, "X-CSRF-Token": csrf}
    )
    assert revoke.status_code == 204
    client.cookies.clear()
    api = await client.get("/api/devices", headers=cookies)
    assert api.status_code == 401
    assert api.json()["error"] == "session_revoked"
    page = await client.get("/devices", headers=cookies)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    form = await client.post(WEB_WRITE, data={"code": "x", "csrf_token": csrf}, headers=cookies)
    assert form.status_code == 303
