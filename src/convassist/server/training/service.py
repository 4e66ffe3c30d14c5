"""Training samples: what the owner accepted, edited or wrote, and their JSONL export."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convassist.core.errors import NotFound, Unprocessable
from convassist.server.conversations.consent import usable
from convassist.server.models import Conversation, SampleSource, TrainingSample
from convassist.server.pagination import decode_timed_cursor, encode_cursor
from convassist.server.training.schemas import SampleCreate, SampleUpdate

SelectT = TypeVar("SelectT", bound=Select[Any])


@dataclass(frozen=True)
class SampleFilter:
    source: SampleSource | None = None
    min_quality: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    conversation_id: uuid.UUID | None = None

    def apply(self, query: SelectT) -> SelectT:
        if self.source is not None:
            query = query.where(TrainingSample.source == self.source)
        if self.min_quality is not None:
            query = query.where(TrainingSample.quality >= self.min_quality)
        if self.since is not None:
            query = query.where(TrainingSample.created_at >= self.since)
        if self.until is not None:
            query = query.where(TrainingSample.created_at < self.until)
        if self.conversation_id is not None:
            query = query.where(TrainingSample.conversation_id == self.conversation_id)
        return query


async def list_samples(
    session: AsyncSession, filters: SampleFilter, *, limit: int, cursor: str | None
) -> tuple[list[TrainingSample], str | None, int]:
    """Newest first, keyset-paginated; also the total matching the filters."""
    query = filters.apply(select(TrainingSample))
    total = await session.scalar(filters.apply(select(func.count()).select_from(TrainingSample)))
    if cursor:
        created, sample_id = decode_timed_cursor(cursor)
        query = query.where(
            tuple_(TrainingSample.created_at, TrainingSample.id) < (created, sample_id)
        )
    query = query.order_by(TrainingSample.created_at.desc(), TrainingSample.id.desc())
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    return rows[:limit], next_cursor, int(total or 0)


async def get_sample(session: AsyncSession, sample_id: uuid.UUID) -> TrainingSample:
    sample = await session.get(TrainingSample, sample_id)
    if sample is None:
        raise NotFound("No such training sample.")
    return sample


async def create_manual(session: AsyncSession, body: SampleCreate) -> TrainingSample:
    """A manual sample; 422 `unknown_conversation` if `conversationId` names none."""
    conversation_id = body.conversation_id
    if conversation_id is not None and await session.get(Conversation, conversation_id) is None:
        raise Unprocessable("No conversation has this conversationId.", code="unknown_conversation")
    sample = TrainingSample(
        input_context=body.input_context,
        expected_output=body.expected_output,
        source=SampleSource.MANUAL,
        quality=body.quality,
        conversation_id=conversation_id,
    )
    session.add(sample)
    await session.flush()
    return sample


async def update_sample(
    session: AsyncSession, sample_id: uuid.UUID, body: SampleUpdate
) -> TrainingSample:
    sample = await get_sample(session, sample_id)
    for field in body.model_fields_set:
        value = getattr(body, field)
        if value is not None:
            setattr(sample, field, value)
    await session.flush()
    return sample


async def delete_sample(session: AsyncSession, sample_id: uuid.UUID) -> None:
    await session.delete(await get_sample(session, sample_id))


def jsonl_record(sample: TrainingSample) -> dict[str, object]:
    """One line of the training file (the format the trainer reads; see docs/API.md)."""
    return {
        "id": str(sample.id),
        "prompt": sample.input_context,
        "completion": sample.expected_output,
        "source": sample.source.value,
        "quality": sample.quality,
        "conversationId": str(sample.conversation_id) if sample.conversation_id else None,
        "createdAt": sample.created_at.isoformat(),
    }


def learnable(filters: SampleFilter, *, groups: bool) -> Select[TrainingSample]:
    """The matching samples a training job may learn from, oldest first: none of a
    conversation the owner keeps out of training (or a group chat, unless `groups`). The one
    query behind a job's snapshot and the JSONL export."""
    return (
        filters.apply(select(TrainingSample))
        .where(usable(TrainingSample.conversation_id, "training", groups=groups))
        .order_by(TrainingSample.created_at, TrainingSample.id)
    )


async def export_jsonl(
    maker: async_sessionmaker[AsyncSession],
    filters: SampleFilter,
    *,
    groups: bool,
    chunk: int = 500,
) -> AsyncIterator[str]:
    """Stream the `learnable` samples, one JSON object per line.

    The stream outlives the request's session, so it reads in a session of its own.
    """
    query = learnable(filters, groups=groups)
    async with maker() as session:
        result = await session.stream_scalars(query.execution_options(yield_per=chunk))
        async for sample in result:
            yield json.dumps(jsonl_record(sample), ensure_ascii=False) + "\n"
