"""Alembic environment: runs migrations on the async engine for the configured URL."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from convassist.core.db import create_engine
from convassist.server.migrate import check_foreign_keys, sqlite_foreign_keys_off
from convassist.server.model_base import UTCDateTime
from convassist.server.models import Base

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our UTCDateTime as a plain timezone-aware DateTime: migrations stay model-free."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Full-text search objects made by raw SQL in 0004 that the models do not describe.
SEARCH_TABLES = ("message_search", "message_search_fts")
SEARCH_INDEXES = ("ix_messages_text_search",)


def _include_name(name: str | None, type_: str, _: Any) -> bool:
    """Leave the search tables (and FTS5's shadow tables) out of the drift check."""
    return not (type_ == "table" and name is not None and name.startswith(SEARCH_TABLES))


def _include_object(obj: Any, name: str | None, type_: str, reflected: bool, _: Any) -> bool:
    """Leave the search index (an expression index the models do not know) out of it too."""
    return not (type_ == "index" and reflected and name in SEARCH_INDEXES)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTER TABLE
        compare_type=True,
        literal_binds=connection is None,
        render_item=_render_item,
        include_name=_include_name,
        include_object=_include_object,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"))
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with sqlite_foreign_keys_off(connection), context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(connection)


async def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        await connection.run_sync(_run_sync)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
