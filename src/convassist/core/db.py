"""Async SQLAlchemy engine and sessions, for SQLite (embedded default) and PostgreSQL.

A database that cannot be reached (connection refused or lost, a file that cannot be opened)
is a 503 `database_unavailable`, not a 500; once it is back the next request works again
(PostgreSQL connections are pinged before use).
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from convassist.core.errors import AppError, ServiceUnavailable
from convassist.core.logging import get_logger

log = get_logger(__name__)

# PostgreSQL SQLSTATE classes 08 (connection exception) and 57P (server shutting down or
# starting up); SQLite: the file cannot be opened, or the disk failed under it.
_PG_UNREACHABLE = ("08", "57P")
_SQLITE_UNREACHABLE = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
REACHABLE_TIMEOUT = 5.0


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (rather than a bad statement)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) in _SQLITE_UNREACHABLE
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_PG_UNREACHABLE):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_unreachable(cause)


async def database_reachable(engine: AsyncEngine) -> bool:
    """`SELECT 1` answers within `REACHABLE_TIMEOUT` seconds."""
    try:
        async with asyncio.timeout(REACHABLE_TIMEOUT), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("database_unreachable", error_type=type(exc).__name__)
        return False
    return True


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine with sane per-backend settings (WAL + foreign keys on SQLite)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # Let SQLAlchemy drive transactions; begin them IMMEDIATE (below) so two writers
            # queue on busy_timeout instead of failing on a read-to-write lock upgrade.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session per unit of work: commit on success, roll back on any error.

    An unreachable database raises `DatabaseUnavailable` (503) instead of the driver's error.
    """
    async with maker() as session:
        try:
            try:
                yield session
                await session.commit()
            except AppError as exc:
                if exc.keep_changes:
                    await session.commit()
                else:
                    await session.rollback()
                raise
            except BaseException:
                await session.rollback()
                raise
        except Exception as exc:
            if isinstance(exc, AppError) or not is_unreachable(exc):
                raise
            log.warning("database_unavailable", error_type=type(exc).__name__)
            raise DatabaseUnavailable(
                "The database cannot be reached; try again in a moment."
            ) from None


def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """`INSERT … ON CONFLICT` for the session's backend (both SQLite and PostgreSQL have it)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
