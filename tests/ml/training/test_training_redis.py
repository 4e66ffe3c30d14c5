"""Training jobs with Redis: queued on SAQ, run by the worker in a child process."""

from __future__ import annotations

import asyncio
import contextlib
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
from convassist.ml.runtime.saq import WORKER_LOST
from convassist.ml.training.record import TrainingPayload, TrainingRecord
from convassist.ml.training.schemas import TrainingRequest
from convassist.ml.training.service import training_runtime
from convassist.ml.worker import build_training_worker
from tests.ml.conftest import AppFactory, clean_redis, ml_settings
from tests.ml.training.test_training_api import TINY, alive, job_body, runner_pid, wait_for

pytestmark = pytest.mark.redis

JOB_KEY_PREFIX = "conv-assistant:job:training:"
TRAINING_KEYS = ("conv-assistant:job*:training:*", "conv-assistant:jobs-held:training")


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
    clean_redis(redis_url, TRAINING_KEYS)


@pytest.fixture
async def client(
    make_client: AppFactory, manager: LLMManager, overrides: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**overrides) as c:
        yield c
    await manager.set_adapter(None, None)


class Activations:
    """The workers' `on_completed` hook here: asks the service to serve the adapter."""

    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.calls: list[str] = []

    async def __call__(self, adapter_id: str) -> None:
        self.calls.append(adapter_id)
        assert self.client is not None
        resp = await self.client.post(f"/adapters/{adapter_id}/activate")
        assert resp.status_code == 200, resp.text


@pytest.fixture
def activations(client: httpx.AsyncClient) -> Activations:
    hook = Activations()
    hook.client = client
    return hook


@contextlib.asynccontextmanager
async def training_worker(
    data: Path, overrides: dict[str, Any], manager: LLMManager, hook: Activations
) -> AsyncIterator[None]:
    """`convassist worker`'s training half, in this event loop (its jobs run as children)."""
    training = build_training_worker(ml_settings(data, **overrides), manager, hook)
    task = asyncio.create_task(training.start())
    try:
        yield
    finally:
        await training.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def worker(
    tmp_path: Path, overrides: dict[str, Any], manager: LLMManager, activations: Activations
) -> AsyncIterator[None]:
    async with training_worker(tmp_path, overrides, manager, activations):
        yield


async def test_a_worker_trains_the_job_and_the_service_activates_it(
    client: httpx.AsyncClient,
    worker: None,
    redis_url: str,
    tmp_path: Path,
    activations: Activations,
) -> None:
    body = job_body(autoActivate=True)
    created = await client.post("/training/jobs", json=body)
    assert created.status_code == 202, created.text
    state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"})
    assert state["status"] == "completed", state["error"]
    assert state["metrics"]["adapterNll"] < state["metrics"]["baseNll"]
    stored = redis.Redis.from_url(redis_url).hgetall(f"{JOB_KEY_PREFIX}{body['jobId']}")
    assert stored[b"status"] == b"completed"
    assert json.loads(stored[b"record"])["adapter_id"] == state["adapterId"]
    # The worker switched the adapter on before the job read as completed.
    assert (await client.get("/adapters")).json()["active"] == state["adapterId"]
    assert activations.calls == [state["adapterId"]]  # once, by the worker that ran it

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
    silent = datetime.now(UTC) - timedelta(minutes=5)
    record = TrainingRecord(
        job_id=job_id,
        status="training",
        progress=30,
        created_at=silent,
        heartbeat_at=silent,
        stale_after=10,
        base_model="smollm2-135m-instruct",
        auto_activate=False,
    )
    redis.Redis.from_url(redis_url).hset(
        f"{JOB_KEY_PREFIX}{job_id}",
        mapping={"status": "training", "record": record.model_dump_json()},
    )
    failed = (await client.get(f"/training/jobs/{job_id}")).json()
    assert failed["status"] == "failed" and failed["error"] == WORKER_LOST


async def test_two_workers_run_a_job_once_each_in_its_own_data_dir(
    client: httpx.AsyncClient,
    overrides: dict[str, Any],
    manager: LLMManager,
    activations: Activations,
    tmp_path: Path,
) -> None:
    """The job's settings and samples travel in Redis: the service's data dir stays empty,
    and only the worker that claimed the job has its folder."""
    dirs = [tmp_path / "worker-a", tmp_path / "worker-b"]
    async with (
        training_worker(dirs[0], overrides, manager, activations),
        training_worker(dirs[1], overrides, manager, activations),
    ):
        body = job_body(autoActivate=True)
        await client.post("/training/jobs", json=body)
        state = await wait_for(client, body["jobId"], {"completed", "failed", "cancelled"})
        assert state["status"] == "completed", state["error"]
        ran = [d for d in dirs if (d / "data" / "ml" / "training" / body["jobId"]).is_dir()]
        assert len(ran) == 1
        log_text = (ran[0] / "data" / "ml" / "training" / body["jobId"] / "runner.log").read_text()
        assert log_text.count("training_completed") == 1
        assert not (tmp_path / "data" / "ml" / "training" / body["jobId"]).exists()
        assert activations.calls == [state["adapterId"]]
        # SAQ hands a job to one worker; should it deliver it again, the claim refuses it.
        settings = ml_settings(dirs[1], **overrides)
        other = training_runtime(settings, manager.adapter_backend, activations)
        served = manager.adapter_backend
        assert served is not None
        payload = TrainingPayload(
            request=TrainingRequest.model_validate(body), base_version=served.base_version
        )
        await other.execute(body["jobId"], payload)
        await other.close()
        assert (await client.get(f"/training/jobs/{body['jobId']}")).json() == state
        assert activations.calls == [state["adapterId"]]
