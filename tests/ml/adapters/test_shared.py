"""The Redis adapter store: chunks, checksums, per-instance caches, the shared active adapter."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

from convassist.ml.adapters.factory import make_adapter_store
from convassist.ml.adapters.service import AdapterService
from convassist.ml.adapters.shared import (
    ACTIVE_KEY,
    INDEX_KEY,
    POLL_SECONDS,
    PREVIOUS_KEY,
    RedisAdapterStore,
    data_key,
)
from convassist.ml.adapters.store import ChecksumMismatch, LocalAdapterStore
from convassist.ml.generation.manager import LLMManager
from convassist.ml.models.fingerprint import sha256_file
from tests.ml.conftest import ml_settings
from tests.ml.training.conftest import TrainedAdapter

pytestmark = pytest.mark.redis

JOB = "0123abcd-1111-4000-8000-000000000000"


def exported(tmp_path: Path, size: int = 10_000) -> tuple[Path, bytes]:
    source = tmp_path / "exported.gguf"
    content = b"GGUF" + os.urandom(size - 4)
    source.write_bytes(content)
    return source, content


@pytest.fixture
def stores(redis_url: str, tmp_path: Path) -> Iterator[tuple[RedisAdapterStore, RedisAdapterStore]]:
    """Two instances' stores: one Redis, each its own cache directory."""
    first = RedisAdapterStore(redis_url, tmp_path / "one" / "adapters", chunk_bytes=4096)
    second = RedisAdapterStore(redis_url, tmp_path / "two" / "adapters", chunk_bytes=4096)
    yield first, second
    first.close()
    second.close()


def save(store: RedisAdapterStore | LocalAdapterStore, source: Path) -> str:
    return store.save(
        source,
        job_id=JOB,
        base_model="m",
        base_version="m@1",
        metrics={"adapterNll": 2.0},
        settings={"loraRank": 16},
    ).id


def test_an_adapter_saved_by_one_instance_is_fetched_verified_by_another(
    stores: tuple[RedisAdapterStore, RedisAdapterStore], tmp_path: Path, redis_url: str
) -> None:
    first, second = stores
    source, content = exported(tmp_path)
    adapter_id = save(first, source)
    assert not source.exists()  # moved into the first instance's cache
    assert redis.Redis.from_url(redis_url).llen(data_key(adapter_id)) == 3  # 10 000 B / 4 KiB

    [info] = second.list()
    assert info.id == adapter_id == "lora-0123abcd" and info.size_bytes == len(content)
    assert info.sha256 == sha256_file(first.cache.path(adapter_id))
    assert info.path == tmp_path / "two" / "adapters" / adapter_id / "adapter.gguf"
    assert not info.path.exists()  # listed from Redis, not fetched yet
    path = second.fetch(info)
    assert path.read_bytes() == content
    # The cache is the local store's layout, with the same metadata.
    assert LocalAdapterStore(tmp_path / "two" / "adapters").get(adapter_id) == info
    assert second.get("lora-../../x") is None and second.get("lora-ffffffff") is None


def test_a_corrupt_adapter_is_refused_and_a_corrupt_cache_fetched_again(
    stores: tuple[RedisAdapterStore, RedisAdapterStore],
    tmp_path: Path,
    redis_url: str,
) -> None:
    first, second = stores
    source, content = exported(tmp_path)
    info = second.get(save(first, source))
    assert info is not None
    second.fetch(info)
    info.path.write_bytes(content[:-1] + b"x")  # the cache changed on disk: fetched again
    assert second.fetch(info).read_bytes() == content

    redis.Redis.from_url(redis_url).lset(data_key(info.id), 1, b"y" * 4096)
    info.path.unlink()
    with (
        capture_logs() as logs,
        pytest.raises(ChecksumMismatch, match="does not match its SHA-256"),
    ):
        second.fetch(info)
    assert not info.path.exists()  # nothing unverified is left in the cache
    assert "adapter_checksum_mismatch" in [entry["event"] for entry in logs]
    first.cache.path(info.id).write_bytes(b"GGUF")  # and the local store refuses too
    cached = first.cache.get(info.id)
    assert cached is not None
    with pytest.raises(ChecksumMismatch):
        first.cache.fetch(cached)


