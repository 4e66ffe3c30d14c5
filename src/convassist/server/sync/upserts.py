"""The sync's dialect-specific statements: the conversation and message upserts, and lookups
by a batch of keys (one array parameter and a plan made for that batch on PostgreSQL, `IN (...)`
on SQLite). The flow that uses them is described in `service`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    Column,
    DateTime,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from convassist.core.db import upsert_insert
from convassist.server.model_base import UTCDateTime
from convassist.server.models import Conversation, Message
from convassist.server.sync.schemas import SyncMessage, SyncMessagesRequest

MESSAGES: Table = Message.__table__  # type: ignore[assignment]
CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]

# The fields a phone can change after the fact (edits, unsends, late metadata).
MESSAGE_FIELDS = (
    "sender_id",
    "direction",
    "message_type",
    "text",
    "sent_at",
    "edited_at",
    "is_unsent",
    "reply_to_guid",
    "service",
)
WRITTEN_FIELDS = ("imessage_guid", *MESSAGE_FIELDS)
_MESSAGE_LIST: TypeAdapter[list[SyncMessage]] = TypeAdapter(list[SyncMessage])


def one_of(session: AsyncSession, key: Column[str], values: Sequence[str]) -> Any:
    """`key IN values`; on PostgreSQL `key = ANY(<one array parameter>)`."""
    if session.get_bind().dialect.name == "postgresql":
        return key == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String())))
    return key.in_(values)


async def lookup(session: AsyncSession, stmt: Any) -> list[Any]:
    """Run a lookup by a batch of keys with a plan made for this very batch.

    PostgreSQL caches a generic plan for a prepared statement after five runs. One made
    while a table was still nearly empty scans the whole table, and keeps doing so while the
    table grows until autovacuum re-analyses it: a first sync of 60,000 messages spent 1 s per
    batch on this lookup instead of 1 ms. Planning it for the actual keys and table size
    costs well under a millisecond.
    """
    if session.get_bind().dialect.name != "postgresql":
        return list(await session.execute(stmt))
    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    rows = list(await session.execute(stmt))
    await session.execute(text("SET LOCAL plan_cache_mode TO DEFAULT"))
    return rows


def _record_type(target: Column[Any]) -> Any:
    """How `jsonb_to_recordset` reads a column: unbounded text (a too-long value fails the
    insert instead of being truncated by a cast), plain timestamptz."""
    if isinstance(target.type, String):
        return Text()
    if isinstance(target.type, UTCDateTime):
        return DateTime(timezone=True)
    return target.type


@cache
def _message_upsert(dialect: str) -> Any:
    """The batch statement for one backend, built once (it only depends on the dialect).

    PostgreSQL gets the batch as one JSON parameter, `INSERT … SELECT FROM
    jsonb_to_recordset(…)` with ids from `gen_random_uuid()`: one small statement whatever
    the batch size, and no per-value encoding in Python (pydantic-core writes the JSON).
    SQLite gets a multi-row `INSERT … VALUES`.
    """
    stmt: Any
    if dialect == "postgresql":
        rows = (
            func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), JSONB))
            .table_valued(
                *(column(name, _record_type(MESSAGES.c[name])) for name in WRITTEN_FIELDS)
            )
            .render_derived(with_types=True)
        )
        now = bindparam("now", type_=DateTime(timezone=True))
        stmt = postgresql.insert(MESSAGES).from_select(
            ["id", "conversation_id", "device_id", "created_at", "updated_at", *WRITTEN_FIELDS],
            select(
                func.gen_random_uuid(),
                bindparam("conversation_id", type_=MESSAGES.c.conversation_id.type),
                bindparam("device_id", type_=MESSAGES.c.device_id.type),
                now,
                now,
                *(rows.c[name] for name in WRITTEN_FIELDS),
            ),
        )
    else:
        stmt = sqlite.insert(MESSAGES)
    excluded = stmt.excluded
    changed = or_(*(MESSAGES.c[name].is_distinct_from(excluded[name]) for name in MESSAGE_FIELDS))
    return stmt.on_conflict_do_update(
        index_elements=[MESSAGES.c.imessage_guid],
        set_={
            **{name: excluded[name] for name in MESSAGE_FIELDS},
            "updated_at": excluded.updated_at,
        },
        where=and_(MESSAGES.c.conversation_id == excluded.conversation_id, changed),
    )


async def write_messages(
    session: AsyncSession,
    messages: list[SyncMessage],
    *,
    conversation_id: uuid.UUID,
    device_id: uuid.UUID,
    now: datetime,
) -> int:
    """Upsert the messages in one statement; how many rows it inserted or updated."""
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] | list[dict[str, Any]]
    if dialect == "postgresql":
        rows = _MESSAGE_LIST.dump_json(messages, include={"__all__": set(WRITTEN_FIELDS)})
        params = {
            "rows": rows.decode(),
            "conversation_id": conversation_id,
            "device_id": device_id,
            "now": now,
        }
    else:
        params = [
            {
                **{name: getattr(m, name) for name in WRITTEN_FIELDS},
                "id": uuid.uuid4(),
                "conversation_id": conversation_id,
                "device_id": device_id,
                "created_at": now,
                "updated_at": now,
            }
            for m in messages
        ]
    result = await session.execute(_message_upsert(dialect), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def upsert_conversation(
    session: AsyncSession, body: SyncMessagesRequest, now: datetime
) -> tuple[uuid.UUID, int, datetime | None]:
    """Create or refresh the conversation (name, group flag) and lock its row."""
    stmt = upsert_insert(session, CONVERSATIONS).values(
        id=uuid.uuid4(),
        imessage_id=body.conversation_id,
        display_name=(body.display_name or "").strip() or None,
        is_group=body.is_group,
        service=body.service,
        message_count=0,
        created_at=now,
        updated_at=now,
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[CONVERSATIONS.c.imessage_id],
        set_={
            "display_name": excluded.display_name,
            "is_group": excluded.is_group,
            "service": func.coalesce(excluded.service, CONVERSATIONS.c.service),
            "updated_at": excluded.updated_at,
        },
    ).returning(CONVERSATIONS.c.id, CONVERSATIONS.c.message_count, CONVERSATIONS.c.last_message_at)
    row = (await session.execute(stmt)).one()
    return row[0], row[1], row[2]
