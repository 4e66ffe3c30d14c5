"""Typed records round-trip in both stores; `update` never changes a finished job."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from convassist.ml.generation.queue import GenerationRecord
from convassist.ml.generation.schemas import GenerateResponse, Timings
from convassist.ml.runtime.stores import LocalStore, RecordStore, RedisStore
from convassist.ml.training.record import TrainingRecord
from tests.conftest import TEST_REDIS_URL
from tests.ml.conftest import clean_redis

AT = datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)


def training_record(job_id: str) -> TrainingRecord:
    return TrainingRecord(
        job_id=job_id,
        status="queued",
        created_at=AT,
        base_model="smollm2-135m-instruct",
        auto_activate=True,
    )


@pytest.fixture(params=["local", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Two handles on the same records: two instances' RedisStores; without Redis one
    process's LocalStore (its only writer), then a restarted one reading its files."""
    if request.param == "local":
        store = LocalStore(TrainingRecord, tmp_path)
        yield [store, store, lambda: LocalStore(TrainingRecord, tmp_path)]
        return
    kind = f"test-{uuid.uuid4().hex[:8]}"
    pair = [RedisStore(TrainingRecord, aioredis.from_url(TEST_REDIS_URL), kind) for _ in range(2)]
    yield [*pair, lambda: pair[1]]
    for store in pair:
        await store.close()
    clean_redis(TEST_REDIS_URL, (f"conv-assistant:job*:{kind}*",))


@pytest.mark.redis
async def test_a_typed_record_round_trips_and_only_an_unfinished_job_changes(
    stores: list[RecordStore[TrainingRecord]],
) -> None:
    first, second, restarted = stores
    job_id = str(uuid.uuid4())
    record = training_record(job_id)
    assert await first.create(record, ttl=60)
    assert not await first.create(record, ttl=60)  # the id exists
    assert await second.get(job_id) == record
    assert await second.held() == []  # no heartbeat: nobody holds it yet

    claimed = await second.update(
        job_id,
        {"status": "training", "started_at": AT, "heartbeat_at": AT, "stale_after": 2.0},
        only_if=frozenset({"queued"}),
    )
    assert claimed is not None and claimed.status == "training"
    again = await first.update(job_id, {"status": "training"}, only_if=frozenset({"queued"}))
    assert again is None  # a second claim loses
    assert [r.job_id for r in await first.held()] == [job_id]

    metrics = {"trainSamples": 18, "loss": 2.5, "targetModules": ["q_proj"]}
    done = await first.update(
        job_id,
        {"status": "completed", "progress": 100, "metrics": metrics, "adapter_id": "lora-1"},
    )
    assert done is not None
    read = await second.get(job_id)
    assert read == done and isinstance(read, TrainingRecord)
    assert read.metrics == metrics and read.heartbeat_at == AT and read.created_at == AT
    # Finished: a cancel (or a late report) changes nothing.
    assert await second.update(job_id, {"status": "cancelled"}) is None
    assert (await first.get(job_id)) == done
    assert await first.held() == []
    assert await first.update("no-such-job", {"progress": 1}) is None
    assert await restarted().get(job_id) == done


async def test_a_generation_record_keeps_its_result(tmp_path: Path) -> None:
    store = LocalStore(GenerationRecord)
    result = GenerateResponse(
        response="hi",
        candidates=[],
        confidence=0.5,
        model_version="m@1",
        cached=False,
        timings=Timings(total_ms=1.0),
    )
    assert await store.create(GenerationRecord(job_id="g", status="queued", created_at=AT), ttl=60)
    done = await store.update("g", {"status": "completed", "result": result})
    assert done is not None and done.result == result
    assert GenerationRecord.model_validate_json(done.model_dump_json()) == done
