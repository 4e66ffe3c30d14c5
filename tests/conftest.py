"""Shared fixtures: migrated SQLite and PostgreSQL databases, the app, clients, an owner.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server, trust auth); each test
session creates its own database there, migrates it with Alembic and drops it at the end.
Every test starts from empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from convassist.core.settings import ServerSettings
from convassist.server import migrate
from convassist.server.app import create_app
from convassist.server.models import Base

TEST_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OWNER_PASSWORD = "correct horse battery staple"


def _admin_sync_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    import asyncio

    name = f"convassist_test_{uuid.uuid4().hex[:8]}"
    admin_url = _admin_sync_url(TEST_POSTGRES_URL)

    async def admin(statement: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:  # pragma: no cover - environment problem, not a test result
        pytest.fail(f"PostgreSQL is not reachable at {TEST_POSTGRES_URL}: {exc}")
    url = make_url(admin_url).set(database=name).render_as_string(False)
    migrate.upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "test.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_key="test-secret-" + uuid.uuid4().hex,
    )


@pytest.fixture
async def app(settings: ServerSettings) -> AsyncIterator[object]:
    await _truncate(settings.resolved_database_url)
    application = create_app(settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def owner_client(app: object, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as the owner with a bearer token."""
    from convassist.server.auth.service import set_owner_password

    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await set_owner_password(session, OWNER_PASSWORD)
        await session.commit()
    resp = await client.post("/api/auth/login", json={"password": OWNER_PASSWORD})
    assert resp.status_code == 200, resp.text
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {resp.json()['token']}"},
    ) as c:
        yield c


async def register_device(
    client: httpx.AsyncClient,
    owner_client: httpx.AsyncClient,
    *,
    hardware_id: str | None = None,
    name: str = "Test Mac",
) -> tuple[str, str]:
    """Register, approve and verify a device; returns (device_id, bearer token)."""
    resp = await client.post(
        "/api/devices/register",
        json={
            "name": name,
            "hardwareId": hardware_id or f"HW-{uuid.uuid4()}",
            "platform": "macOS",
            "osVersion": "15.1",
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    approved = await owner_client.post("/api/devices/approve", json={"code": body["code"]})
    assert approved.status_code == 200, approved.text
    verified = await client.post(
        "/api/devices/verify", json={"deviceId": body["deviceId"], "code": body["code"]}
    )
    assert verified.status_code == 200, verified.text
    return body["deviceId"], verified.json()["token"]


@pytest.fixture
async def device_client(
    app: object, client: httpx.AsyncClient, owner_client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as a freshly approved device."""
    _, token = await register_device(client, owner_client)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield c


@pytest.fixture(scope="session")
def ml_service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working directory of the session's ML service; its log is `ml.log` there."""
    return tmp_path_factory.mktemp("ml")


@pytest.fixture(scope="session")
def ml_service_url(ml_service_dir: Path) -> Iterator[str]:
    """One real ML service (default model, no Redis) for the whole test session."""
    from tests.support.services import ml_service

    with ml_service(ml_service_dir) as url:
        yield url
