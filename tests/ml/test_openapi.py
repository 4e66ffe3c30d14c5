"""The ML service's OpenAPI document declares the errors it really sends, in their real shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from convassist.ml.app import create_app
from convassist.ml.generation.manager import LLMManager
from tests.ml.conftest import PROMPT, ml_settings
from tests.support.openapi import Spec, assert_declared

TOKEN = "openapi-test-token-" + "z" * 16
MAX_BODY = 4096


@pytest.fixture
async def app(tmp_path: Path, manager: LLMManager) -> AsyncIterator[FastAPI]:
    settings = ml_settings(tmp_path, ml_service_token=TOKEN, max_body_bytes=MAX_BODY)
    application = create_app(settings, llm=manager)
    async with application.router.lifespan_context(application):
        yield application


async def test_ml_error_answers_match_the_declared_schema(anyone: httpx.AsyncClient) -> None:
    spec: Spec = (await anyone.get("/openapi.json")).json()
    good = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer no"}
    json_type = {**good, "content-type": "application/json"}
    cases: list[tuple[str, str, httpx.Response, int]] = [
        ("post", "/generate", await anyone.post("/generate", json={"prompt": PROMPT}), 401),
        ("get", "/models", await anyone.get("/models", headers=wrong), 401),
        ("post", "/generate", await anyone.post("/generate", content=b"{", headers=json_type), 400),
        ("get", "/jobs/{job_id}", await anyone.get("/jobs/nope", headers=good), 404),
        ("get", "/training/jobs/{job_id}", await anyone.get(
            "/training/jobs/nope", headers=good), 404),
        ("post", "/adapters/{adapter_id}/activate", await anyone.post(
            "/adapters/lora-0123abcd/activate", headers=good), 404),
        ("post", "/adapters/rollback", await anyone.post("/adapters/rollback", headers=good), 409),
        ("post", "/generate", await anyone.post(
            "/generate", json={"prompt": "x" * MAX_BODY}, headers=good), 413),
        ("post", "/generate", await anyone.post(
            "/generate", json={"prompt": PROMPT, "maxTokens": 0}, headers=good), 422),
    ]  # fmt: skip
    for method, path, response, status in cases:
        assert response.status_code == status, (method, path, response.text)
        assert_declared(spec, method, path, response)
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas


async def test_ml_operations_declare_their_token(anyone: httpx.AsyncClient) -> None:
    spec: Spec = (await anyone.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["mlServiceToken"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            requirements: list[dict[str, Any]] = operation.get("security", spec.get("security"))
            anonymous = await anyone.request(method, path.replace("{", "x").replace("}", ""))
            assert (anonymous.status_code == 401) == ({} not in requirements), (method, path)
            assert "401" in operation["responses"], (method, path)
