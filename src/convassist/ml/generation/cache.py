"""The response cache: Redis when configured, else an in-process TTL cache.

Key: `conv-assistant:cache:{sha256}` of the canonical JSON of the model version (base +
adapter), the prompt and every sampling parameter. Only deterministic requests are cached
(see `GenerationParams.deterministic`). Redis trouble never fails a request: the cache reports
a miss, remembers Redis is down, and tries again after a back-off (or at the next `/health`),
so caching resumes by itself when Redis returns.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from convassist.core.logging import get_logger
from convassist.ml.generation.manager import GenerationParams
from convassist.ml.settings import MLSettings

log = get_logger("convassist.ml.generation.cache")

CACHE_PREFIX = "conv-assistant:cache:"
REDIS_TIMEOUT = 0.5
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0

RedisState = Literal["ok", "down", "disabled"]


def cache_key(model_version: str, prompt: str, params: GenerationParams) -> str:
    canonical = json.dumps(
        {
            "model_version": model_version,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop),
            "seed": params.seed,
            "n": params.n,
            "own_replies": list(params.own_replies),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return CACHE_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache(Protocol):
    kind: str

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def set(self, key: str, value: dict[str, Any]) -> None: ...

    async def redis_state(self) -> RedisState: ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded TTL cache in this process (least recently used entries go first)."""

    kind = "memory"

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: dict[str, Any]) -> None:
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def redis_state(self) -> RedisState:
        return "disabled"

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Redis with short timeouts; a dead Redis costs a request nothing after the first miss."""

    kind = "redis"

    def __init__(self, url: str, ttl: int) -> None:
        self.ttl = ttl
        self._redis: aioredis.Redis[bytes] = aioredis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._down = False
        self._retry_at = 0.0
        self._backoff = BACKOFF_START

    def _skip(self) -> bool:
        return self._down and time.monotonic() < self._retry_at

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("redis_down", error_type=type(exc).__name__)
        else:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._down = True
        self._retry_at = time.monotonic() + self._backoff

    def _succeeded(self) -> None:
        if self._down:
            log.info("redis_up")
        self._down = False
        self._backoff = BACKOFF_START

    async def get(self, key: str) -> dict[str, Any] | None:
        if self._skip():
            return None
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._succeeded()
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set(self, key: str, value: dict[str, Any]) -> None:
        if self._skip():
            return
        try:
            await self._redis.set(key, json.dumps(value, ensure_ascii=False), ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._succeeded()

    async def redis_state(self) -> RedisState:
        """Ping (ignoring the back-off, so `/health` notices a returned Redis at once)."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return "down"
        self._succeeded()
        return "ok"

    async def close(self) -> None:
        await self._redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def make_cache(settings: MLSettings) -> ResponseCache:
    """Redis when REDIS_URL is set and ML_SERVICE_REDIS_ENABLED, else in-process."""
    if settings.use_redis:
        assert settings.redis_url is not None
        return RedisCache(settings.redis_url, settings.redis_cache_ttl)
    return MemoryCache(settings.redis_cache_ttl, settings.cache_max_entries)
