"""The Status page: what runs, what doesn't, and what to do about it."""

from __future__ import annotations

from typing import Any

import pytest

from convassist.server.ml_client import MLClient
from tests.support.services import ML_TOKEN, free_port
from tests.web.conftest import Browser, text_of

pytestmark = pytest.mark.asyncio


async def test_ml_service_down_is_explained_not_dumped(app: Any, web: Browser) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app.state.ml_client = MLClient(dead, timeout=5, token=ML_TOKEN)
    page = await web.get("/status")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "ML service Not reachable" in text
    assert f"The ML service is not reachable at {dead}." in text
    assert "Start it with convassist ml" in text
    assert "Traceback" not in page.text
    kind = "SQLite (embedded)" if "sqlite" in str(app.state.engine.url) else "PostgreSQL"
    assert f"Kind {kind}" in text
    assert "Conversations 0" in text
    panel = await web.get("/status/panel", htmx=True)
    assert 'data-poll hx-get="/status/panel" hx-trigger="every 10s"' in panel.text


@pytest.mark.slow
async def test_a_refused_token_is_named_with_its_fix(
    app: Any, web: Browser, ml_service_url: str
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token="not-" + ML_TOKEN)
    text = text_of((await web.get("/status")).text)
    assert "ML service Token refused" in text
    assert "same ML_SERVICE_TOKEN" in text
    assert "Start it with convassist ml" not in text


@pytest.mark.slow
async def test_running_ml_service_shows_model_cache_and_queue(
    app: Any, web: Browser, ml_service_url: str
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)
    text = text_of((await web.get("/status")).text)
    assert "ML service Running" in text
    assert f"Address {ml_service_url}" in text
    assert "Model smollm2-135m-instruct@" in text
    assert "Adapter none (base model)" in text
    assert "Backend llama.cpp, in process" in text
    assert "Redis not configured" in text
    assert "Response cache in memory" in text
    assert "Job queue in process" in text
    assert "Jobs waiting 0" in text


@pytest.mark.slow
async def test_several_instances_are_each_shown(
    app: Any, web: Browser, ml_service_url: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app.state.ml_client = MLClient(f"{dead},{ml_service_url}", timeout=30, token=ML_TOKEN)
    text = text_of((await web.get("/status")).text)
    assert "ML service Running" in text  # one instance answers
    assert f"Address {ml_service_url}" in text
    assert f"{dead} : Not reachable" in text
    assert f"{ml_service_url} : smollm2-135m-instruct@" in text
