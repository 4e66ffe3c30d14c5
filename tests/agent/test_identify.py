"""Is a URL a Conversation Assistant server? `identify_server` against the real server, the
real ML service, a plain web page (a real HTTP server answering HTML) and a closed port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from convassist import __version__
from convassist.agent.client import AgentClient, ServerError, ServerUnavailable
from convassist.agent.identity import NotAServer, identify_server
from tests.agent.faults import web_page as serve_page
from tests.support.services import free_port

PAGE = (
    b"<!doctype html><html><head><title>Router  admin</title></head>"
    b"<body><h1>Welcome</h1><script>var x = 1;</script></body></html>"
)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def web_page() -> Iterator[str]:
    with serve_page(PAGE) as url:
        yield url


async def test_the_real_server_is_recognised(app: Any) -> None:
    identity = await identify_server("http://testserver/", transport=httpx.ASGITransport(app=app))
    assert identity.url == "http://testserver"
    assert identity.version == __version__


async def test_the_ml_service_is_named(ml_service_url: str) -> None:
    with pytest.raises(NotAServer) as caught:
        await identify_server(ml_service_url)
    message = caught.value.message
    assert message.startswith(
        f"{ml_service_url} answered, but it is not a Conversation Assistant server (it looks "
        "like the Conversation Assistant ML service"
    )
    assert "port 3100" in message


async def test_a_web_page_is_named_without_its_html(web_page: str) -> None:
    with pytest.raises(NotAServer) as caught:
        await identify_server(web_page)
    message = caught.value.message
    assert message.startswith(f"{web_page} answered, but it is not a Conversation Assistant server")
    assert "a web page titled “Router admin”" in message
    assert "<" not in message and "script" not in message
    # The sync client never shows a page's HTML either.
    async with AgentClient(web_page, retries=0) as client:
        with pytest.raises(ServerError) as refused:
            await client.status()
    assert "is not a Conversation Assistant server" in refused.value.message
    assert "<" not in refused.value.message


async def test_a_closed_port_is_refused_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable) as caught:
        await identify_server(url)
    assert f"Nothing answered at {url} (connection refused)" in caught.value.message
