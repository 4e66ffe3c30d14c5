"""The shared HTTP plumbing: body limits, malformed bodies, error shape, request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from convassist.core.http import add_common_middleware, install_error_handlers

pytestmark = pytest.mark.asyncio


class Body(BaseModel):
    text: str


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    add_common_middleware(app, max_body_bytes=1000, quiet_paths=set())

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_body_over_the_limit_by_header(client: httpx.AsyncClient) -> None:
    resp = await client.post("/echo", json={"text": "x" * 2000})
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large"


async def test_body_over_the_limit_without_content_length(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    resp = await client.post(
        "/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large"


async def test_invalid_utf8_and_malformed_json_are_400(client: httpx.AsyncClient) -> None:
    for raw in (b'{"text": "\xff\xfe"}', b'{"text": '):
        resp = await client.post("/echo", content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 400, raw
        assert resp.json()["error"] == "invalid_json"


async def test_validation_errors_do_not_echo_the_input(client: httpx.AsyncClient) -> None:
    resp = await client.post("/echo", json={"text": 12345678})
    assert resp.status_code == 422
    assert resp.json()["error"] == "validation_error"
    assert "12345678" not in resp.text


async def test_unexpected_errors_are_a_plain_500(client: httpx.AsyncClient) -> None:
    resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal_error", "detail": "Internal server error."}


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.post("/echo", json={"text": "a"}, headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.post("/echo", json={"text": "a"})
    assert len(made.headers["x-request-id"]) == 32
    bogus = await client.post("/echo", json={"text": "a"}, headers={"X-Request-ID": "<script>"})
    assert bogus.headers["x-request-id"] != "<script>"