def test_local_adapters_record_and_check_their_checksum(tmp_path: Path) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    source, content = exported(tmp_path)
    info = store.get(save(store, source))
    assert info is not None and info.sha256 == sha256_file(info.path)
    assert store.fetch(info) == info.path
    info.path.write_bytes(content[:-1] + b"x")
    with pytest.raises(ChecksumMismatch):
        store.fetch(info)


async def test_the_active_adapter_is_shared_and_its_changes_announced(
    stores: tuple[RedisAdapterStore, RedisAdapterStore], redis_url: str
) -> None:
    first, second = stores
    ticks = 0

    async def listen() -> None:
        nonlocal ticks
        async for _ in second.changes():
            ticks += 1
            if second.active() == "lora-0123abcd":
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)  # subscribed
    started = asyncio.get_running_loop().time()
    first.set_active("lora-0123abcd")
    await asyncio.wait_for(listener, POLL_SECONDS * 2)
    # Announced at once, not found by the next poll.
    assert asyncio.get_running_loop().time() - started < POLL_SECONDS / 2
    assert redis.Redis.from_url(redis_url).get(ACTIVE_KEY) == b"lora-0123abcd"
    first.set_active(None)
    assert second.active() is None


def test_the_previous_adapter_is_shared(
    stores: tuple[RedisAdapterStore, RedisAdapterStore], redis_url: str
) -> None:
    first, second = stores
    assert second.previous() is None
    first.set_active("lora-aaaaaaaa")
    second.set_active("lora-bbbbbbbb")
    second.set_active("lora-bbbbbbbb")  # no change: the previous one stays
    assert (first.active(), first.previous()) == ("lora-bbbbbbbb", "lora-aaaaaaaa")
    assert redis.Redis.from_url(redis_url).get(PREVIOUS_KEY) == b"lora-aaaaaaaa"
    first.set_active(None)
    assert (second.active(), second.previous()) == (None, "lora-bbbbbbbb")


def test_the_factory_chooses_redis_only_when_configured(tmp_path: Path, redis_url: str) -> None:
    shared = make_adapter_store(ml_settings(tmp_path, redis_url=redis_url))
    assert isinstance(shared, RedisAdapterStore)
    assert shared.cache.root == tmp_path / "data" / "adapters"
    shared.close()
    assert isinstance(make_adapter_store(ml_settings(tmp_path)), LocalAdapterStore)
    off = ml_settings(tmp_path, redis_url=redis_url, redis_enabled=False)
    assert isinstance(make_adapter_store(off), LocalAdapterStore)
    assert redis.Redis.from_url(redis_url).exists(INDEX_KEY) == 0


async def _until(check: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


async def test_a_service_follows_the_choice_another_instance_made(
    manager: LLMManager,
    trained_adapter: TrainedAdapter,
    stores: tuple[RedisAdapterStore, RedisAdapterStore],
    tmp_path: Path,
    redis_url: str,
) -> None:
    other, mine = stores
    backend = manager.adapter_backend
    assert backend is not None
    source = tmp_path / "exported.gguf"
    shutil.copy(trained_adapter.path, source)
    info = other.save(
        source,
        job_id=JOB,
        base_model=backend.model_id,
        base_version=backend.base_version,
        metrics={},
        settings={},
    )
    base = manager.model_version
    service = AdapterService(manager, mine)
    await service.start()
    try:
        other.set_active(info.id)  # announced: followed well before the next poll
        await _until(lambda: manager.model_version == f"{base}+{info.id}", POLL_SECONDS / 2)
        assert mine.cache.matches(info)  # fetched and checked into this instance's cache
        other.set_active(None)
        await _until(lambda: manager.model_version == base, POLL_SECONDS / 2)

        # Bytes that do not match their checksum are never served, and said so once.
        redis.Redis.from_url(redis_url).lset(data_key(info.id), 0, b"GGUF" + bytes(60))
        mine.cache.path(info.id).unlink()
        with capture_logs() as logs:
            other.set_active(info.id)
            await asyncio.sleep(POLL_SECONDS * 1.5)
        assert manager.model_version == base
        events = [entry["event"] for entry in logs]
        assert events.count("adapter_not_followed") == 1
        assert "adapter_checksum_mismatch" in events
    finally:
        await service.close()
        await manager.set_adapter(None, None)
