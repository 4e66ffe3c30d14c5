"""The OpenAI-compatible backend against a real server (llama-cpp-python's own, same model)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convassist.ml.app import create_app
from convassist.ml.backends.base import Sampling
from convassist.ml.backends.openai_compat import OpenAIBackend, api_base
from convassist.ml.errors import ModelLoadError
from convassist.ml.generation.manager import LLMManager
from convassist.ml.settings import MLSettings
from tests.ml.conftest import PROMPT, ml_settings
from tests.support.services import free_port

LLAMA_SERVER = Path(__file__).parents[2] / "support" / "llama_server.py"


class CompletionServer:
    """llama-cpp-python's server (`tests/support/llama_server.py`) on 127.0.0.1 with the
    default model."""

    def __init__(self, model: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(LLAMA_SERVER),
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "smollm2",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail("llama_cpp.server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self._log.close()


@pytest.fixture(scope="module")
def completion_server(
    tmp_path_factory: pytest.TempPathFactory, default_model_path: Path
) -> Iterator[CompletionServer]:
    server = CompletionServer(default_model_path, tmp_path_factory.mktemp("oai") / "server.log")
    yield server
    server.stop()


def test_api_base_accepts_both_spellings() -> None:
    assert api_base("http://h:8080") == "http://h:8080/v1"
    assert api_base("http://h:8080/v1/") == "http://h:8080/v1"


def test_completions_with_confidence_from_logprobs(completion_server: CompletionServer) -> None:
    backend = OpenAIBackend(completion_server.url, model=None, api_key=None, timeout=60)
    try:
        assert backend.model == "smollm2" and backend.model_version == "openai:smollm2"
        sampling = Sampling(max_tokens=24, temperature=0.8, top_p=0.95, stop=("\n",), seed=5)
        first = backend.complete(PROMPT, sampling)
        assert first == backend.complete(PROMPT, sampling), "a fixed seed reproduces the reply"
        assert "\n" not in first.text and first.completion_tokens > 0
        assert first.token_logprobs and first.confidence is not None
        assert 0 < first.confidence <= 1
    finally:
        backend.close()


async def test_the_service_on_the_openai_backend(
    completion_server: CompletionServer, tmp_path: Path
) -> None:
    backend = OpenAIBackend(completion_server.url, model="smollm2", api_key=None, timeout=60)
    manager = LLMManager(backend)
    try:
        settings = ml_settings(tmp_path)
        app = create_app(settings, llm=manager)
        async with token_client(app, settings) as c:
            body: dict[str, Any] = {
                "prompt": PROMPT,
                "maxTokens": 24,
                "seed": 2,
                "n": 2,
                "temperature": 1.0,
            }
            data = (await c.post("/generate", json=body)).json()
            assert data["model_version"] == "openai:smollm2"
            assert 1 <= len(data["candidates"]) <= 2
            assert all(0 <= cand["confidence"] <= 1 for cand in data["candidates"])
            assert (await c.post("/generate", json=body)).json()["cached"] is True
            health = (await c.get("/health")).json()
            assert health["backend"] == "openai" and health["status"] == "ok"
    finally:
        manager.close()


async def test_a_dead_backend_fails_requests_and_jobs_clearly(
    tmp_path: Path, default_model_path: Path
) -> None:
    server = CompletionServer(default_model_path, tmp_path / "server.log")
    manager = LLMManager(OpenAIBackend(server.url, model=None, api_key=None, timeout=30))
    server.stop()
    try:
        settings = ml_settings(tmp_path)
        app = create_app(settings, llm=manager)
        async with token_client(app, settings) as c:
            resp = await c.post("/generate", json={"prompt": PROMPT, "maxTokens": 8})
            assert resp.status_code == 503
            assert "is unreachable" in resp.json()["detail"]
            job = (await c.post("/generate/async", json={"prompt": PROMPT})).json()["jobId"]
            for _ in range(100):
                status = (await c.get(f"/jobs/{job}")).json()
                if status["status"] == "failed":
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "failed" and "is unreachable" in status["error"]
    finally:
        manager.close()


def token_client(app: Any, settings: MLSettings) -> httpx.AsyncClient:
    """A client of `app` that sends the service's token, as the server does."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ml",
        timeout=60,
        headers={"Authorization": f"Bearer {settings.ml_token()}"},
    )


def test_an_unreachable_server_fails_at_start_up() -> None:
    with pytest.raises(ModelLoadError, match="Cannot use the OpenAI-compatible server"):
        OpenAIBackend(f"http://127.0.0.1:{free_port()}", model=None, api_key=None, timeout=5)
