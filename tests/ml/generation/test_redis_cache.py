"""The Redis response cache: keys and TTL, and a Redis that dies and comes back."""

from __future__ import annotations

import time
from typing import Any

import redis

from convassist.ml.generation.cache import CACHE_PREFIX, cache_key
from convassist.ml.generation.manager import GenerationParams
from tests.ml.conftest import PROMPT, AppFactory, RedisServer


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"prompt": PROMPT, "maxTokens": 16, "seed": 1}
    values.update(overrides)
    return values


async def test_redis_cache_hit_miss_and_key(make_client: AppFactory, redis_url: str) -> None:
    async with make_client(redis_url=redis_url, redis_cache_ttl=120) as client:
        first = (await client.post("/generate", json=body())).json()
        assert first["cached"] is False
        again = (await client.post("/generate", json=body())).json()
        assert again["cached"] is True and again["response"] == first["response"]
        assert (await client.post("/generate", json=body(topP=0.5))).json()["cached"] is False
        health = (await client.get("/health")).json()
    assert health["redis"] == "ok" and health["cache"] == "redis" and health["status"] == "ok"
    key = cache_key(
        first["model_version"],
        PROMPT,
        GenerationParams(
            max_tokens=16, temperature=0.7, top_p=0.95, stop=("\nThem:", "\nMe:", "\n\n"), seed=1
        ),
    )
    assert key.startswith(CACHE_PREFIX) and len(key) == len(CACHE_PREFIX) + 64
    r = redis.Redis.from_url(redis_url)
    try:
        assert 0 < r.ttl(key) <= 120
        assert len(list(r.scan_iter(match=f"{CACHE_PREFIX}*"))) == 2
    finally:
        r.close()


def test_the_cache_key_covers_model_version_prompt_and_every_parameter() -> None:
    base = GenerationParams(max_tokens=16, temperature=0.7, top_p=0.95, stop=("\n",), seed=1, n=1)
    key = cache_key("m@1", "p", base)
    variants = [
        cache_key("m@1+adapter", "p", base),
        cache_key("m@2", "p", base),
        cache_key("m@1", "q", base),
    ]
    for field, value in (
        ("max_tokens", 17),
        ("temperature", 0.8),
        ("top_p", 0.9),
        ("stop", ("\n\n",)),
        ("seed", 2),
        ("n", 2),
    ):
        variants.append(cache_key("m@1", "p", GenerationParams(**{**base.__dict__, field: value})))
    assert key not in variants and len(set(variants)) == len(variants)
    assert cache_key("m@1", "p", base) == key


async def test_generation_survives_redis_dying_and_caching_resumes(
    make_client: AppFactory, redis_server: RedisServer
) -> None:
    async with make_client(redis_url=redis_server.url) as client:
        assert (await client.post("/generate", json=body())).json()["cached"] is False
        assert (await client.post("/generate", json=body())).json()["cached"] is True

        redis_server.kill()
        started = time.perf_counter()
        resp = await client.post("/generate", json=body())
        assert resp.status_code == 200 and resp.json()["cached"] is False
        resp = await client.post("/generate", json=body(seed=2))
        assert resp.status_code == 200 and resp.json()["cached"] is False
        assert time.perf_counter() - started < 10
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and health.json()["redis"] == "down"
        queued = await client.post("/generate/async", json=body())
        assert queued.status_code == 503 and queued.json()["error"] == "service_unavailable"

        redis_server.start()
        health = (await client.get("/health")).json()
        assert health["status"] == "ok" and health["redis"] == "ok"
        assert (await client.post("/generate", json=body())).json()["cached"] is False
        assert (await client.post("/generate", json=body())).json()["cached"] is True


async def test_the_service_starts_while_redis_is_down(
    make_client: AppFactory, redis_server: RedisServer
) -> None:
    redis_server.kill()
    async with make_client(redis_url=redis_server.url) as client:
        resp = await client.post("/generate", json=body(maxTokens=4))
        assert resp.status_code == 200
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded" and health["queue_depth"] is None
