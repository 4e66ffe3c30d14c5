"""First run in the web UI: every page leads to "Create your password" until there is an owner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from convassist.core.settings import ServerSettings
from convassist.server.auth import service, setup
from convassist.server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import OWNER_PASSWORD
from tests.web.conftest import text_of

PASSWORD_FORM = {"password": OWNER_PASSWORD, "confirm": OWNER_PASSWORD}


@pytest.fixture
async def visitor(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on a server that has no owner yet."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _owner_exists(app: Any) -> bool:
    async with app.state.sessionmaker() as session:
        return await service.get_owner(session) is not None


async def test_without_an_owner_every_page_leads_to_setup(visitor: httpx.AsyncClient) -> None:
    for path in ("/", "/login", "/conversations", "/devices?x=1"):
        page = await visitor.get(path, follow_redirects=True)
        assert page.status_code == 200, path
        assert page.url.path == "/setup", path
        assert "Create your password" in text_of(page.text)
    # Without the code in the address, the page asks for it and says where it is.
    assert 'name="code" type="text"' in page.text
    assert "/setup?code=" in page.text


async def test_the_printed_link_creates_the_password_and_signs_in(
    app: Any, visitor: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    page = await visitor.get(f"/setup?code={code}")
    assert page.status_code == 200
    assert f'type="hidden" name="code" value="{code}"' in page.text
    assert f"At least {service.MIN_PASSWORD_LENGTH} characters" in text_of(page.text)
    form = {"csrf_token": visitor.cookies[CSRF_COOKIE], "code": code, **PASSWORD_FORM}
    done = await visitor.post("/setup", data=form)
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    assert SESSION_COOKIE in visitor.cookies
    assert (await visitor.get("/conversations")).status_code == 200
    # The link is spent: it now leads to sign-in, and posting it again changes nothing.
    again = await visitor.get(f"/setup?code={code}")
    assert again.status_code == 303
    assert again.headers["location"] == "/login"
    form["password"] = form["confirm"] = "a different password"
    form["csrf_token"] = visitor.cookies[CSRF_COOKIE]  # signing in set a new one
    assert (await visitor.post("/setup", data=form)).headers["location"] == "/login"
    login = await visitor.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert login.status_code == 200


async def test_the_form_needs_its_csrf_token(
    app: Any, visitor: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    await visitor.get(f"/setup?code={code}")
    resp = await visitor.post("/setup", data={"code": code, **PASSWORD_FORM})
    assert resp.status_code == 403
    assert "The form had expired" in resp.text
    forged = {"csrf_token": "forged", "code": code, **PASSWORD_FORM}
    assert (await visitor.post("/setup", data=forged)).status_code == 403
    assert not await _owner_exists(app)


async def test_a_wrong_code_or_mismatch_is_explained_and_sets_nothing(
    app: Any, visitor: httpx.AsyncClient, settings: ServerSettings
) -> None:
    code = setup.issue_code(settings)
    await visitor.get("/setup")
    csrf = visitor.cookies[CSRF_COOKIE]
    wrong = await visitor.post("/setup", data={"csrf_token": csrf, "code": "nope", **PASSWORD_FORM})
    assert wrong.status_code == 403
    assert "This setup code is wrong or has already been used" in text_of(wrong.text)
    assert 'name="code" type="text"' in wrong.text  # asked for again, not kept hidden
    mismatch = {"csrf_token": csrf, "code": code, "password": OWNER_PASSWORD, "confirm": "other"}
    resp = await visitor.post("/setup", data=mismatch)
    assert resp.status_code == 422
    assert "The two passwords are not the same." in text_of(resp.text)
    short = {"csrf_token": csrf, "code": code, "password": "short", "confirm": "short"}
    resp = await visitor.post("/setup", data=short)
    assert resp.status_code == 422
    assert f"at least {service.MIN_PASSWORD_LENGTH} characters" in text_of(resp.text)
    assert f'type="hidden" name="code" value="{code}"' in resp.text
    assert not await _owner_exists(app)
