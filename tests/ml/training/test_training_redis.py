"""Training jobs with Redis: queued on SAQ, run by the worker in a child process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from convassist.ml.generation.manager import LLMManager
from convassist.ml.training.service import WORKER_LOST
from convassist.ml.training.store import JOB_KEY_PREFIX
from convassist.ml.worker import build_training_worker
from tests.ml.conftest import AppFactory, clean_redis, ml_settings
from tests.ml.training.test_training_api import TINY, alive, job_body, runner_pid, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def overrides(redis_url: str) -> Iterator[dict[str, Any]]:
    name = f"ml-test-{uuid.uuid4().hex[:8]}"
    yield {
        "redis_url": redis_url,
        "queue_name": name,
        "training_queue_name": f"{name}-training",
        "job_heartbeat": 2,
        **TINY,
    }
    clean_redis(redis_url, (f"{JOB_KEY_PREFIX}*",))


@pytest.fixture
async def client(
    make_client: AppFactory, manager: LLMManager, overrides: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**overrides) as c:
        yield c
    await manager.set_adapter(None, None)


@pytest.fixture
async def worker(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[None]:
    """`convassist worker`'s training half, in this event loop (its jobs run as children)."""
    training = build_training_worker(ml_settings(tmp_path, **overrides))
    task = asyncio.create_task(training.start())
    yield
    await training.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_worker_trains_the_job_and_the_service_activates_it(
    client: httpx.AsyncClient, worker: None, redis_url: str, tmp_path: Path
) -> None:
    body = job_body(autoActivate=True)
    created = await client.post("/training/jobs", json=body)
    assert created.status_code == 202, created.text
    state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"})
    assert state["status"] == "completed", state["error"]
    assert state["metrics"]["adapterNll"] < state["metrics"]["baseNll"]
    stored = redis.Redis.from_url(redis_url).hgetall(f"{JOB_KEY_PREFIX}{body['jobId']}")
    assert stored[b"status"] == b"completed"
    assert json.loads(stored[b"state"])["adapterId"] == state["adapterId"]
    for _ in range(100):  # the service notices the completion and activates the adapter
        if (await client.get("/adapters")).json()["active"] == state["adapterId"]:
            break
        await asyncio.sleep(0.1)
    assert (await client.get("/adapters")).json()["active"] == state["adapterId"]

    second = job_body(epochs=20)
    await client.post("/training/jobs", json=second)
    await wait_for(client, second["jobId"], {"training"}, 30)
    pid = await runner_pid(tmp_path, second["jobId"])
    cancelled = await client.post(f"/training/jobs/{second['jobId']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    for _ in range(100):  # the worker stops the process at its next check (every second)
        if not alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(pid)


async def test_a_job_whose_worker_went_silent_fails(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    job_id = str(uuid.uuid4())
    silent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    state = {"jobId": job_id, "status": "training", "progress": 30, "createdAt": silent}
    redis.Redis.from_url(redis_url).hset(
        f"{JOB_KEY_PREFIX}{job_id}",
        mapping={"status": "training", "state": json.dumps({**state, "heartbeatAt": silent})},
    )
    failed = (await client.get(f"/training/jobs/{job_id}")).json()
    assert failed["status"] == "failed" and failed["error"] == WORKER_LOST
