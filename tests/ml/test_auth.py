"""Only the token's holder drives the ML service: every route, before any body is read."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from convassist.ml.app import PUBLIC_PATHS, create_app
from convassist.ml.auth import is_loopback
from convassist.ml.generation.manager import LLMManager
from tests.ml.conftest import PROMPT, ml_settings
from tests.ml.training.conftest import make_samples, sample_json

TOKEN = "the-owners-ml-token-" + "x" * 16
WRONG = {"Authorization": "Bearer " + "y" * len(TOKEN)}
GOOD = {"Authorization": f"Bearer {TOKEN}"}
JOB_ID = str(uuid.uuid4())
# A body each POST route would act on if it let the request through.
BODIES: dict[str, dict[str, Any]] = {
    "/generate": {"prompt": PROMPT, "maxTokens": 8, "seed": 1},
    "/generate/async": {"prompt": PROMPT, "maxTokens": 8, "seed": 1},
    "/training/jobs": {"jobId": JOB_ID, "epochs": 1, "samples": sample_json(make_samples(4))},
}


@pytest.fixture
async def app(tmp_path: Path, manager: LLMManager) -> AsyncIterator[FastAPI]:
    application = create_app(ml_settings(tmp_path, ml_service_token=TOKEN), llm=manager)
    async with application.router.lifespan_context(application):
        yield application


def requests(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters filled in."""
    found = []
    for route in iter_route_contexts(app.routes):
        assert route.path is not None
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, re.sub(r"\{[^}]+\}", "lora-0123abcd", route.path)))
    return found


def generated_tokens(app: FastAPI) -> float:
    value = app.state.ml.metrics.registry.get_sample_value("convassist_ml_generated_tokens_total")
    return float(value or 0)


async def test_every_route_refuses_a_missing_or_a_wrong_token(
    app: FastAPI, anyone: httpx.AsyncClient, tmp_path: Path
) -> None:
    routes = requests(app)
    assert ("POST", "/training/jobs") in routes and ("GET", "/metrics") in routes
    for method, path in routes:
        body = BODIES.get(path)
        wrong = await anyone.request(method, path, json=body, headers=WRONG)
        assert wrong.status_code == 401, (method, path)
        assert wrong.json()["error"] == "unauthorized"
        assert wrong.headers["www-authenticate"] == "Bearer"
        missing = await anyone.request(method, path, json=body)
        if path in PUBLIC_PATHS:
            assert missing.status_code == 200, (method, path)
        else:
            assert missing.status_code == 401, (method, path)
    # Nothing was generated, queued, trained or activated.
    assert generated_tokens(app) == 0
    assert app.state.ml.manager.in_flight == 0
    assert await app.state.ml.jobs.depth() in (0, None)
    assert not (tmp_path / "data" / "ml" / "training").exists()
    authorized = await anyone.get(f"/training/jobs/{JOB_ID}", headers=GOOD)
    assert authorized.status_code == 404
    adapters = (await anyone.get("/adapters", headers=GOOD)).json()
    assert adapters["active"] is None and adapters["adapters"] == []


async def test_the_right_token_works_and_health_details_need_it(
    app: FastAPI, anyone: httpx.AsyncClient
) -> None:
    generated = await anyone.post("/generate", json=BODIES["/generate"], headers=GOOD)
    assert generated.status_code == 200, generated.text
    assert generated_tokens(app) > 0
    assert (await anyone.get("/health")).json() == {
        "status": "ok",
        "service": "conversation-assistant-ml",
    }
    detailed = (await anyone.get("/health", headers=GOOD)).json()
    assert detailed["model_version"].startswith("smollm2-135m-instruct@")
    lowercase = await anyone.get("/models", headers={"Authorization": f"bearer {TOKEN}"})
    assert lowercase.status_code == 200
    for refused in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert (await anyone.get("/models", headers={"Authorization": refused})).status_code == 401


async def body_source(size: int, pulled: list[int]) -> AsyncIterator[bytes]:
    """`size` bytes in 1 MiB chunks, recording how many the server pulled."""
    chunk = b"x" * (1 << 20)
    for _ in range(size // len(chunk)):
        pulled.append(1)
        yield chunk


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_unauthenticated_huge_body_is_refused_before_it_is_read(
    anyone: httpx.AsyncClient, declared: bool
) -> None:
    size = 194 << 20  # under the training body limit (256 MiB)
    pulled: list[int] = []
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(size)
    resp = await anyone.post("/training/jobs", content=body_source(size, pulled), headers=headers)
    assert resp.status_code == 401
    assert len(pulled) <= 1  # at most the first chunk was buffered by the transport


async def test_unauthenticated_comes_before_too_large(anyone: httpx.AsyncClient) -> None:
    over = str(300 << 20)  # over every body limit
    headers = {"Content-Type": "application/json", "Content-Length": over}
    assert (await anyone.post("/generate", content=b"{}", headers=headers)).status_code == 401
    good = {**headers, **GOOD}
    assert (await anyone.post("/generate", content=b"{}", headers=good)).status_code == 413


def test_the_openapi_document_declares_the_bearer_scheme(app: FastAPI) -> None:
    schema = app.openapi()
    [(name, scheme)] = schema["components"]["securitySchemes"].items()
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    assert schema["security"] == [{name: []}]
    [health] = schema["paths"]["/health"].values()
    assert health["security"] == [{}, {name: []}]
    for path, operations in schema["paths"].items():
        if path not in PUBLIC_PATHS:
            assert all("401" in op["responses"] for op in operations.values()), path


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.2", False),
        ("ml.example.org", False),
    ],
)
def test_loopback_bind_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
