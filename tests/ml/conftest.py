"""ML fixtures: the real default model (loaded once), apps around it, Redis servers."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from convassist.ml.app import create_app
from convassist.ml.backends.llama import LlamaBackend
from convassist.ml.generation.manager import LLMManager
from convassist.ml.models.manifest import load_manifest
from convassist.ml.settings import MLSettings
from tests.conftest import TEST_REDIS_URL
from tests.support.services import free_port

PROMPT = (
    "Them: Hey, how's it going?\n"
    "Me: Pretty good, just working on some code\n"
    "Them: Nice! What are you building?\n"
    "Me:"
)


def ml_settings(tmp_path: Path, **overrides: Any) -> MLSettings:
    """Settings for a test: nothing from the environment or a .env file leaks in."""
    values: dict[str, Any] = {
        "redis_url": None,
        "models_dir": tmp_path / "models",
        "data_dir": tmp_path / "data",
        "log_format": "json",
    }
    values.update(overrides)
    return MLSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return load_manifest().get("smollm2-135m-instruct").local_path(Path("/nonexistent"))


@pytest.fixture(scope="session")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMManager]:
    """The default model, loaded once for the whole session."""
    settings = ml_settings(tmp_path_factory.mktemp("ml-session"))
    llm = LLMManager(LlamaBackend.from_settings(settings))
    yield llm
    llm.close()


AppFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(tmp_path: Path, manager: LLMManager) -> AppFactory:
    """`async with make_client(**settings) as client`: an app on the shared model, lifespan run,
    the client sending the app's token."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = ml_settings(tmp_path, **overrides)
        app = create_app(settings, llm=manager)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://ml",
                timeout=120,
                headers={"Authorization": f"Bearer {settings.ml_token()}"},
            ) as client:
                yield client

    return factory


@pytest.fixture
async def client(make_client: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The service without Redis (in-process cache and jobs)."""
    async with make_client() as c:
        yield c


def clean_redis(url: str, patterns: tuple[str, ...]) -> None:
    r = redis.Redis.from_url(url)
    try:
        for pattern in patterns:
            keys = list(r.scan_iter(match=pattern, count=1000))
            if keys:
                r.delete(*keys)
    finally:
        r.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The shared test Redis (db 15); only this module's key prefixes are touched."""
    patterns = ("conv-assistant:cache:*", "saq:*ml-test-*", "conv-assistant:adapter*")
    try:
        clean_redis(TEST_REDIS_URL, patterns)
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}")
    yield TEST_REDIS_URL
    clean_redis(TEST_REDIS_URL, patterns)


@pytest.fixture
def queue_name() -> str:
    return f"ml-test-{uuid.uuid4().hex[:8]}"


class RedisServer:
    """A throwaway redis-server this test owns (and may kill and restart)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:  # pragma: no cover - environment problem
            pytest.fail("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis(port=self.port).ping():
                    return
            time.sleep(0.05)
        pytest.fail("the test's redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def anyone(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the module's `app` fixture that sends no token of its own."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ml", timeout=60) as c:
        yield c
