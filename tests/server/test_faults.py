"""Faults answer with clear 4xx/503s, and no error log carries what a request sent."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from convassist.core.limits import SEED_SPACE
from convassist.core.logging import configure_logging
from convassist.core.security import issue_token
from convassist.core.settings import ServerSettings
from convassist.server import migrate
from convassist.server.app import create_app
from convassist.server.auth.service import set_owner_password
from convassist.server.deps import SessionDep
from convassist.server.ml_client import MLClient
from convassist.server.models import SampleSource, TrainingSample
from tests.conftest import OWNER_PASSWORD
from tests.support.services import ML_TOKEN

pytestmark = pytest.mark.asyncio

MARKER = f"marker-{uuid.uuid4().hex}"
HOUR = timedelta(hours=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def json_logs() -> Iterator[None]:
    """The server's own logging set-up (JSON lines on stderr) for the test's duration."""
    root = logging.getLogger()
    previous = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json", component="server")
    try:
        yield
    finally:
        root.handlers[:], level = previous
        root.setLevel(level)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a real uvicorn server (its own error logging included)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_a_sample_for_an_unknown_conversation_is_a_422(
    owner_client: httpx.AsyncClient,
) -> None:
    resp = await owner_client.post(
        "/api/training/samples",
        json={
            "inputContext": "Them: hi",
            "expectedOutput": MARKER,
            "conversationId": str(uuid.uuid4()),
        },
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "unknown_conversation"
    assert (await owner_client.get("/api/training/samples")).json()["total"] == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_error_logs_carry_no_request_content(
    app: FastAPI,
    owner_client: httpx.AsyncClient,
    settings: ServerSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    @app.post("/api/test/integrity")
    async def integrity(session: SessionDep) -> None:
        # A foreign key violation whose SQL parameters carry the marker.
        row = TrainingSample(input_context=MARKER, expected_output=MARKER, quality=1.0)
        session.add(row)
        row.source, row.conversation_id = SampleSource.MANUAL, uuid.uuid4()
        await session.flush()

    @app.post("/api/test/crash")
    async def crash() -> None:
        raise RuntimeError(f"the body was {MARKER}")

    token = owner_client.headers["authorization"]
    sample = {"inputContext": f"Them: {MARKER}", "expectedOutput": MARKER}
    down = create_app(settings.model_copy(update={"database_url": _closed_port_url(settings)}))
    with json_logs():
        async with serving(app) as client:
            client.headers["authorization"] = token
            unknown = await client.post(
                "/api/training/samples", json={**sample, "conversationId": str(uuid.uuid4())}
            )
            assert unknown.status_code == 422
            assert (await client.post("/api/test/integrity")).status_code == 500
            assert (await client.post("/api/test/crash")).status_code == 500
        async with serving(down) as client:
            client.headers["authorization"] = token
            assert (await client.post("/api/training/samples", json=sample)).status_code == 503
        logs = capsys.readouterr().err
    await down.state.engine.dispose()
    assert "IntegrityError" in logs and '"error_type": "RuntimeError"' in logs
    assert "error_location" in logs
    assert MARKER not in logs


def _closed_port_url(settings: ServerSettings) -> str:
    return make_url(settings.resolved_database_url).set(port=_free_port()).render_as_string(False)


class Proxy:
    """A TCP relay to PostgreSQL: `stop` is an outage (live connections cut), `start` ends it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


async def _assert_down(client: httpx.AsyncClient, token: str) -> None:
    health = await client.get("/api/health")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"] == {"database": "down"}
    for resp in (
        await client.get("/api/devices", headers={"Authorization": f"Bearer {token}"}),
        await client.post("/api/auth/login", json={"password": "anything-at-all"}),
    ):
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "database_unavailable"
    page = await client.get("/login")
    assert page.status_code == 503 and "text/html" in page.headers["content-type"]


async def test_a_postgresql_outage_is_a_503_until_it_ends(
    postgres_url: str, tmp_path: Path
) -> None:
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    await proxy.start()
    app = create_app(_settings(url.set(port=proxy.port).render_as_string(False), tmp_path))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            async with app.state.sessionmaker() as session:
                await set_owner_password(session, OWNER_PASSWORD)
                await session.commit()
            login = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
            token = login.json()["token"]
            await proxy.stop()
            await _assert_down(client, token)
            await proxy.start()
            auth = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/devices", headers=auth)).status_code == 200
            health = await client.get("/api/health")
            assert health.status_code == 200
            assert health.json()["checks"] == {"database": "up"}
    finally:
        await app.state.engine.dispose()
        await proxy.stop()


async def test_an_unopenable_sqlite_file_is_a_503_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "db" / "convassist.sqlite3"
    path.mkdir(parents=True)  # a directory where the database file should be: cannot open
    url = f"sqlite+aiosqlite:///{path}"
    app = create_app(_settings(url, tmp_path))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            token, _ = issue_token(
                app.state.jwt_secret, subject="1", kind="owner", generation=1, lifetime=HOUR
            )
            await _assert_down(client, token)
            path.rmdir()
            await asyncio.to_thread(migrate.upgrade, url)
            health = await client.get("/api/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            login = await client.post("/api/auth/login", json={"password": "anything-at-all"})
            assert login.json()["error"] == "owner_not_configured"
    finally:
        await app.state.engine.dispose()


async def test_adapter_ids_and_seeds_are_checked_at_the_server(
    owner_client: httpx.AsyncClient,
) -> None:
    for bad in ("%01", "lora-%01", "lora-ABC", "lora-" + "a" * 65, "x"):
        resp = await owner_client.post(f"/api/training/adapters/{bad}/activate")
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["error"] == "validation_error"
    resp = await owner_client.post(
        "/api/responses/generate", json={"messageId": str(uuid.uuid4()), "seed": SEED_SPACE}
    )
    assert resp.status_code == 422 and "seed" in resp.json()["detail"]


def _settings(database_url: str, tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        database_url=database_url, data_dir=tmp_path / "data", secret_key=uuid.uuid4().hex
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_adapter_the_ml_service_does_not_know_is_a_404(
    app: FastAPI, owner_client: httpx.AsyncClient, ml_service_url: str
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)
    resp = await owner_client.post("/api/training/adapters/lora-00000000/activate")
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"] == "unknown_adapter"
