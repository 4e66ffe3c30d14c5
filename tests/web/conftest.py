"""Web UI fixtures: a browser-like client signed in through the sign-in form, sync helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from html import unescape
from typing import Any

import httpx
import pytest

from convassist.server.auth.session import CSRF_COOKIE
from tests.conftest import OWNER_PASSWORD
from tests.support import chats

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Browser:
    """An httpx client used like a browser: cookies, forms with the CSRF token, HTMX calls."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @property
    def csrf(self) -> str:
        return self.client.cookies.get(CSRF_COOKIE) or ""

    async def get(self, url: str, *, htmx: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        return await self.client.get(url, headers=headers, **kwargs)

    async def form(self, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """A plain form post (no JavaScript): the token rides in the hidden field."""
        return await self.client.post(url, data={"csrf_token": self.csrf, **(data or {})})

    async def htmx(self, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """An HTMX post: the token rides in the X-CSRF-Token header."""
        return await self.client.post(
            url,
            data=data or {},
            headers={"HX-Request": "true", "X-CSRF-Token": self.csrf},
        )

    async def sign_in(self, password: str = OWNER_PASSWORD) -> httpx.Response:
        await self.client.get("/login")
        return await self.form("/login", {"password": password, "next": "/conversations"})


@pytest.fixture
async def browser(app: Any, owner_client: httpx.AsyncClient) -> AsyncIterator[Browser]:
    """Signed out. The password is set (by `owner_client`, which must come first: setting
    it again would sign every session out)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Browser(client)


@pytest.fixture
async def web(browser: Browser) -> Browser:
    """Signed in as the owner through the sign-in form."""
    resp = await browser.sign_in()
    assert resp.status_code == 303, resp.text
    return browser


message = partial(chats.message, start=T0)
sync = chats.sync


def text_of(html: str) -> str:
    """The visible-ish text of an HTML fragment, whitespace collapsed (for assertions)."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip())
