"""Checks of what the server talks to: the database, the owner, Redis, the ML service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from convassist.core.errors import AppError
from convassist.doctor.result import Context, Outcome, Status, fail, ok, skip, warn
from convassist.server import migrate

if TYPE_CHECKING:
    from convassist.ml.health.schemas import HealthResponse
    from convassist.server.ml_client import MLClient

UPGRADE = "Run `convassist db upgrade` (`convassist up` and `convassist server` also do it)."
ML_TIMEOUT = 10.0


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("sqlite") or not parsed.database:
        return None
    return Path(parsed.database)


def check_database(context: Context) -> Outcome:
    """Reachable, and migrated to the latest revision."""
    url = context.server.resolved_database_url
    where = migrate.describe(url)
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():
        return fail(f"no database at {sqlite} yet", UPGRADE)
    try:
        revision = migrate.current(url)
    except Exception as exc:
        return fail(
            f"cannot reach {where}: {type(exc).__name__}: {exc}",
            "Check DATABASE_URL (or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME) and that "
            "the database server is running.",
        )
    head = migrate.head()
    if revision != head:
        return fail(f"{where} is at revision {revision or 'none'}, the latest is {head}", UPGRADE)
    return ok(f"{where}, at the latest revision ({head})")


def check_owner(context: Context) -> Outcome:
    from convassist.cli.server import owner_configured

    url = context.server.resolved_database_url
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():
        return skip("no database yet (see Database)")
    try:
        configured = owner_configured(url)
    except Exception as exc:
        return skip(f"cannot read the owner from the database ({type(exc).__name__})")
    if not configured:
        return warn(
            "no owner password yet: nobody can sign in",
            "Open the setup link `convassist up` prints, or run `convassist admin set-password`.",
        )
    return ok("set")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_redis(context: Context) -> Outcome:
    from convassist.ml.generation.cache import RedisCache, make_cache

    cache = make_cache(context.ml)
    if not isinstance(cache, RedisCache):
        return skip("not configured: the cache and job queue run in-process")
    assert context.ml.redis_url is not None
    where = _without_password(context.ml.redis_url)

    async def ping() -> str:
        try:
            return await cache.redis_state()
        finally:
            await cache.close()

    if asyncio.run(ping()) != "ok":
        return fail(
            f"cannot reach Redis at {where}",
            "Start Redis, fix REDIS_URL, or unset it to use the in-process cache and queue.",
        )
    return ok(f"reachable at {where}")


def check_ml_service(context: Context) -> Outcome:
    """Each instance in ML_SERVICE_URL reachable and accepting the server's token."""
    from convassist.server.ml_client import MLClient

    settings = context.server
    urls = settings.ml_service_urls
    outcomes = [
        _check_ml_instance(MLClient(url, ML_TIMEOUT, token=settings.ml_token())) for url in urls
    ]
    if len(outcomes) == 1:
        return outcomes[0]
    failed = [outcome for outcome in outcomes if outcome.status is Status.FAIL]
    each = "; ".join(outcome.summary for outcome in outcomes)
    if failed:
        return fail(
            f"{len(failed)} of {len(outcomes)} ML instances failing: {each}",
            failed[0].fix or _ml_fix(""),
        )
    return ok(f"{len(outcomes)} ML instances: {each}")


def _check_ml_instance(client: MLClient) -> Outcome:
    async def ask() -> HealthResponse:
        try:
            await client.adapters()  # needs the token
            return await client.health()
        finally:
            await client.aclose()

    try:
        health = asyncio.run(ask())
    except AppError as exc:
        return fail(str(exc.detail), _ml_fix(exc.code))
    served = health.model_version
    return ok(f"{client.base_url}: serving {served}, and it accepts the server's token")


def _ml_fix(code: str) -> str:
    if code == "ml_service_unauthorized":
        return (
            "Give the server and the ML service the same ML_SERVICE_TOKEN, or run both with "
            "the same data dir (CONVASSIST_DATA_DIR) on one machine."
        )
    return (
        "Start it (`convassist up` runs everything, `convassist ml` only the ML service) or "
        "point ML_SERVICE_URL at it."
    )
