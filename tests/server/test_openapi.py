"""The API server's OpenAPI document tells the truth: real error answers validate against the
schema it declares for that operation and status, and exactly the operations that refuse an
anonymous caller with 401 declare a security scheme."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.core.settings import ServerSettings
from convassist.server.models import TrainingJob, TrainingStatus
from tests.conftest import register_device
from tests.support.openapi import Spec, assert_declared

MAX_BODY = 4096


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The document does not depend on the database: SQLite only."""
    return sqlite_url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_key="test-secret-" + uuid.uuid4().hex,
        max_body_bytes=MAX_BODY,
        sync_max_batch=2,
        ml_service_url="http://127.0.0.1:9",  # nothing listens: the ML service is down
    )


@pytest.fixture
async def anon(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client that never signed in (the `client` fixture keeps the login cookies)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> Spec:
    resp = await client.get("/api/openapi.json")
    assert resp.status_code == 200
    document: Spec = resp.json()
    return document


async def test_every_error_answer_matches_the_declared_schema(
    app: Any,
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    spec: Spec,
) -> None:
    samples = "/api/training/samples"
    sample = {"inputContext": "Them: hi\nMe:", "expectedOutput": "hey"}
    token = owner_client.headers["authorization"].removeprefix("Bearer ")
    async with app.state.sessionmaker() as session:
        job = TrainingJob(
            base_model="m", status=TrainingStatus.COMPLETED, progress=100, epochs=1,
            learning_rate=1e-4, metrics={},
        )  # fmt: skip
        session.add(job)
        await session.commit()
        finished_job = job.id
    _, device_token = await register_device(client, owner_client)
    device = {"Authorization": f"Bearer {device_token}"}
    messages = [
        {"imessageGuid": f"g{i}", "direction": "incoming", "sentAt": "2026-01-01T00:00:00Z"}
        for i in range(3)
    ]
    cases: list[tuple[str, str, httpx.Response, int]] = [
        ("post", samples, await owner_client.post(
            samples, content=b"{", headers={"content-type": "application/json"}), 400),
        ("get", "/api/training/jobs", await owner_client.get(
            "/api/training/jobs", params={"cursor": "not-a-cursor"}), 400),
        ("get", "/api/conversations", await anon.get("/api/conversations"), 401),
        ("post", "/api/sync/messages", await anon.post("/api/sync/messages", json={}), 401),
        ("post", "/api/auth/login", await anon.post(
            "/api/auth/login", json={"password": "wrong password"}), 401),
        ("post", samples, await anon.post(
            samples, json=sample, headers={"cookie": f"convassist_session={token}"}), 403),
        ("get", "/api/conversations/{conversation_id}", await owner_client.get(
            f"/api/conversations/{uuid.uuid4()}"), 404),
        ("post", "/api/devices/verify", await anon.post(
            "/api/devices/verify", json={"deviceId": str(uuid.uuid4()), "code": "123456"}), 404),
        ("post", "/api/training/jobs/{job_id}/cancel", await owner_client.post(
            f"/api/training/jobs/{finished_job}/cancel"), 409),
        ("post", samples, await owner_client.post(
            samples, json={**sample, "expectedOutput": "x" * MAX_BODY}), 413),
        ("post", "/api/sync/messages", await anon.post(
            "/api/sync/messages", headers=device,
            json={"conversationId": "chat1", "messages": messages}), 413),
        ("post", "/api/sync/contacts", await anon.post(
            "/api/sync/contacts", headers={**device, "content-type": "text/plain"},
            content=b"{}"), 415),
        ("post", samples, await owner_client.post(samples, json={}), 422),
        ("get", "/api/conversations", await owner_client.get(
            "/api/conversations", params={"limit": 0}), 422),
        ("get", "/api/training/adapters", await owner_client.get("/api/training/adapters"), 503),
    ]  # fmt: skip
    setup = {"code": "not-the-code", "password": "a long enough password"}
    cases.append(("post", "/api/auth/setup", await anon.post("/api/auth/setup", json=setup), 409))
    for attempt in range(30):
        login = await anon.post("/api/auth/login", json={"password": f"wrong {attempt}"})
        if login.status_code == 429:
            break
    cases.append(("post", "/api/auth/login", login, 429))
    device_body = {"name": "Mac", "hardwareId": "HW", "platform": "macOS", "osVersion": "15.1"}
    for attempt in range(30):
        registered = await anon.post(
            "/api/devices/register", json={**device_body, "hardwareId": f"HW-{attempt}"}
        )
        if registered.status_code == 429:
            break
    cases.append(("post", "/api/devices/register", registered, 429))
    for method, path, response, status in cases:
        assert response.status_code == status, (method, path, response.text)
        assert_declared(spec, method, path, response)


def _operations(spec: Spec) -> list[tuple[str, str, Spec]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


async def test_security_is_declared_exactly_where_anonymous_callers_get_401(
    anon: httpx.AsyncClient, spec: Spec
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ownerToken"] == {**schemes["ownerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert schemes["deviceToken"]["scheme"] == "bearer"
    secured = 0
    for method, path, operation in _operations(spec):
        url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        body = {"json": {}} if "requestBody" in operation else {}
        response = await anon.request(method, url, **body)
        requirements = operation.get("security", [])
        required = bool(requirements) and {} not in requirements
        assert (response.status_code == 401) == required, (method, path, response.status_code)
        if required:
            secured += 1
            assert "401" in operation["responses"]
            assert_declared(spec, method, path, response)
    assert secured >= 25


async def test_no_error_is_declared_in_fastapis_shape(spec: Spec) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        has_input = "requestBody" in operation or operation.get("parameters")
        assert ("422" in operation["responses"]) == bool(has_input), (method, path)
        assert {"500", "503"} <= set(operation["responses"]), (method, path)
