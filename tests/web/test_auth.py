"""Signing in and out of the web UI, redirects for signed-out visitors, CSRF refusals."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from tests.web.conftest import Browser, text_of

pytestmark = pytest.mark.asyncio

PAGES = [
    "/",
    "/devices",
    "/conversations",
    f"/conversations/{uuid.uuid4()}",
    "/training",
    "/status",
]
PARTIALS = [
    "/devices/lists",
    f"/conversations/{uuid.uuid4()}/messages?before=x",
    f"/suggestions/{uuid.uuid4()}",
    "/training/samples",
    "/training/jobs",
    "/training/adapters",
    "/status/panel",
]
POSTS = [
    "/devices/approve",
    f"/devices/{uuid.uuid4()}/deactivate",
    f"/messages/{uuid.uuid4()}/suggest",
    f"/suggestions/{uuid.uuid4()}/accept",
    "/training/samples",
    "/training/jobs",
    "/training/adapters/rollback",
    "/logout",
]


async def test_every_page_sends_a_signed_out_visitor_to_sign_in(browser: Browser) -> None:
    for path in PAGES:
        resp = await browser.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"] == f"/login?next={path}", path


async def test_htmx_fragments_ask_the_page_to_go_to_sign_in(browser: Browser) -> None:
    for path in PARTIALS:
        resp = await browser.client.get(
            path,
            headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/training?source=x"},
        )
        assert resp.status_code == 401, path
        assert resp.headers["hx-redirect"] == "/login?next=/training%3Fsource%3Dx", path


async def test_form_posts_when_signed_out_go_to_sign_in(browser: Browser) -> None:
    for path in POSTS:
        resp = await browser.form(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"] == "/login", path


async def test_sign_in_uses_the_api_cookies_and_returns_to_the_page(browser: Browser) -> None:
    page = await browser.get("/login?next=/training")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    resp = await browser.form(
        "/login", {"password": "correct horse battery staple", "next": "/training"}
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/training"
    cookies = {c.split("=", 1)[0]: c for c in resp.headers.get_list("set-cookie")}
    assert "httponly" in cookies[SESSION_COOKIE].lower()
    assert "samesite=lax" in cookies[SESSION_COOKIE].lower()
    assert "samesite=strict" in cookies[CSRF_COOKIE].lower()
    # The same session works for the JSON API (cookie + CSRF header), as after /api/auth/login.
    api = await browser.client.get("/api/auth/session")
    assert api.json() == {"authenticated": True}
    assert (await browser.get("/training")).status_code == 200
    # Signed in, the sign-in page moves on.
    again = await browser.get("/login?next=/devices")
    assert again.status_code == 303
    assert again.headers["location"] == "/devices"


async def test_a_wrong_password_is_explained_and_counted(browser: Browser) -> None:
    await browser.get("/login")
    resp = await browser.form("/login", {"password": "nope", "next": "/"})
    assert resp.status_code == 401
    assert "Wrong password." in text_of(resp.text)
    assert 'aria-invalid="true"' in resp.text
    empty = await browser.form("/login", {"password": ""})
    assert empty.status_code == 422
    assert "Enter your password." in empty.text
    for _ in range(9):
        await browser.form("/login", {"password": "nope"})
    limited = await browser.form("/login", {"password": "correct horse battery staple"})
    assert limited.status_code == 429
    assert "Too many failed sign-ins" in limited.text


async def test_sign_in_refuses_a_form_without_its_token(browser: Browser) -> None:
    await browser.get("/login")
    resp = await browser.client.post(
        "/login", data={"password": "correct horse battery staple", "csrf_token": "forged"}
    )
    assert resp.status_code == 403
    assert "sign-in form had expired" in resp.text
    assert SESSION_COOKIE not in resp.cookies


async def test_next_never_leaves_the_site(browser: Browser) -> None:
    await browser.get("/login")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = await browser.form(
            "/login", {"password": "correct horse battery staple", "next": target}
        )
        assert resp.headers["location"] == "/", target


async def test_sign_out_ends_the_session(web: Browser) -> None:
    resp = await web.form("/logout")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?signed_out=1"
    assert (await web.get("/devices")).status_code == 303
    page = await web.get("/login?signed_out=1")
    assert "You have signed out." in page.text


async def test_unsafe_requests_without_a_valid_csrf_token_are_refused(web: Browser) -> None:
    # A plain form without the hidden field, or with a wrong one: a readable 403 page.
    for data in ({}, {"csrf_token": "wrong"}):
        resp = await web.client.post("/devices/approve", data={"code": "123456", **data})
        assert resp.status_code == 403
        assert "text/html" in resp.headers["content-type"]
        assert "Reload the page and try again" in resp.text
    # HTMX with a wrong header: a toast, not a page.
    resp = await web.client.post(
        "/training/samples",
        data={"input_context": "Them: hi", "expected_output": "hey"},
        headers={"HX-Request": "true", "X-CSRF-Token": "wrong"},
    )
    assert resp.status_code == 403
    assert resp.headers["hx-retarget"] == "#toasts"
    assert 'class="toast toast-error"' in resp.text
    # Nothing was created.
    page = await web.get("/training")
    assert "No samples yet." in text_of(page.text)


async def test_signing_in_before_a_password_exists_leads_to_setup(app: Any) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/login")
        assert page.status_code == 303
        assert page.headers["location"] == "/setup"
        setup_page = await client.get("/setup")
        assert "convassist admin set-password" in setup_page.text
        csrf = client.cookies[CSRF_COOKIE]
        resp = await client.post("/login", data={"password": "whatever1", "csrf_token": csrf})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/setup"


async def test_a_session_revoked_everywhere_no_longer_opens_pages(web: Browser) -> None:
    old = web.client.cookies[SESSION_COOKIE]
    resp = await web.client.post(
        "/api/auth/logout?everywhere=true", headers={"X-CSRF-Token": web.csrf}
    )
    assert resp.status_code == 204
    # The old cookie, sent again, is dead on the server too.
    replay = await web.client.get("/devices", headers={"Cookie": f"{SESSION_COOKIE}={old}"})
    assert replay.status_code == 303
