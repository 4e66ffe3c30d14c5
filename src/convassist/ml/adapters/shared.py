"""The adapter store in Redis: every ML service and worker sharing the Redis sees the same
adapters and the same active one, whatever machine trained them.

- `conv-assistant:adapters` (hash): adapter id → its metadata (JSON, with the SHA-256).
- `conv-assistant:adapter:<id>:data` (list): the GGUF file in chunks of `CHUNK_BYTES`
  (an adapter is a few MB to a few hundred; no single Redis value gets large).
- `conv-assistant:adapters:active` (string): the adapter served everywhere; absent = base.
  Each change is also published on the channel of the same name.
- `conv-assistant:adapters:previous` (string): the adapter active before it; absent = none
  (changed with the active one, in one transaction).

An adapter is written chunks first and listed last (one transaction), so a listed adapter's
bytes are complete. Each instance caches files in its own data dir (`<data dir>/adapters`,
the local store's layout) and checks the SHA-256 of what it downloads before writing it
there; a cached file is checked again before each use, and downloaded again if it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from convassist.core.logging import get_logger
from convassist.ml.adapters.store import (
    AdapterInfo,
    AdapterStore,
    ChecksumMismatch,
    LocalAdapterStore,
    valid_id,
)

log = get_logger("convassist.ml.adapters")

INDEX_KEY = "conv-assistant:adapters"
ACTIVE_KEY = "conv-assistant:adapters:active"
PREVIOUS_KEY = "conv-assistant:adapters:previous"
CHANNEL = ACTIVE_KEY
CHUNK_BYTES = 4 * 1024 * 1024
POLL_SECONDS = 2.0
"""How often each instance re-reads the active adapter, for a notification it missed."""
TIMEOUT = 10.0


def data_key(adapter_id: str) -> str:
    return f"conv-assistant:adapter:{adapter_id}:data"


class RedisAdapterStore(AdapterStore):
    """Adapters in Redis, cached (and checked) in this instance's `cache_root`."""

    def __init__(self, url: str, cache_root: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.url = url
        self.chunk_bytes = chunk_bytes
        self.redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self.cache = LocalAdapterStore(cache_root)

    def path(self, adapter_id: str) -> Path:
        return self.cache.path(adapter_id)

    def put(self, source: Path, info: AdapterInfo) -> None:
        """Upload the file in chunks, list it (one transaction), and keep it in the cache."""
        key = data_key(info.id)
        staging = f"{key}:{os.getpid()}.tmp"
        chunks = 0
        self.redis.delete(staging)
        with source.open("rb") as f:
            while chunk := f.read(self.chunk_bytes):
                self.redis.rpush(staging, chunk)
                chunks += 1
        with self.redis.pipeline(transaction=True) as pipe:
            if chunks:
                pipe.rename(staging, key)
            else:
                pipe.delete(key)
            pipe.hset(INDEX_KEY, info.id, json.dumps(info.metadata()))
            pipe.execute()
        self.cache.put(source, info)
        log.info("adapter_published", adapter_id=info.id, size_bytes=info.size_bytes, chunks=chunks)

    def _info(self, raw: bytes | str) -> AdapterInfo:
        data = json.loads(raw)
        return AdapterInfo.from_metadata(data, self.cache.path(str(data["id"])))

    def get(self, adapter_id: str) -> AdapterInfo | None:
        if not valid_id(adapter_id):
            return None
        raw = self.redis.hget(INDEX_KEY, adapter_id)
        return self._info(raw) if raw is not None else None

    def list(self) -> list[AdapterInfo]:
        adapters = [self._info(raw) for raw in self.redis.hvals(INDEX_KEY)]
        return sorted(adapters, key=lambda info: info.created_at, reverse=True)

    def fetch(self, info: AdapterInfo) -> Path:
        if self.cache.matches(info):
            return info.path
        if info.path.exists():
            log.warning("adapter_cache_corrupt", adapter_id=info.id)
        tmp = self.cache.root / f".{info.id}.{os.getpid()}.download"
        self.cache.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as f:
                for index in range(self.redis.llen(data_key(info.id))):
                    chunk = self.redis.lindex(data_key(info.id), index)
                    if chunk is None:  # replaced while we read: what we have is not it
                        break
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != info.sha256:
                log.error("adapter_checksum_mismatch", adapter_id=info.id, where="redis")
                raise ChecksumMismatch(info.id)
            self.cache.put(tmp, info)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("adapter_fetched", adapter_id=info.id, size_bytes=info.size_bytes)
        return info.path

    def active(self) -> str | None:
        return _text(self.redis.get(ACTIVE_KEY))

    def previous(self) -> str | None:
        return _text(self.redis.get(PREVIOUS_KEY))

    def set_active(self, adapter_id: str | None) -> None:
        """Change both keys in one transaction (again if another instance changed the active
        adapter meanwhile), and announce it."""
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(ACTIVE_KEY)
                    current = _text(self.redis.get(ACTIVE_KEY))
                    pipe.multi()
                    _set(pipe, ACTIVE_KEY, adapter_id)
                    if current != adapter_id:
                        _set(pipe, PREVIOUS_KEY, current)
                    pipe.publish(CHANNEL, adapter_id or "")
                    pipe.execute()
                    return
                except WatchError:
                    continue

    async def changes(self) -> AsyncIterator[None]:
        """A tick on each notification, and every `POLL_SECONDS` in case one was missed
        (also while Redis is unreachable: the reader then finds it so, and tries again)."""
        while True:
            client = aioredis.from_url(self.url, socket_connect_timeout=TIMEOUT)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    await pubsub.get_message(timeout=POLL_SECONDS)
                    yield
            except (RedisError, OSError):
                log.warning("adapter_notifications_lost")
                await asyncio.sleep(POLL_SECONDS)
                yield
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[attr-defined]  # types-redis predates it
                    await client.aclose()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.redis.close()


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _set(pipe: redis.client.Pipeline[bytes], key: str, value: str | None) -> None:
    if value is None:
        pipe.delete(key)
    else:
        pipe.set(key, value)
